"""Run a validated Plan: local (in-process) and Ray backends, a SQL run store, progress events and cancellation.

This module is the executor's whole public interface: run (`run_plan`, `run_stored`), submit and control Ray jobs
(`RayJobs`: submit, status, cancel; `job_main` is a job's entrypoint), events and results (`RunEvent`, `RunResult`),
and the store (`RunStore`). Nothing outside `executor/` imports its submodules.
"""
from __future__ import annotations

from executor.errors import ExecutionError, RunNotFound
from executor.jobs import AfterRun, JobConfig, JobInfo, RayJobs, job_id_for, job_parser, open_engine, run_job
from executor.jobs import main as job_main
from executor.query import RunPage, RunQuery
from executor.ray_support import ensure_ray
from executor.run import run_plan, run_stored
from executor.store import RunStore
from skills.runs import RunEvent, RunResult, RunStatus, StepResult, StepStatus

__all__ = [
    "AfterRun", "ExecutionError", "JobConfig", "JobInfo", "RayJobs", "RunEvent", "RunNotFound", "RunPage",
    "RunQuery", "RunResult", "RunStatus", "RunStore", "StepResult", "StepStatus", "ensure_ray", "job_id_for",
    "job_main", "job_parser", "open_engine", "run_job", "run_plan", "run_stored",
]
