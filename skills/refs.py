"""References between steps: the one model (`Ref`) and the one way to find, type and resolve them.

In JSON a reference is `{"$ref": "step.path"}`: `step` is a step id and `path` the output field, optionally followed
by a dotted sub-path into dicts and lists (`model.num_rounds`, `slices.0.column`). A reference may stand alone as an
input or sit inside lists and dicts of an input (`[{"$ref": "a.table"}, {"$ref": "b.table"}]`). Validation
(`path_type`, against the producing skill's output model) and execution (`resolve`, against its JSON outputs) walk a
path by the same rules, so a ref that passes the one is read the same way by the other.
"""
from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_serializer, model_validator

from skills.errors import SkillError


class Ref(BaseModel):
    """A reference to `path` (output field, then an optional dotted sub-path) of the outputs of step `step`.

    `Ref(step="train", path="model.num_rounds")`; `field=` is accepted for `path=` since a bare field is a path."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    step: str
    path: str = Field(validation_alias=AliasChoices("path", "field"))

    @model_validator(mode="before")
    @classmethod
    def _from_json(cls, data: Any) -> Any:
        if isinstance(data, dict) and "$ref" in data:
            step, _, path = str(data["$ref"]).partition(".")
            return {"step": step, "path": path}
        return data

    @model_serializer
    def _to_json(self) -> dict[str, str]:
        return {"$ref": str(self)}

    def __str__(self) -> str:
        return f"{self.step}.{self.path}"

    @property
    def field(self) -> str:
        """The output field the path starts with (`model` of `model.num_rounds`)."""
        return self.parts[0]

    @property
    def parts(self) -> tuple[str, ...]:
        """The path split at dots: the output field, then keys and list indices."""
        return tuple(self.path.split("."))


class RefError(SkillError):
    """A reference that cannot be followed. `ref` is the reference, `missing` what is not there (a step id, or the
    dotted part of the path that does not exist), `options` the names that do exist at that point (may be empty)."""

    def __init__(self, message: str, *, ref: Ref, missing: str, options: Sequence[str] = (),
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.ref = ref
        self.missing = missing
        self.options = list(options)


def is_ref(value: Any) -> bool:
    """True for a `Ref` or its JSON form `{"$ref": "step.path"}`."""
    return isinstance(value, Ref) or (isinstance(value, dict) and set(value) == {"$ref"})


def as_ref(value: Any) -> Ref | None:
    """The `Ref` a value stands for, or None for a literal (lists and dicts of refs included: see `find_refs`)."""
    if isinstance(value, Ref):
        return value
    if is_ref(value):
        return Ref.model_validate(value)
    return None


def map_refs(value: Any, replace: Callable[[Ref], Any]) -> Any:
    """`value` with every ref inside it (itself, or nested in lists, tuples and dicts) replaced by `replace(ref)`.
    When `replace` returns the very `Ref` it was given, the ref stays as it was written (dict or Ref)."""
    ref = as_ref(value)
    if ref is not None:
        new = replace(ref)
        return value if new is ref else new
    if isinstance(value, (list, tuple)):
        return type(value)(map_refs(v, replace) for v in value)
    if isinstance(value, dict):
        return {k: map_refs(v, replace) for k, v in value.items()}
    return value


def find_refs(value: Any) -> list[Ref]:
    """Every ref inside `value`, in order: the value itself, or refs nested in its lists, tuples and dicts."""
    found: list[Ref] = []

    def keep(ref: Ref) -> Ref:
        found.append(ref)
        return ref

    map_refs(value, keep)
    return found


def resolve(value: Any, outputs: Mapping[str, Mapping[str, Any]], *, partial: bool = False) -> Any:
    """`value` with every ref inside it replaced by the JSON output it names (`outputs`: step id -> outputs).

    Raises RefError naming the step, the path and what is missing when a ref cannot be followed. With `partial`,
    refs to steps that are not in `outputs` stay refs (a plan run in parts); refs to steps that are must resolve."""
    def follow(ref: Ref) -> Any:
        if partial and ref.step not in outputs:
            return ref
        return _output(ref, outputs)

    return map_refs(value, follow)


def _output(ref: Ref, outputs: Mapping[str, Mapping[str, Any]]) -> Any:
    if ref.step not in outputs:
        raise RefError(f"{ref} cannot be resolved: step {ref.step!r} has no outputs", ref=ref, missing=ref.step,
                       options=sorted(outputs), hint=f"step {ref.step!r} must succeed before its outputs are read")
    current: Any = outputs[ref.step]
    for depth, part in enumerate(ref.parts):
        current = _child(current, part, ref, depth)
    return current


def _child(current: Any, part: str, ref: Ref, depth: int) -> Any:
    """One step down a JSON value; the error never shows data (keys and values may be governed data)."""
    if isinstance(current, Mapping) and part in current:
        return current[part]
    if isinstance(current, list) and _is_index(part) and -len(current) <= int(part) < len(current):
        return current[int(part)]
    missing = ".".join(ref.parts[:depth + 1])
    found = f" ({'.'.join(ref.parts[:depth])!r} is {_shape(current)})" if depth else ""
    raise RefError(f"{ref} cannot be resolved: the output of step {ref.step!r} has no {missing!r}{found}", ref=ref,
                   missing=missing, hint="refer to a field the skill's output model declares; index lists with numbers")


def _shape(value: Any) -> str:
    """What a JSON value is, without its content (keys and values may be governed data)."""
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, Mapping):
        return "a dict without that key"
    return f"a single value of type {type(value).__name__}"


def _is_index(part: str) -> bool:
    return part.lstrip("-").isdigit()


# ---------------------------------------------------------------------------------------------------------------------
# Static types: what a path names in a skill's output model, before anything runs

_NOWHERE = object()  # a part no value of that type can have
_SCALARS = (str, bytes, int, float, type(None))  # bool and enums of these derive from them


def path_type(ref: Ref, model: type[BaseModel]) -> Any:
    """The annotation of `ref.path` in the output model `model`; `Any` where the types cannot tell (free-form dicts,
    `Any`, unions). Raises RefError when no output of `model` can have that path: a field the model (or a model
    inside it) lacks, a name into a list, a part below a scalar."""
    annotation: Any = model
    for depth, part in enumerate(ref.parts):
        child = _part_type(annotation, part)
        if child is _NOWHERE:
            raise _no_part(ref, depth, annotation, model)
        annotation = child
    return annotation


def _part_type(annotation: Any, part: str) -> Any:
    """The type of `part` inside a value of `annotation`: a field, a dict value, a list item, Any, or _NOWHERE."""
    annotation = _unwrap(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is object:  # checked first: in Python 3.11 `Any` is a class too
        return Any
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        info = annotation.model_fields.get(part)
        if info is None:  # a model that allows extra fields may dump any key
            return Any if annotation.model_config.get("extra") == "allow" else _NOWHERE
        return info.annotation
    if _is_class(annotation, _SCALARS) or origin is typing.Literal:
        return _NOWHERE  # a JSON scalar has nothing below it (checked before sequences: str is one)
    if _is_class(origin or annotation, Mapping):
        return args[1] if len(args) == 2 else Any
    if _is_class(origin or annotation, Sequence):
        return _item_type(origin, args) if _is_index(part) else _NOWHERE
    return Any  # a class the types cannot see into (a dataclass, a custom type): accepted


def _unwrap(annotation: Any) -> Any:
    """`Annotated[X, ...]` and `X | None` as X; other unions as Any (the path may hold for some members only)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _unwrap(args[0])
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        return _unwrap(members[0]) if len(members) == 1 else Any
    return annotation


def _is_class(annotation: Any, base: type | tuple[type, ...]) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, base)


def _item_type(origin: Any, args: tuple[Any, ...]) -> Any:
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return Any  # tuple[int, str]: the item depends on the index
    return args[0] if args else Any


def _no_part(ref: Ref, depth: int, annotation: Any, model: type[BaseModel]) -> RefError:
    missing = ".".join(ref.parts[:depth + 1])
    inner = _unwrap(annotation)
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        options = list(inner.model_fields)
        owner = "its outputs" if depth == 0 else f"{'.'.join(ref.parts[:depth])} ({inner.__name__}) has"
        hint = f"{owner}: {', '.join(options)}"
    elif not _is_class(inner, _SCALARS) and _is_class(typing.get_origin(inner) or inner, Sequence):
        options, hint = [], f"{'.'.join(ref.parts[:depth])} is a list: index it with a number"
    else:
        options, hint = [], f"{'.'.join(ref.parts[:depth])} is a single value, with nothing below it"
    return RefError(f"{ref}: the outputs ({model.__name__}) have no {missing!r}", ref=ref, missing=missing,
                    options=options, hint=hint)
