"""Before and between steps: check a plan's shape, and turn a step's literals and refs into its typed input.

Refs are followed by `skills.refs` (the one resolver): `Ref(step, path)` takes `path` of that step's JSON outputs, a
dotted path (`metrics.auc`, `trials.0`) walking into dicts and lists, and refs nested in lists and dicts of an input
resolve too. Resolved inputs are validated with the skill's input model; a bad one is an ExecutionError that names
the step and the input, never the data value (values may be governed data).
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from executor.errors import ExecutionError
from skills.errors import SkillError
from skills.plan import Plan, Step
from skills.refs import Ref, RefError, find_refs, path_type, resolve
from skills.registry import Registry, SkillSpec


def check_plan(plan: Plan, registry: Registry) -> tuple[list[str], dict[str, SkillSpec]]:
    """The execution order and each step's skill. Raises ExecutionError for a plan that cannot run at all."""
    ids = [s.id for s in plan.steps]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ExecutionError(f"duplicate step id(s): {', '.join(duplicates)}", step=duplicates[0],
                             hint="give every step its own id")
    specs = {s.id: _spec(s, registry) for s in plan.steps}
    for s in plan.steps:
        for name, ref in s.all_refs():
            _check_ref(s, name, ref, specs)
    try:
        order = plan.topological_order()
    except ValueError as exc:
        raise ExecutionError(f"the plan has a {exc}", hint="a step may only read from steps before it") from None
    return order, specs


def _spec(step: Step, registry: Registry) -> SkillSpec:
    try:
        return registry.get(step.skill)
    except SkillError as exc:
        raise ExecutionError(f"step {step.id!r}: {exc.message}", step=step.id, field="skill", hint=exc.hint) from None


def _check_ref(step: Step, name: str, ref: Ref, specs: dict[str, SkillSpec]) -> None:
    source = specs.get(ref.step)
    if source is None:
        raise ExecutionError(f"step {step.id!r} input {name!r} refers to unknown step {ref.step!r}", step=step.id,
                             field=name, hint=f"steps: {', '.join(specs)}")
    try:
        path_type(ref, source.output_model)
    except RefError as err:
        raise ExecutionError(f"step {step.id!r} input {name!r} refers to {ref}, but skill {source.name!r} has no "
                             f"output {err.missing!r}", step=step.id, field=name, hint=err.hint) from None


def resolve_inputs(step: Step, spec: SkillSpec, outputs: dict[str, dict[str, Any]]) -> BaseModel:
    """The step's input model, built from its literals and the JSON outputs of the steps it refers to."""
    raw = {name: _value(step, name, value, outputs) for name, value in step.inputs.items()}
    try:
        return spec.input_model.model_validate(raw)
    except ValidationError as exc:
        raise _input_error(step, spec, exc) from None


def _value(step: Step, name: str, value: Any, outputs: dict[str, dict[str, Any]]) -> Any:
    try:
        return resolve(value, outputs)
    except RefError as err:
        raise ExecutionError(f"step {step.id!r} input {name!r}: {err.message}", step=step.id, field=name,
                             hint=err.hint) from None


def _input_error(step: Step, spec: SkillSpec, exc: ValidationError) -> ExecutionError:
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(input)"
        origins = find_refs(step.inputs.get(str(err["loc"][0]))) if err["loc"] else []
        where = f" (from {', '.join(map(str, origins))})" if origins else ""
        problems.append(f"input {loc!r}{where}: {err['msg']}")
    first = exc.errors(include_input=False, include_url=False)[0]
    field = str(first["loc"][0]) if first["loc"] else None
    return ExecutionError(f"step {step.id!r} ({spec.name}): bad input: " + "; ".join(problems), step=step.id,
                          field=field, hint=_hint(spec, field))


def _hint(spec: SkillSpec, field: str | None) -> str:
    fields = spec.input_model.model_fields
    if field in fields:
        annotation = fields[field].annotation
        shown = getattr(annotation, "__name__", None) or repr(annotation).replace("typing.", "")
        return f"{spec.name}.{field} expects {shown}; fix the literal in the plan or the step it refers to"
    return f"inputs of {spec.name}: {', '.join(fields)}"
