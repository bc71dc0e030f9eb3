"""The errors of the skills layer: `SkillError` (a skill could not do its work) and `ExecutionError` (a plan could
not be run; raised by the executor and by readers of run results)."""
from __future__ import annotations

from typing import Any, ClassVar

from governance import AgentmlError, Category


class SkillError(AgentmlError):
    """A skill could not do its work with what it was given. `hint` says how to fix it."""

    code = "skill"

    def __init__(self, message: str, *, skill: str | None = None, hint: str | None = None, **fields: Any) -> None:
        super().__init__(message, hint=hint, **fields)
        self.skill = skill

    def __str__(self) -> str:
        prefix = f"[{self.skill}] " if self.skill else ""
        suffix = f" Hint: {self.hint}" if self.hint else ""
        return f"{prefix}{self.message}{suffix}"


class SkillRegistrationError(SkillError):
    """A skill definition is wrong; raised at import time so bad skills never reach a plan."""


class ExecutionError(AgentmlError):
    """A plan could not be run, or a run cannot do what was asked. `step`/`field` say where."""

    category: ClassVar[Category] = "run_failed"
    code = "run_conflict"

    def __init__(self, message: str, *, step: str | None = None, field: str | None = None, hint: str | None = None,
                 **fields: Any) -> None:
        super().__init__(message, hint=hint, **fields)
        self.step = step
        self.field = field

    def details(self) -> list[dict[str, Any]]:
        if not (self.step or self.field):
            return []
        return [{"step": self.step, "field": self.field, "message": self.message, "hint": self.hint or ""}]
