"""The skill registry: typed functions `(ctx, inp) -> out` registered with `@skill`.

`@skill` checks everything it can at import time (signature, pydantic models with extra="forbid", docstring), so a
broken skill fails loudly when its module is imported, never halfway through a run, and attaches its `SkillSpec` to
the function. There is no global registry: the composition root (the service) calls `load_registry()` once, which
collects the @skill functions of the built-in library and of every installed skill pack (the entry point group
`agentml.skills`, each entry point naming a module), and passes that `Registry` down to the planner and executor.
"""
from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from skills.errors import SkillError, SkillRegistrationError

ENTRY_POINT_GROUP = "agentml.skills"
BUILTIN_MODULES = (
    "skills.library.query",
    "skills.library.features",
    "skills.library.train_xgboost",
    "skills.library.tune",
    "skills.library.evaluate",
    "skills.library.explain",
    "skills.library.residuals",
    "skills.library.report",
    "skills.library.race",
    "skills.library.score",
)

# Reads: literal input -> {table: {columns}} it will read (None = all columns). Cost: literal input -> boosting rounds.
ReadsFn = Callable[[Any], dict[str, set[str] | None]]
CostFn = Callable[[Any], int]


@dataclass(frozen=True)
class SkillSpec:
    """Everything the planner, validator and executor need to know about one skill."""

    name: str
    fn: Callable[..., BaseModel]
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    description: str
    uses_ray: bool = False
    reads: ReadsFn | None = None
    cost: CostFn | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def schema(self) -> dict[str, Any]:
        """JSON description shown to planners (LLM prompt, API)."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_model.model_json_schema(),
            "output_schema": self.output_model.model_json_schema(),
            "uses_ray": self.uses_ray,
        }


class Registry:
    """Name -> SkillSpec. Iterating yields specs in registration order."""

    def __init__(self) -> None:
        self._skills: dict[str, SkillSpec] = {}

    def add(self, spec: SkillSpec) -> None:
        existing = self._skills.get(spec.name)
        if existing is not None and existing.fn is not spec.fn and \
                (existing.fn.__module__, existing.fn.__qualname__) != (spec.fn.__module__, spec.fn.__qualname__):
            raise SkillRegistrationError(
                f"skill {spec.name!r} is registered twice ({existing.fn.__module__} and {spec.fn.__module__})",
                hint="give one of them another name with @skill(name=...)",
            )
        self._skills[spec.name] = spec

    def get(self, name: str) -> SkillSpec:
        try:
            return self._skills[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._skills), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"known skills: {', '.join(sorted(self._skills))}"
            raise SkillError(f"unknown skill {name!r}", hint=hint) from None

    def __contains__(self, name: object) -> bool:
        return name in self._skills

    def __iter__(self) -> Iterator[SkillSpec]:
        return iter(self._skills.values())

    def __len__(self) -> int:
        return len(self._skills)

    def names(self) -> list[str]:
        return list(self._skills)

    def schemas(self) -> list[dict[str, Any]]:
        return [s.schema() for s in self]


_SPEC_ATTRIBUTE = "__agentml_skill__"


def spec_of(fn: Callable[..., Any]) -> SkillSpec:
    """The SkillSpec `@skill` attached to `fn`."""
    spec = getattr(fn, _SPEC_ATTRIBUTE, None)
    if not isinstance(spec, SkillSpec):
        raise SkillError(f"{getattr(fn, '__qualname__', fn)!r} is not a skill", hint="decorate it with @skill")
    return spec


def _check_model(model: Any, what: str, fn: Callable[..., Any]) -> type[BaseModel]:
    where = f"{fn.__module__}.{fn.__qualname__}"
    if not (inspect.isclass(model) and issubclass(model, BaseModel)):
        raise SkillRegistrationError(f"{where}: the {what} must be annotated with a pydantic model, got {model!r}")
    if model.model_config.get("extra") != "forbid":
        raise SkillRegistrationError(
            f"{where}: {model.__name__} must forbid unknown fields",
            hint='set model_config = ConfigDict(extra="forbid")',
        )
    return model


def _spec_for(fn: Callable[..., Any], name: str, **options: Any) -> SkillSpec:
    where = f"{fn.__module__}.{fn.__qualname__}"
    doc = inspect.getdoc(fn)
    if not doc:
        raise SkillRegistrationError(f"{where}: a skill needs a docstring (the planner shows it to the LLM)")
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 2:
        raise SkillRegistrationError(f"{where}: a skill takes exactly (ctx, inp), got {len(params)} parameters")
    hints = typing.get_type_hints(fn)
    if params[1].name not in hints or "return" not in hints:
        raise SkillRegistrationError(f"{where}: annotate the input parameter and the return type")
    return SkillSpec(
        name=name,
        fn=fn,
        input_model=_check_model(hints[params[1].name], "input", fn),
        output_model=_check_model(hints["return"], "output", fn),
        description=doc,
        **options,
    )


def skill(
    name: str | None = None,
    *,
    uses_ray: bool = False,
    reads: ReadsFn | None = None,
    cost: CostFn | None = None,
    tags: tuple[str, ...] = (),
    registry: Registry | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a typed skill: its spec is attached to the function (see `spec_of`) and also added to `registry` when
    one is given. Returns the function unchanged so tests can call it directly."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        spec = _spec_for(fn, name or fn.__name__, uses_ray=uses_ray, reads=reads, cost=cost, tags=tags)
        setattr(fn, _SPEC_ATTRIBUTE, spec)
        if registry is not None:
            registry.add(spec)
        return fn

    return decorate


def _add_module(reg: Registry, module: ModuleType) -> int:
    found = 0
    for value in list(vars(module).values()):
        spec = getattr(value, _SPEC_ATTRIBUTE, None)
        if isinstance(spec, SkillSpec) and spec.fn is value:
            reg.add(spec)
            found += 1
    return found


def load_registry(modules: Iterable[str] = BUILTIN_MODULES, *, packs: bool = True) -> Registry:
    """A new registry holding the @skill functions of `modules` (the built-in library by default) and, with `packs`,
    of every module an `agentml.skills` entry point names. A broken or empty pack fails here, naming itself."""
    reg = Registry()
    for name in modules:
        _add_module(reg, import_module(name))
    if not packs:
        return reg
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken pack must say which one it is
            raise SkillRegistrationError(f"skill pack {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        if isinstance(loaded, ModuleType):
            found = _add_module(reg, loaded)
        elif isinstance(getattr(loaded, _SPEC_ATTRIBUTE, None), SkillSpec):
            reg.add(spec_of(loaded))
            found = 1
        else:
            found = 0
        if not found:
            raise SkillRegistrationError(
                f"skill pack {ep.name!r} ({ep.value}) has no @skill functions",
                hint="point the entry point at a module that defines (or imports) @skill functions")
    return reg
