"""The Plan: data only. Steps `{id, skill, inputs}`; an input is a literal, a `Ref` to another step's output, or a
list/dict holding refs.

In JSON a reference is written `{"$ref": "step_id.field"}` (or `step_id.field.sub.0`, a dotted path into the output)
so that plans stay readable and diffable; `skills.refs` defines it and is the one place that resolves it.
"""
from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from skills.refs import Ref, as_ref, find_refs, is_ref

__all__ = ["Plan", "Ref", "Step", "as_ref", "find_refs", "is_ref"]

_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Step(BaseModel):
    """One node of the DAG: call `skill` with `inputs` (literals and refs)."""

    model_config = ConfigDict(extra="forbid")
    id: str
    skill: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    description: str = ""

    @field_validator("id")
    @classmethod
    def _check_id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError(f"step id {v!r} must be an identifier (letters, digits, underscore)")
        return v

    def refs(self) -> dict[str, Ref]:
        """Input name -> Ref, for the inputs that are a reference themselves (not lists or dicts holding some)."""
        return {name: ref for name, value in self.inputs.items() if (ref := as_ref(value)) is not None}

    def all_refs(self) -> list[tuple[str, Ref]]:
        """(input name, Ref) for every reference in the inputs, those nested in lists and dicts included."""
        return [(name, ref) for name, value in self.inputs.items() for ref in find_refs(value)]


class Plan(BaseModel):
    """A DAG of skill calls. `goal` is the prompt it came from; `metadata` holds planner notes (task, target...)."""

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    goal: str = ""
    steps: list[Step] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def dependencies(self) -> dict[str, set[str]]:
        """Step id -> ids of the steps it reads from."""
        return {s.id: {r.step for _, r in s.all_refs()} for s in self.steps}

    def topological_order(self) -> list[str]:
        """Step ids, each after the steps it depends on. Raises ValueError naming a cycle."""
        deps = self.dependencies()
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(node: str, path: list[str]) -> None:
            if state.get(node) == 2:
                return
            if state.get(node) == 1:
                cycle = path[path.index(node):] + [node]
                raise ValueError("cycle: " + " -> ".join(cycle))
            state[node] = 1
            for dep in sorted(deps.get(node, ())):
                if dep in deps:
                    visit(dep, path + [node])
            state[node] = 2
            order.append(node)

        for s in self.steps:
            visit(s.id, [])
        return order

    def descendants(self, step_id: str) -> set[str]:
        """Every step that reads, directly or not, from `step_id`."""
        deps = self.dependencies()
        out: set[str] = set()
        frontier = {step_id}
        while frontier:
            frontier = {s for s, d in deps.items() if d & frontier} - out
            out |= frontier
        return out
