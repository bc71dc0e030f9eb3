"""Budgets: how much boosting a principal may ask for, and what a plan would spend.

Costs come from each skill's `cost(inp)` when it has one; otherwise from the well-known input fields
(`num_trials` x `max_rounds` for tuning, `num_rounds` for training), so that a skill pack without a cost function is
still counted, never silently free.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from skills.plan import Plan
from skills.refs import find_refs
from skills.registry import Registry, SkillSpec


class Budget(BaseModel):
    """A principal's quota for one plan."""

    model_config = ConfigDict(extra="forbid")
    max_boosting_rounds: int = Field(default=20_000, ge=1, description="boosting rounds summed over every step")
    max_trials: int = Field(default=64, ge=1, description="tuning trials summed over every step")
    max_steps: int = Field(default=32, ge=1, description="steps in the plan")


class StepCost(BaseModel):
    """What one step spends: boosting rounds (all trials together) and tuning trials."""

    model_config = ConfigDict(extra="forbid")
    rounds: int = 0
    trials: int = 0


def literal_input(spec: SkillSpec, inputs: dict[str, Any]) -> BaseModel:
    """The step's input model built from its literal inputs, unvalidated; inputs holding refs become None and absent
    fields take their defaults. Only for estimates (`reads`, `cost`): callers must survive odd values."""
    values = {name: (None if find_refs(value) else value) for name, value in inputs.items()
              if name in spec.input_model.model_fields}
    return spec.input_model.model_construct(**values)


def _as_int(value: Any, default: int = 0) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return default


def step_cost(spec: SkillSpec, inputs: dict[str, Any]) -> StepCost:
    """Rounds and trials of one step: the skill's `cost(inp)` if it can tell, else the well-known fields."""
    inp = literal_input(spec, inputs)
    trials = _as_int(getattr(inp, "num_trials", 0))
    rounds: int | None = None
    if spec.cost is not None:
        try:
            rounds = _as_int(spec.cost(inp))
        except Exception:  # a cost function may need a ref's value; fall back to the known fields
            rounds = None
    if rounds is None:
        per_model = _as_int(getattr(inp, "max_rounds", None) or getattr(inp, "num_rounds", 0))
        rounds = per_model * max(trials, 1)
    return StepCost(rounds=rounds, trials=trials)


def plan_costs(plan: Plan, registry: Registry) -> dict[str, StepCost]:
    """Step id -> StepCost for every step whose skill is known."""
    return {s.id: step_cost(registry.get(s.skill), s.inputs) for s in plan.steps if s.skill in registry}


def fit_rounds(spec: SkillSpec | None, inputs: dict[str, Any], field: str, upper: int, room: int) -> int:
    """The largest value <= `upper` for the rounds input `field` whose step cost fits in `room` rounds, by the
    skill's own cost function (tuning may add a final retraining; binary search, cost grows with rounds). 1 when
    nothing fits: validation then reports the budget."""
    if spec is None:
        return max(1, min(upper, room))
    lo, hi = 1, max(upper, 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if step_cost(spec, {**inputs, field: mid}).rounds <= room:
            lo = mid
        else:
            hi = mid - 1
    return lo
