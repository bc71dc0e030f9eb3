"""Where a step runs. `local`: in the driver's thread. `ray`: as a Ray task that rebuilds the SkillContext on a worker.

Both call `execute_step`; both stop a long skill at its next progress report once `cancel` is set. The ray backend
also cancels the task itself (politely, then by force after a grace period) for skills that report rarely.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from executor.errors import StepCancelled
from executor.ray_support import start_relay
from executor.steps import StepJob, StepOutcome, execute_step, failure
from executor.store import utcnow
from skills.context import Progress

Report = Callable[[Progress], None]


class Backend(Protocol):
    """Runs one step to its outcome, reporting progress to the driver as it goes."""

    name: str

    def run(self, job: StepJob, report: Report, cancel: threading.Event) -> StepOutcome: ...


class LocalBackend:
    """In-process: the skill runs in the calling thread."""

    name = "local"

    def run(self, job: StepJob, report: Report, cancel: threading.Event) -> StepOutcome:
        def sink(progress: Progress) -> None:
            report(progress)
            if cancel.is_set():
                raise StepCancelled(job.step_id)

        return execute_step(job, sink)


def ray_failure(exc: BaseException, job: StepJob, started: datetime) -> StepOutcome:
    """A step whose Ray task failed outside the skill: say so, with Ray's own reason, not as a skill bug."""
    cause = getattr(exc, "cause", None) or exc
    reason = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
    outcome = failure(exc, job.spec.name, started, run_id=job.run_id, step_id=job.step_id)
    outcome.error = f"the Ray task of step {job.step_id!r} failed: {type(cause).__name__}: {reason[:300]}"
    outcome.hint = ("check that the skill's module is installed on the Ray workers and that they are healthy (Ray "
                    "dashboard); operators find the traceback in the run store")
    return outcome


def _run_in_worker(job: StepJob, relay: Any) -> StepOutcome:
    """The Ray task body: progress goes through the relay actor, which also says when to stop."""
    import ray

    def sink(progress: Progress) -> None:
        if ray.get(relay.push.remote(progress)):
            raise StepCancelled(job.step_id)

    return execute_step(job, sink)


class RayBackend:
    """Each step is a Ray task; the driver polls it, forwards its progress and cancels it on request."""

    name = "ray"

    def __init__(self, *, poll_s: float = 0.2, grace_s: float = 10.0, max_retries: int = 0) -> None:
        import ray

        # retries would rerun a whole skill; training resumes from checkpoints inside the skill instead
        self._task = ray.remote(max_retries=max_retries)(_run_in_worker)
        self._relay = start_relay()
        self._poll_s = poll_s
        self._grace_s = grace_s

    def run(self, job: StepJob, report: Report, cancel: threading.Event) -> StepOutcome:
        import ray

        started = utcnow()
        # skills on Ray ask Train/Tune for their own CPUs: holding one here could starve them on a small cluster
        ref = self._task.options(num_cpus=0 if job.spec.uses_ray else 1).remote(job, self._relay)
        self._wait(ref, report, cancel)
        try:
            return ray.get(ref)
        except (ray.exceptions.TaskCancelledError, KeyboardInterrupt):
            return StepOutcome("cancelled", started, utcnow(), error="the run was cancelled",
                               hint="start the run again to finish it", error_type="TaskCancelledError")
        except ray.exceptions.RayError as exc:  # Ray itself failed: worker died, node lost, arguments unreadable
            if cancel.is_set():
                return StepOutcome("cancelled", started, utcnow(), error="the run was cancelled",
                                   error_type=type(exc).__name__)
            return ray_failure(exc, job, started)

    def _wait(self, ref: Any, report: Report, cancel: threading.Event) -> None:
        import ray

        deadline: float | None = None
        while True:
            ready, _ = ray.wait([ref], timeout=self._poll_s)
            self._forward(report)
            if ready:
                return
            if cancel.is_set() and deadline is None:
                self._relay.cancel.remote()
                ray.cancel(ref, recursive=True)
                deadline = time.monotonic() + self._grace_s
            elif deadline is not None and time.monotonic() > deadline:
                ray.cancel(ref, force=True, recursive=True)
                deadline = float("inf")

    def _forward(self, report: Report) -> None:
        import ray

        for progress in ray.get(self._relay.drain.remote()):
            report(progress)

    def close(self) -> None:
        """Stop the relay actor (the cluster stays up for the next run)."""
        import ray

        ray.kill(self._relay)
