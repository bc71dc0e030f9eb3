"""Run a validated Plan: local (in-process) and Ray backends, a SQL run store, progress events and cancellation."""
from __future__ import annotations

from executor.errors import ExecutionError, RunNotFound
from executor.models import RunEvent, RunResult, RunStatus, StepResult, StepStatus
from executor.ray_support import ensure_ray
from executor.run import run_plan, run_stored
from executor.store import RunStore

__all__ = [
    "ExecutionError", "RunEvent", "RunNotFound", "RunResult", "RunStatus", "RunStore", "StepResult", "StepStatus",
    "ensure_ray", "run_plan", "run_stored",
]
