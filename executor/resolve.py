"""Before and between steps: check a plan's shape, and turn a step's literals and refs into its typed input.

A `Ref(step, field)` takes `field` of that step's JSON outputs; a dotted field (`metrics.auc`, `trials.0`) walks into
dicts and lists. Resolved inputs are validated with the skill's input model; a bad one is an ExecutionError that names
the step and the input, never the data value (values may be governed data).
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from executor.errors import ExecutionError
from skills.errors import SkillError
from skills.plan import Plan, Ref, Step, as_ref
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
        for name, ref in s.refs().items():
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
    head = ref.field.split(".", 1)[0]
    if head not in source.output_model.model_fields:
        raise ExecutionError(
            f"step {step.id!r} input {name!r} refers to {ref}, but skill {source.name!r} has no output {head!r}",
            step=step.id, field=name, hint=f"outputs of {source.name}: {', '.join(source.output_model.model_fields)}")


def resolve_inputs(step: Step, spec: SkillSpec, outputs: dict[str, dict[str, Any]]) -> BaseModel:
    """The step's input model, built from its literals and the JSON outputs of the steps it refers to."""
    raw = {name: _value(step, name, value, outputs) for name, value in step.inputs.items()}
    try:
        return spec.input_model.model_validate(raw)
    except ValidationError as exc:
        raise _input_error(step, spec, exc) from None


def _value(step: Step, name: str, value: Any, outputs: dict[str, dict[str, Any]]) -> Any:
    ref = as_ref(value)
    if ref is None:
        return value
    if ref.step not in outputs:
        raise ExecutionError(f"step {step.id!r} input {name!r}: step {ref.step!r} has no outputs", step=step.id,
                             field=name, hint=f"step {ref.step!r} must succeed before {step.id!r} runs")
    current: Any = outputs[ref.step]
    for part in ref.field.split("."):
        current = _walk(current, part, step, name, ref)
    return current


def _walk(current: Any, part: str, step: Step, name: str, ref: Ref) -> Any:
    if isinstance(current, dict) and part in current:
        return current[part]
    if isinstance(current, list) and part.lstrip("-").isdigit() and -len(current) <= int(part) < len(current):
        return current[int(part)]
    raise ExecutionError(f"step {step.id!r} input {name!r}: the output of step {ref.step!r} has no {ref.field!r}",
                         step=step.id, field=name, hint="refer to a field the skill's output model declares")


def _input_error(step: Step, spec: SkillSpec, exc: ValidationError) -> ExecutionError:
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(input)"
        origin = as_ref(step.inputs.get(str(err["loc"][0]))) if err["loc"] else None
        where = f" (from {origin})" if origin else ""
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
