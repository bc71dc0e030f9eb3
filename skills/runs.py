"""What a run looks like from outside: RunResult (one per run), StepResult (one per step), RunEvent (progress).

The same models come back from the executor's `run_plan` and from its run store, so the planner's OODA loop, the
CLI, the API and tests read one shape; they live in `skills`, beside `Plan`, because every layer above reads them.
Tracebacks are kept for operators (`StepResult.traceback`) but never serialised: users see message and hint only.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from skills.errors import ExecutionError

StepStatus = Literal["pending", "running", "succeeded", "failed", "skipped", "cancelled", "interrupted"]
RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
FINISHED_STEP = frozenset({"succeeded", "failed", "skipped", "cancelled", "interrupted"})
FINISHED_RUN = frozenset({"succeeded", "failed", "cancelled", "interrupted"})


class StepResult(BaseModel):
    """One step of a run: its status, timings, JSON outputs and (when it failed) a message and a hint."""

    model_config = ConfigDict(extra="forbid")
    id: str
    skill: str
    status: StepStatus = "pending"
    started: datetime | None = None
    finished: datetime | None = None
    outputs: dict[str, Any] | None = None
    error: str | None = None
    hint: str | None = None
    error_type: str | None = None
    traceback: str | None = Field(default=None, exclude=True, repr=False)

    @property
    def duration_s(self) -> float | None:
        """Seconds between start and finish, when both are known."""
        if self.started is None or self.finished is None:
            return None
        return (self.finished - self.started).total_seconds()


class RunResult(BaseModel):
    """A run of a plan: overall status, every step's result, and the plan it ran."""

    model_config = ConfigDict(extra="forbid")
    id: str
    user: str
    status: RunStatus
    created: datetime
    updated: datetime
    plan: dict[str, Any]
    prompt: str = ""
    principal: dict[str, Any] = Field(default_factory=dict)
    backend: str = "local"
    job_id: str | None = None
    owner: str | None = None
    cancel_requested: bool = False
    error: str | None = None
    hint: str | None = None
    result: dict[str, Any] = Field(default_factory=dict)
    steps: dict[str, StepResult] = Field(default_factory=dict)
    settings: dict[str, Any] | None = Field(default=None, description="the RuntimeSettings the run ran with")

    @property
    def run_id(self) -> str:
        return self.id

    @property
    def failed_step(self) -> str | None:
        """The first step (in plan order) that failed, or None."""
        return next((s.id for s in self.steps.values() if s.status == "failed"), None)

    def outputs(self, step_id: str) -> dict[str, Any]:
        """The JSON outputs of a finished step. Raises ExecutionError when it has none."""
        step = self.steps.get(step_id)
        if step is None:
            raise ExecutionError(f"run {self.id} has no step {step_id!r}", step=step_id,
                                 hint=f"steps: {', '.join(self.steps)}")
        if step.outputs is None:
            raise ExecutionError(f"step {step_id!r} has no outputs (status {step.status})", step=step_id,
                                 hint=step.error or "look at the failed step's error")
        return step.outputs

    def raise_for_status(self) -> RunResult:
        """Raise ExecutionError for a run that did not succeed; return self otherwise."""
        if self.status == "succeeded":
            return self
        failed = self.steps.get(self.failed_step or "")
        if failed is not None:
            raise ExecutionError(f"step {failed.id!r} ({failed.skill}) failed: {failed.error}", step=failed.id,
                                 hint=failed.hint)
        raise ExecutionError(f"run {self.id} {self.status}" + (f": {self.error}" if self.error else ""),
                             hint=self.hint)


class RunEvent(BaseModel):
    """One entry of a run's append-only event log (state changes and skill progress); `seq` orders them."""

    model_config = ConfigDict(extra="forbid")
    run_id: str
    seq: int = 0
    time: datetime
    kind: str
    step: str | None = None
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
