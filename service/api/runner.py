"""Where the API's runs execute: as Ray jobs (`RayJobRunner`, what `agentml serve` uses: on the cluster RAY_ADDRESS
names, or on the API's own local Ray head), or in this process (`LocalRunner`: AGENTML_RUNNER=in-process, for tests
and debugging).

Both start from a run the route recorded as "queued" in the run store, and both leave the store telling the truth:

- LocalRunner: one thread per run (at most `max_concurrent` running), `service.session.run_session` with the run's
  id. When the API stops, its unfinished runs end "interrupted" with their finished steps kept; when it was killed,
  the next API process marks them so at start (their owner process is gone).
- RayJobRunner: `executor.jobs` submits one job per run; the job writes to the store itself. A tracker thread reads
  job states back and settles runs whose job ended without saying so (stopped, crashed, lost). A restarted API simply
  keeps tracking a remote cluster's jobs: they never depended on it. The local head is the API's own: when it dies,
  its runs end "interrupted" and the next run starts a new head.

Cancel requests are a flag and an event in the store (`cancel_requested`), so any API replica may accept them: the
process that runs the run sees the flag and stops it; the run ends "cancelled".
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, get_args

from executor import (
    ExecutionError,
    JobConfig,
    JobInfo,
    RayJobs,
    RunResult,
    RunStatus,
    RunStore,
    ensure_ray,
    job_id_for,
)
from governance import Principal
from service.api.clusters import Cluster
from service.api.errors import ApiError
from service.session import SessionEnv, run_session
from skills.plan import Plan

if TYPE_CHECKING:
    from governance import Engine
    from service.mlflow_export import MlflowTarget
    from skills.artifacts import ArtifactStore
    from skills.registry import Registry

log = logging.getLogger("agentml.api.runner")
_RAY_OWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentml-ray-owner")  # lives as long as the API
FINISHED: frozenset[str] = frozenset(get_args(RunStatus)) - {"queued", "running"}
CANCEL_EVENT = "cancel_requested"


class Runner(Protocol):
    """Starts, stops and describes runs recorded in the store."""

    name: str

    def start(self) -> None: ...

    def prepare(self) -> None:
        """Raise ExecutionError when no run could start now (before the run is recorded)."""
        ...

    def submit(self, run_id: str, *, iterations: int = 0, attempt: int = 0) -> None: ...

    def cancel(self, run: RunResult, by: str) -> None: ...

    def job(self, run: RunResult) -> JobInfo | None: ...

    def logs(self, run: RunResult) -> str: ...

    def close(self) -> None: ...


def settle(store: RunStore, run: RunResult, status: RunStatus, error: str, hint: str) -> None:
    """End a run that its driver could not end: unfinished steps become cancelled (or failed / skipped)."""
    now = datetime.now(UTC)
    for step in run.steps.values():
        if step.status == "running":
            store.update_step(run.id, step.id, "cancelled" if status == "cancelled" else "failed", finished=now,
                              error=error, hint=hint)
        elif step.status == "pending":
            store.update_step(run.id, step.id, "cancelled" if status == "cancelled" else "skipped", error=error)
    store.finish_run(run.id, status, error=error, hint=hint, result=run.result)
    store.append_event(run.id, "run", message=error, data={"status": status})


def event_log(store: RunStore, run_id: str) -> str:
    """A run's events as log lines (what in-process runs have instead of a job's stdout)."""
    return "".join(f"{e.time.isoformat(timespec='seconds')} {e.kind:<9} {e.step or '-':<14} {e.message}\n"
                   for e in store.events(run_id))


def request_cancel(store: RunStore, run: RunResult, by: str) -> None:
    """Record a cancel request (the flag every driver polls, and an event); refuse it for a run that has ended."""
    if run.status in FINISHED:
        raise ExecutionError(f"run {run.id} already ended ({run.status})", hint="start a new run instead")
    store.update_run(run.id, cancel_requested=True)
    store.append_event(run.id, CANCEL_EVENT, message=f"cancel requested by {by}", data={"by": by})


# ------------------------------------------------------------------------------------------------ in this process


@dataclass
class _Active:
    thread: threading.Thread
    cancel: threading.Event = field(default_factory=threading.Event)
    seen_seq: int = 0
    by_user: bool = False
    started: bool = False  # holds a run slot; until then a cancel ends the run at once
    dropped: bool = False  # cancelled while waiting for a slot: nothing left to run


class LocalRunner:
    """Runs plans in background threads of the API process (local Ray starts when a step needs it)."""

    name = "local"

    def __init__(self, store: RunStore, engine: Callable[[], Engine], artifacts: ArtifactStore, registry: Registry,
                 *, max_concurrent: int = 2, ray_address: str | None = None, poll_s: float = 1.0,
                 grace_s: float = 15.0, mlflow: MlflowTarget | None = None) -> None:
        self.store = store
        self.mlflow = mlflow
        self._engine = engine
        self.artifacts = artifacts
        self.registry = registry
        self.ray_address = ray_address
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._active: dict[str, _Active] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poll_s = poll_s
        self._grace_s = grace_s

    def start(self) -> None:
        """Mark the runs of dead API processes interrupted, and watch for cancel requests."""
        interrupted = self.store.mark_interrupted(reason="the API process running it stopped")
        if interrupted:
            log.warning("marked %d run(s) of a stopped API process interrupted: %s", len(interrupted), interrupted)
        threading.Thread(target=self._watch, name="agentml-cancel-watch", daemon=True).start()

    def prepare(self) -> None:
        return None  # Ray starts (or is joined) in this process when a step needs it

    def submit(self, run_id: str, *, iterations: int = 0, attempt: int = 0) -> None:
        thread = threading.Thread(target=self._run, args=(run_id, iterations), name=f"agentml-run-{run_id}",
                                  daemon=True)  # a killed API must not wait for its runs: restart marks them
        # a resumed run's log already holds the cancel request that stopped it: watch only what comes after now
        past = self.store.events(run_id)
        with self._lock:
            self._active[run_id] = _Active(thread, seen_seq=past[-1].seq if past else 0)
        thread.start()

    def _run(self, run_id: str, iterations: int) -> None:
        active = self._active[run_id]
        try:
            with self._slots:
                with self._lock:
                    active.started = not active.dropped
                if self._stop.is_set() or active.dropped:
                    return  # closing (close() marks the still-queued run interrupted), or cancelled while queued
                self._execute(run_id, active.cancel, iterations)
        except Exception as exc:  # whatever happened, the run must not stay queued or running
            log.exception("run %s failed outside its steps", run_id)
            self._fail(run_id, exc)
        finally:
            with self._lock:
                self._active.pop(run_id, None)

    def _execute(self, run_id: str, cancel: threading.Event, iterations: int) -> None:
        record = self.store.get_run(run_id)
        plan = Plan.model_validate(record.plan)
        if any(s.skill in self.registry and self.registry.get(s.skill).uses_ray for s in plan.steps):
            # Ray's processes die with the *thread* that started them (kernel fate sharing): start it from a thread
            # that lives as long as the API, not from this run's thread, or the next run finds it dead
            _RAY_OWNER.submit(ensure_ray, self.ray_address).result()
        principal = Principal.model_validate(record.principal or {"user": record.user})
        env = SessionEnv(principal, self._engine(), self.artifacts, self.store, registry=self.registry,
                         ray_address=self.ray_address, cancel=cancel, mlflow=self.mlflow)
        try:
            run_session(plan, env, iterations=iterations, run_id=run_id)
        except ExecutionError:
            return  # the plan could not start; run_plan recorded it as failed with the reason

    def _fail(self, run_id: str, exc: Exception) -> None:
        run = self.store.get_run(run_id)
        if run.status not in FINISHED:
            message = getattr(exc, "message", None) or f"the run could not start ({type(exc).__name__})"
            settle(self.store, run, "failed", message, getattr(exc, "hint", None) or "see the API server's log")

    def cancel(self, run: RunResult, by: str) -> None:
        """Stop the run here if it runs here; else the process that runs it sees the request in the store."""
        request_cancel(self.store, run, by)
        with self._lock:
            active = self._active.get(run.id)
            queued = active is not None and not active.started
            if active is not None and queued:
                active.dropped = True
        if active is not None:
            active.by_user = True
            active.cancel.set()
            if queued:  # it never got a slot: end it now rather than when a slot frees up
                settle(self.store, self.store.get_run(run.id), "cancelled", f"cancelled by {by} before it started",
                       "start the run again")
        elif self.store.mark_interrupted(reason="the API process running it stopped"):
            log.info("run %s had no live process", run.id)

    def _watch(self) -> None:
        """Cancel requests written by other replicas reach the runs of this one."""
        while not self._stop.wait(self._poll_s):
            with self._lock:
                active = list(self._active.items())
            for run_id, entry in active:
                try:
                    events = self.store.events(run_id, after_seq=entry.seen_seq)
                except Exception:
                    log.exception("cannot read the events of run %s", run_id)
                    continue
                entry.seen_seq = events[-1].seq if events else entry.seen_seq
                if any(e.kind == CANCEL_EVENT for e in events):
                    entry.by_user = True
                    entry.cancel.set()

    def job(self, run: RunResult) -> JobInfo | None:
        return None

    def logs(self, run: RunResult) -> str:
        return event_log(self.store, run.id)

    def close(self) -> None:
        """Stop every run of this process; they end "interrupted" (the API stopped), finished steps kept."""
        self._stop.set()
        with self._lock:
            active = dict(self._active)
        for entry in active.values():
            entry.cancel.set()
        for entry in active.values():
            entry.thread.join(timeout=self._grace_s)
        for run_id, entry in active.items():
            if not entry.by_user:
                self._interrupted(run_id)

    def _interrupted(self, run_id: str) -> None:
        reason = "the API stopped while the run was running"
        run = self.store.get_run(run_id)
        if run.status == "cancelled":  # our own stop signal ended it: say what really happened
            self.store.update_run(run_id, status="interrupted", error=f"interrupted: {reason}",
                                  hint="finished steps are kept; run the plan again to finish it")
            self.store.append_event(run_id, "run_interrupted", message=reason)
        elif run.status not in FINISHED:
            self.store.mark_interrupted([run_id], reason=reason)


# ------------------------------------------------------------------------------------------------ as Ray jobs


class RayJobRunner:
    """Every run is a Ray job on `cluster`; a tracker thread reads job states back into the store.

    On the API's own local head (`cluster.local`), a head that died takes its runs with it: the tracker marks them
    interrupted (with the reason) and the next run starts a new head; runs of a previous API process whose head is
    gone are marked so at start."""

    name = "ray-job"

    def __init__(self, store: RunStore, cluster: Cluster, config: JobConfig, *, poll_s: float = 1.0,
                 lost_after_s: float = 120.0, head_grace_s: float = 20.0) -> None:
        self.store = store
        self.cluster = cluster
        self.config = cluster.job_config(config)
        self._poll_s = poll_s
        self._lost_after_s = lost_after_s
        self._head_grace_s = head_grace_s
        self._unexplained: dict[str, float] = {}  # run -> when its job was first seen ended without a word
        self._stop = threading.Event()
        self._submitted: dict[str, str] = {}  # run -> the address of the local head it was sent to
        self._lock = threading.Lock()

    def start(self) -> None:
        """Track every unfinished job run, also those a previous API process submitted."""
        if self.cluster.local:  # the previous process's head died with it, and its runs with the head
            gone = self.store.mark_interrupted(reason="the API process and its local Ray head stopped", jobs=True)
            if gone:
                log.warning("marked %d run(s) of a stopped API process interrupted: %s", len(gone), gone)
        threading.Thread(target=self._track, name="agentml-job-tracker", daemon=True).start()

    def prepare(self) -> None:
        """Make sure the cluster takes jobs (the local head starts here, once): ExecutionError (503) otherwise, before
        any run is recorded."""
        jobs = self.cluster.jobs()
        if not self.cluster.local:
            jobs.ping()

    def submit(self, run_id: str, *, iterations: int = 0, attempt: int = 0) -> None:
        """Submit the run's job; on our own head that went down meanwhile, once more on the next head."""
        job_id = job_id_for(run_id, attempt)
        self.store.update_run(run_id, job_id=job_id)  # before submitting: a crash in between leaves a trace
        extra = ["--iterations", str(iterations)] if iterations else []
        try:
            jobs = self.cluster.jobs()
            try:
                self._submit(jobs, run_id, extra, attempt)
            except ExecutionError:
                if not self.cluster.replaced(jobs):
                    raise
                self._submit(self.cluster.jobs(), run_id, extra, attempt)
        except ExecutionError as exc:
            log.warning("submitting run %s failed: %s", run_id, exc)
            raise ApiError(503, "ray_unavailable", exc.message, hint=exc.hint) from None
        self.store.append_event(run_id, "job", message=f"submitted as Ray job {job_id}", data={"job_id": job_id})

    def _submit(self, jobs: RayJobs, run_id: str, extra: list[str], attempt: int) -> None:
        with self._lock:
            self._submitted[run_id] = jobs.address  # a head that dies takes the runs sent to it
        try:
            jobs.submit(run_id, self.config, extra=extra, attempt=attempt)
        except ExecutionError:
            with self._lock:
                self._submitted.pop(run_id, None)
            raise

    def cancel(self, run: RunResult, by: str) -> None:
        """The job's driver sees the request in the store (within a second) and stops its steps; the job is also
        stopped, and whichever way the driver ends, a run its user cancelled ends "cancelled"."""
        request_cancel(self.store, run, by)
        jobs = self.cluster.current()
        if run.job_id is None or jobs is None:
            settle(self.store, self.store.get_run(run.id), "cancelled", f"cancelled by {by}", "start the run again")
            return
        try:
            jobs.stop(run.job_id)
        except ExecutionError as exc:  # the head does not answer: nothing runs the run any more
            log.warning("stopping job %s failed: %s", run.job_id, exc)

    def job(self, run: RunResult) -> JobInfo | None:
        if run.job_id is None:
            return None
        jobs = self.cluster.current()
        try:
            return jobs.info(run.job_id) if jobs is not None else None
        except ExecutionError:
            return JobInfo(run.job_id, "PENDING", "the Ray cluster does not answer")

    def logs(self, run: RunResult) -> str:
        jobs = self.cluster.current()
        if run.job_id is None or jobs is None:
            return event_log(self.store, run.id)
        try:
            return jobs.logs(run.job_id)
        except ExecutionError:
            return event_log(self.store, run.id)

    def close(self) -> None:
        """Stop tracking. A remote cluster's jobs keep running (the next API process tracks them); the local head
        stops with the API, and its runs end "interrupted"."""
        self._stop.set()
        if self.cluster.local:
            self.cluster.close()
            self._interrupt_submitted("the API stopped while the run was running")

    def _track(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.track_once()
            except Exception:
                log.exception("tracking Ray jobs failed; retrying")

    def track_once(self) -> None:
        """Settle every unfinished job run whose job has ended (or that Ray has lost, or whose local head died)."""
        reason = self.cluster.lost()
        if reason is not None:
            log.warning("%s: its runs are interrupted; the next run starts a new head", reason)
            self._interrupt_submitted(reason)
        jobs = self.cluster.current()
        if jobs is None:
            return
        for status in ("queued", "running"):
            for run in self.store.list_runs(status=status, limit=500):
                if run.job_id is not None:
                    self._reconcile(jobs, run)

    def _interrupt_submitted(self, reason: str) -> None:
        """Interrupt the runs sent to a head that is gone (not those on the head that replaced it)."""
        current = self.cluster.current()
        with self._lock:
            runs = sorted(r for r, address in self._submitted.items() if current is None or address != current.address)
            for run_id in runs:
                self._submitted.pop(run_id)
                self._unexplained.pop(run_id, None)
        done = self.store.mark_interrupted(runs, reason=reason) if runs else []
        for run_id in done:
            self._cancelled_instead(run_id)

    def _cancelled_instead(self, run_id: str) -> None:
        """A run its user had asked to stop ends "cancelled", whatever else stopped it first."""
        if self.store.cancel_requested(run_id):
            self.store.update_run(run_id, status="cancelled", error="the run was cancelled",
                                  hint="resume it (POST /v1/runs/{id}/resume) or start it again")

    def _reconcile(self, jobs: RayJobs, run: RunResult) -> None:
        info = jobs.info(run.job_id or "")
        if info is None:
            age = (datetime.now(UTC) - run.updated).total_seconds()
            if age > self._lost_after_s:
                settle(self.store, self.store.get_run(run.id), "failed", f"Ray has no job {run.job_id}",
                       "the cluster may have restarted; resume the run (POST /v1/runs/{id}/resume)")
            return
        if not info.finished:
            return
        fresh = self.store.get_run(run.id)  # read after the job ended: whatever it wrote is visible now
        if fresh.status in FINISHED:
            return
        if info.status == "STOPPED" or fresh.cancel_requested:
            settle(self.store, fresh, "cancelled", "the run was cancelled (its Ray job was stopped)",
                   "resume it (POST /v1/runs/{id}/resume) or start it again")
        elif self.cluster.local and self._head_may_be_dying(run.id):
            return  # a dying head fails its jobs before it exits: the next poll's `lost()` interrupts the run
        else:
            settle(self.store, fresh, "failed", f"the Ray job ended {info.status}: {info.message}"[:500],
                   f"read the job's logs: GET /v1/runs/{run.id}/logs")
        with self._lock:
            self._submitted.pop(run.id, None)
            self._unexplained.pop(run.id, None)

    def _head_may_be_dying(self, run_id: str) -> bool:
        """A job whose driver died without recording the run's end: on our own head, wait `head_grace_s` before
        calling it failed, since a head that lost its raylet reports its jobs FAILED a moment before it exits (and
        then the run is "interrupted", resumable, not "failed")."""
        now = time.monotonic()
        with self._lock:
            first = self._unexplained.setdefault(run_id, now)
        return now - first < self._head_grace_s
