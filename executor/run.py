"""run_plan: execute a validated Plan step by step in topological order, recording everything in a RunStore.

A failed step stops its descendants (skipped, naming the failed step) and keeps every finished step's output;
independent branches still run. `cancel` is checked between steps and at every progress report of a running step.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from executor.backends import Backend, LocalBackend, RayBackend
from executor.errors import ExecutionError
from executor.owner import current_owner
from executor.ray_support import check_cluster_storage, ensure_ray
from executor.resolve import check_plan, resolve_inputs
from executor.steps import StepJob, StepOutcome, failure
from executor.store import RunStore, utcnow
from skills.context import Progress, RuntimeSettings
from skills.errors import SkillError
from skills.plan import Plan, Step
from skills.registry import Registry, SkillSpec
from skills.runs import FINISHED_RUN, RunEvent, RunResult, RunStatus, StepStatus

if TYPE_CHECKING:
    from governance import Engine, Principal
    from skills.artifacts import ArtifactStore

log = logging.getLogger("agentml.executor")
BackendName = Literal["local", "ray"]
EventCallback = Callable[[RunEvent], None]


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """Progress data as plain JSON (numpy scalars and the like become numbers or strings)."""
    def fallback(value: Any) -> Any:
        return value.item() if hasattr(value, "item") else str(value)

    return json.loads(json.dumps(data, default=fallback))


class Recorder:
    """Writes a run's state changes and progress to the store and forwards each event to the caller's callback."""

    def __init__(self, store: RunStore, run_id: str, callback: EventCallback | None) -> None:
        self.store = store
        self.run_id = run_id
        self.callback = callback

    def event(self, kind: str, *, step: str | None = None, message: str = "",
              data: dict[str, Any] | None = None) -> None:
        ev = self.store.append_event(self.run_id, kind, step=step, message=message, data=_jsonable(data or {}))
        if self.callback is not None:
            try:
                self.callback(ev)
            except Exception:  # a broken progress display must not fail the run
                log.exception("on_progress callback failed for run %s", self.run_id)

    def step(self, step_id: str, status: StepStatus, message: str = "", **fields: Any) -> None:
        self.store.update_step(self.run_id, step_id, status, **fields)
        extra = {k: fields[k] for k in ("error", "hint") if fields.get(k)}
        if fields.get("started") and fields.get("finished"):
            extra["duration_s"] = round((fields["finished"] - fields["started"]).total_seconds(), 3)
        self.event("step", step=step_id, message=message or status, data={"status": status, **extra})

    def progress(self, progress: Progress) -> None:
        data = {**progress.data, "done": progress.done, "total": progress.total, "unit": progress.unit}
        self.event("progress", step=progress.step or None, message=progress.message, data=data)

    def finish(self, status: RunStatus, *, error: str | None = None, hint: str | None = None,
               result: dict[str, Any] | None = None) -> None:
        self.store.finish_run(self.run_id, status, error=error, hint=hint, result=result)
        self.event("run", message=error or status, data={"status": status})


@dataclass(frozen=True)
class RunEnv:
    """What every step of one run shares; `job()` adds the step's own part."""

    run_id: str
    principal: Principal
    engine: Engine
    artifacts: ArtifactStore
    settings: RuntimeSettings

    def job(self, step_id: str, spec: SkillSpec, inputs: BaseModel) -> StepJob:
        return StepJob(self.run_id, step_id, spec, inputs, self.principal, self.engine, self.artifacts,
                       self.settings)


class Execution:
    """One run of one plan: the loop over steps, their inputs, and what a failure or a cancel does to the rest."""

    def __init__(self, plan: Plan, specs: dict[str, SkillSpec], env: RunEnv, backend: Backend,
                 recorder: Recorder, cancel: threading.Event) -> None:
        self.plan = plan
        self.specs = specs
        self.env = env
        self.backend = backend
        self.recorder = recorder
        self.cancel = cancel
        self.outputs: dict[str, dict[str, Any]] = {}
        self.blocked: dict[str, str] = {}  # step -> the failed step that stops it
        self.statuses: dict[str, StepStatus] = {}

    def run(self, order: list[str], kept: dict[str, dict[str, Any]] | None = None) -> RunStatus:
        """Run the steps in `order`; `kept`: outputs of steps an earlier attempt finished (a resumed run), reused
        as they are."""
        for step_id in order:
            if kept is not None and step_id in kept:
                self.outputs[step_id] = kept[step_id]
                self.statuses[step_id] = "succeeded"
                self.recorder.event("step", step=step_id, message="kept from an earlier attempt",
                                    data={"status": "succeeded", "reused": True})
                continue
            self.statuses[step_id] = self._visit(self.plan.step(step_id))
        return self._run_status()

    def _visit(self, step: Step) -> StepStatus:
        if self.cancel.is_set():
            self.recorder.step(step.id, "cancelled", "the run was cancelled before this step started",
                               error="the run was cancelled before this step started")
            return "cancelled"
        if step.id in self.blocked:
            reason = f"skipped because step {self.blocked[step.id]!r} failed"
            self.recorder.step(step.id, "skipped", reason, error=reason)
            return "skipped"
        outcome = self._execute(step)
        if outcome.status == "failed" and self.cancel.is_set():
            outcome.status = "cancelled"  # a skill that turned our stop signal into its own error
        self.recorder.step(step.id, outcome.status, outcome.error or "", **outcome.store_fields())
        if outcome.status == "succeeded" and outcome.outputs is not None:
            self.outputs[step.id] = outcome.outputs
        else:
            for later in self.plan.descendants(step.id):
                self.blocked.setdefault(later, step.id)
        return outcome.status

    def _execute(self, step: Step) -> StepOutcome:
        spec = self.specs[step.id]
        started = utcnow()
        self.recorder.step(step.id, "running", f"running {spec.name}", started=started)
        try:
            inputs = resolve_inputs(step, spec, self.outputs)
        except ExecutionError as exc:
            return failure(exc, spec.name, started, run_id=self.env.run_id, step_id=step.id)
        return self.backend.run(self.env.job(step.id, spec, inputs), self.recorder.progress, self.cancel)

    def _run_status(self) -> RunStatus:
        seen = set(self.statuses.values())
        if "cancelled" in seen:
            return "cancelled"
        return "failed" if "failed" in seen else "succeeded"

    def summary(self) -> dict[str, Any]:
        failed = next((s for s, st in self.statuses.items() if st == "failed"), None)
        return {"failed_step": failed, "steps": dict(self.statuses)}


def _open_run(store: RunStore, plan: Plan, principal: Principal, backend: str, run_id: str | None,
              prompt: str, settings: RuntimeSettings | None) -> tuple[str, RuntimeSettings]:
    """A run id in state running: the caller's queued run (API, Ray job), or a new one; and the settings it runs
    with: `settings` when given, else those recorded with the queued run (the API's `compute`), else defaults. The
    record keeps what the run runs with."""
    if run_id is not None and store.has_run(run_id):
        record = store.get_run(run_id)
        if record.status in FINISHED_RUN:
            raise ExecutionError(f"run {run_id!r} already finished ({record.status})", hint="start a new run")
        chosen = settings or RuntimeSettings.model_validate(record.settings or {})
        store.update_run(run_id, status="running", backend=backend, owner=current_owner(),
                         settings=chosen.model_dump(mode="json"))
        return run_id, chosen
    chosen = settings or RuntimeSettings()
    return store.create_run(plan, principal, prompt=prompt, backend=backend, run_id=run_id, status="running",
                            settings=chosen.model_dump(mode="json")), chosen


def _backend(name: str, settings: RuntimeSettings, specs: dict[str, SkillSpec],
             ray_address: str | None, artifacts: ArtifactStore) -> tuple[Backend, RuntimeSettings]:
    """The backend, and the settings skills see: compute="ray" whenever this run needs (and so starts) Ray."""
    if name not in ("local", "ray"):
        raise ExecutionError(f"unknown backend {name!r}", field="backend", hint="use 'local' or 'ray'")
    needs_ray = name == "ray" or settings.compute == "ray" or any(s.uses_ray for s in specs.values())
    if not needs_ray:
        return LocalBackend(), settings
    # enough CPUs for the training workers plus the task that drives them
    ensure_ray(ray_address, num_cpus=max(2, settings.num_workers * settings.cpus_per_worker + 1))
    check_cluster_storage(artifacts)  # steps and training may run on any node: every node must read the artifacts
    _check_gpus(settings)
    ray_settings = settings.model_copy(update={"compute": "ray"})
    return (RayBackend() if name == "ray" else LocalBackend()), ray_settings


def _check_gpus(settings: RuntimeSettings) -> None:
    """use_gpu=true on a cluster that has no GPU and cannot add one: refused before any step reads data."""
    import ray

    if settings.use_gpu is True:
        try:
            settings.gpu_for(ray.cluster_resources())
        except SkillError as exc:
            raise ExecutionError(exc.message, field="use_gpu", hint=exc.hint) from None


def run_plan(plan: Plan, principal: Principal, *, engine: Engine, backend: BackendName = "local",
             artifacts: ArtifactStore, store: RunStore | None = None, settings: RuntimeSettings | None = None,
             on_progress: EventCallback | None = None, registry: Registry, run_id: str | None = None,
             cancel: threading.Event | None = None, prompt: str = "", ray_address: str | None = None) -> RunResult:
    """Run `plan` as `principal` and return the recorded run.

    Step failures do not raise: they are in the result (`status`, `failed_step`, each step's error and hint; call
    `raise_for_status()` to turn them into an ExecutionError). A plan that cannot run at all (unknown skill or step,
    cycle) raises ExecutionError before any step starts, after recording the run as failed. `store` defaults to an
    in-memory SQLite store; `run_id` may name a run created earlier (queued by the API) to run it. `settings`
    (workers, CPUs, GPUs) default to those recorded with that queued run, else to RuntimeSettings(); the run's
    record keeps them. use_gpu=true on a cluster that can never get a GPU fails the run before any step.
    """
    store = store or RunStore()
    cancel = cancel or threading.Event()
    run_id, settings = _open_run(store, plan, principal, backend, run_id, prompt, settings)
    recorder = Recorder(store, run_id, on_progress)
    try:
        order, specs = check_plan(plan, registry)
        runner, step_settings = _backend(backend, settings, specs, ray_address, artifacts)
    except ExecutionError as exc:
        recorder.finish("failed", error=exc.message, hint=exc.hint)
        raise
    kept = finished_outputs(store.get_run(run_id))
    recorder.event("run", message="running", data={"status": "running", "backend": backend, "order": order,
                                                   **({"reused": sorted(kept)} if kept else {})})
    env = RunEnv(run_id, principal, engine, artifacts, step_settings)
    _drive(Execution(plan, specs, env, runner, recorder, cancel), order, recorder, kept)
    return store.get_run(run_id)


def finished_outputs(run: RunResult) -> dict[str, dict[str, Any]]:
    """The outputs of the steps of `run` that succeeded (a resumed run reuses them instead of running them again)."""
    return {s.id: s.outputs for s in run.steps.values() if s.status == "succeeded" and s.outputs is not None}


class CancelWatcher(threading.Thread):
    """Turns a cancel requested through the store (by the API, maybe in another process) into the run's event."""

    def __init__(self, store: RunStore, run_id: str, cancel: threading.Event, interval_s: float = 0.5) -> None:
        super().__init__(name=f"cancel-watcher-{run_id}", daemon=True)
        self.store, self.run_id, self.cancel, self.interval_s = store, run_id, cancel, interval_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.cancel.is_set():
            if self.store.cancel_requested(self.run_id):
                self.cancel.set()
                return
            if self.stopped.wait(self.interval_s):
                return

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def _drive(execution: Execution, order: list[str], recorder: Recorder, kept: dict[str, dict[str, Any]]) -> None:
    """Run the steps and record how the run ended, also when the driver itself is interrupted."""
    watcher = CancelWatcher(recorder.store, recorder.run_id, execution.cancel)
    watcher.start()
    try:
        status = execution.run(order, kept)
    except BaseException as exc:  # Ctrl-C, SIGTERM or a store failure: the run must not stay "running" forever
        _stopped(execution, recorder, exc)
        raise
    finally:
        watcher.stop()
        close = getattr(execution.backend, "close", None)
        if close is not None:
            close()
    recorder.finish(status, result=execution.summary(), error=_run_error(execution, status))


def _stopped(execution: Execution, recorder: Recorder, exc: BaseException) -> None:
    """The driver itself was stopped: "cancelled" when someone asked for it (a Ray job's stop arrives as SIGTERM,
    which Ray's driver turns into SystemExit), else "interrupted"; finished steps are kept either way."""
    store, run_id = recorder.store, recorder.run_id
    asked = execution.cancel.is_set() or store.cancel_requested(run_id)
    store.mark_interrupted([run_id], reason=f"the driver stopped ({type(exc).__name__})")
    if asked:
        store.update_run(run_id, status="cancelled", error="the run was cancelled",
                         hint="resume it to finish it; its finished steps are kept")
        recorder.event("run", message="the run was cancelled", data={"status": "cancelled"})


def _run_error(execution: Execution, status: RunStatus) -> str | None:
    if status == "cancelled":
        return "the run was cancelled"
    failed = execution.summary()["failed_step"]
    return f"step {failed!r} failed" if failed else None


def run_stored(run_id: str, store: RunStore, *, engine: Engine, artifacts: ArtifactStore,
               backend: BackendName = "local", **options: Any) -> RunResult:
    """Run a run that was created (queued) in `store` earlier: its plan and principal come from the store.

    This is what a Ray job's entrypoint calls: the submitter creates the run, the job runs it and records progress.
    """
    from governance import Principal

    record = store.get_run(run_id)
    plan = Plan.model_validate(record.plan)
    principal = Principal.model_validate(record.principal or {"user": record.user})
    return run_plan(plan, principal, engine=engine, artifacts=artifacts, store=store, backend=backend,
                    run_id=run_id, prompt=record.prompt, **options)
