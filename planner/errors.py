"""The one error base class of the planner package, and the structured problem it carries."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

ProblemKind = Literal[
    "plan", "duplicate_step", "unknown_skill", "unknown_ref", "cycle", "schema", "type_mismatch", "access", "budget",
]


class PlanProblem(BaseModel):
    """One thing wrong with a plan: where (`step`, `field`), what (`kind`, `message`) and how to fix it (`hint`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    step: str | None = None
    field: str | None = None
    kind: ProblemKind
    message: str
    hint: str = ""

    def text(self) -> str:
        """One line for a terminal: `step.field: message (hint)`."""
        where = ".".join(p for p in (self.step, self.field) if p)
        hint = f" Hint: {self.hint}" if self.hint else ""
        return f"{where + ': ' if where else ''}{self.message}.{hint}"


class PlanError(Exception):
    """A prompt could not become a valid plan. `problems` say what is wrong, `candidates` what the user may pick,
    `hint` how to go on. Maps to HTTP 422 in the API and exit code 2 in the CLI."""

    def __init__(self, message: str, *, problems: list[PlanProblem] | None = None,
                 candidates: list[str] | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = list(problems or [])
        self.candidates = list(candidates or [])
        self.hint = hint

    def __str__(self) -> str:
        lines = [self.message]
        lines += [f"  - {p.text()}" for p in self.problems]
        if self.hint:
            lines.append(f"Hint: {self.hint}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON body for a 422 response."""
        return {
            "message": self.message,
            "problems": [p.model_dump() for p in self.problems],
            "candidates": self.candidates,
            "hint": self.hint,
        }
