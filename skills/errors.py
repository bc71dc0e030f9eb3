"""The errors of the skills layer: `SkillError` (a skill could not do its work) and `ExecutionError` (a plan could
not be run; raised by the executor and by readers of run results)."""
from __future__ import annotations

from typing import Any


class SkillError(Exception):
    """A skill could not do its work. `hint` says how to fix it; `fields` carry structured detail."""

    def __init__(self, message: str, *, skill: str | None = None, hint: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.skill = skill
        self.hint = hint
        self.fields = fields

    def __str__(self) -> str:
        prefix = f"[{self.skill}] " if self.skill else ""
        suffix = f" Hint: {self.hint}" if self.hint else ""
        return f"{prefix}{self.message}{suffix}"


class SkillRegistrationError(SkillError):
    """A skill definition is wrong; raised at import time so bad skills never reach a plan."""


class ExecutionError(Exception):
    """A plan could not be run. `step`/`field` say where; `hint` says how to fix it; `fields` carry more detail."""

    def __init__(self, message: str, *, step: str | None = None, field: str | None = None, hint: str | None = None,
                 **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        self.field = field
        self.hint = hint
        self.fields = fields

    def __str__(self) -> str:
        suffix = f" Hint: {self.hint}" if self.hint else ""
        return f"{self.message}{suffix}"
