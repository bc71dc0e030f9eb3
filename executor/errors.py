"""The executor's errors: `ExecutionError` (shared with everyone who reads run results, so it lives in `skills`) and
its special cases."""
from __future__ import annotations

from typing import ClassVar

from governance import Category
from skills.errors import ExecutionError

__all__ = ["ExecutionError", "RunNotFound", "StepCancelled"]


class StepCancelled(ExecutionError):
    """Raised inside a running step (at its next progress report) once the run was asked to stop."""

    def __init__(self, step: str | None = None) -> None:
        super().__init__("the run was cancelled", step=step, hint="start the run again to finish it")


class RunNotFound(ExecutionError):
    """No run with this id in the run store."""

    category: ClassVar[Category] = "not_found"
    code = "not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r}", hint="list runs to see the ids this store holds", run_id=run_id)
