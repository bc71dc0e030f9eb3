"""The planner's error (an `AgentmlError` of category bad_input) and the structured problem it carries."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from governance import AgentmlError

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


class PlanError(AgentmlError):
    """A prompt could not become a valid plan. `problems` say what is wrong, `candidates` what the user may
    pick, `hint` how to go on (bad input: HTTP 422 in the API, exit code 2 in the CLI)."""

    code = "plan_invalid"

    def __init__(self, message: str, *, problems: list[PlanProblem] | None = None,
                 candidates: list[str] | None = None, hint: str | None = None, cli_message: str | None = None,
                 cli_hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = list(problems or [])
        self.candidates = list(candidates or [])
        # for a terminal, which has no candidates list to show and whose options are flags (--target COL); the API
        # and the dashboard answer `message` and `hint`, with the candidates as a list of their own
        self.cli_message = cli_message
        self.cli_hint = cli_hint

    def details(self) -> list[dict[str, Any]]:
        return [p.model_dump() for p in self.problems]

    def text(self) -> str:
        return "\n".join([self.cli_message or self.message, *(f"  - {p.text()}" for p in self.problems)])

    def __str__(self) -> str:
        return self.text() + (f"\nHint: {self.hint}" if self.hint else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON body for a 422 response."""
        return {
            "message": self.message,
            "problems": self.details(),
            "candidates": self.candidates,
            "hint": self.hint,
        }
