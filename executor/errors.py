"""The one error base class of the executor package."""
from __future__ import annotations

from typing import Any


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


class StepCancelled(ExecutionError):
    """Raised inside a running step (at its next progress report) once the run was asked to stop."""

    def __init__(self, step: str | None = None) -> None:
        super().__init__("the run was cancelled", step=step, hint="start the run again to finish it")


class RunNotFound(ExecutionError):
    """No run with this id in the run store."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r}", hint="list runs to see the ids this store holds", run_id=run_id)
