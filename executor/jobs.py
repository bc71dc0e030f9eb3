"""Runs as Ray jobs: the job's entrypoint (`main`, which a composition root such as `python -m service.jobs run
--run-id ID` wraps with its skill registry) and a small client to submit,
watch, read and stop them through `ray.job_submission.JobSubmissionClient` (a dashboard address, `http://host:8265`).

The submitter records the run in the run store first (plan, principal, status "queued"); the job loads it from the
same store, runs it, and writes status, steps and events back there. So the store stays the one truth about a run and
the submitter may die and come back at any time: the job keeps running and keeps writing.

Where the data, policies and artifacts are travels on the entrypoint's command line (no secrets there); the run store
URL, which may hold a password, travels in the job's environment (`AGENTML_RUN_STORE_URL`), and so does a warehouse URL
with a password (`AGENTML_WAREHOUSE`).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from executor.errors import ExecutionError
from executor.run import run_stored
from executor.store import RunStore
from governance import Engine, Policies, load_policies
from governance.warehouses import has_secret
from skills.artifacts import ArtifactStore
from skills.registry import Registry
from skills.runs import RunResult

log = logging.getLogger("agentml.jobs")

STORE_URL_ENV = "AGENTML_RUN_STORE_URL"
WAREHOUSE_ENV = "AGENTML_WAREHOUSE"  # a warehouse URL with a password travels here, never on a command line
JOB_PREFIX = "agentml-"
JobState = Literal["PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED"]
FINISHED_JOB = frozenset({"STOPPED", "SUCCEEDED", "FAILED"})
LOCAL_ROLE = "local"


def open_engine(warehouse: str | Path | None, policies: str | Path | None, *, roles: Sequence[str] = (LOCAL_ROLE,),
                audit: str | Path | None = None, threads: int = 2) -> Engine:
    """The governed engine over `warehouse`, with the policies in `policies`.

    Without a policy file this is local single-user mode: every table is visible to `roles` (the API passes every role
    it knows, a job passes its principal's). The API and the Ray job both build their engine here, so a run sees the
    same tables and rights wherever it runs.
    """
    if warehouse is None:
        raise ExecutionError("no warehouse is configured", field="warehouse",
                             hint="set AGENTML_WAREHOUSE to a DuckDB file, a folder of Parquet/CSV files or a "
                                  "postgresql:// URL")
    if policies is not None:
        return Engine.from_warehouse(warehouse, load_policies(policies), audit=audit, threads=threads)
    engine = Engine.from_warehouse(warehouse, Policies.allow_all([], roles), audit=audit, threads=threads)
    # the table names are known only once the warehouse is read: grant them now (Engine.policies is public)
    engine.policies = Policies.allow_all(engine.tables, roles=sorted({*roles, LOCAL_ROLE}))
    return engine


@dataclass(frozen=True)
class JobConfig:
    """Everything a job needs besides its run id: where the store, data, policies, artifacts and audit log are."""

    store_url: str
    warehouse: str | None
    artifacts: str
    module: str  # the entrypoint module: one built on `main` with the skill registry (service.jobs)
    policies: str | None = None
    audit: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    artifacts_shared: bool = False  # the artifacts folder is mounted at the same path on every node
    python: str = "python"  # the interpreter on the cluster; a local head gets the submitter's own (sys.executable)
    resources: dict[str, float] = field(default_factory=dict)  # the job's entrypoint_resources (a run slot)

    def entrypoint(self, run_id: str, extra: Sequence[str] = ()) -> str:
        """The shell command Ray runs for `run_id`, with `extra` arguments for the entrypoint module (paths are
        quoted; the store URL is not on it)."""
        import shlex

        parts = [self.python, "-m", self.module, "run", "--run-id", run_id, "--artifacts", self.artifacts]
        warehouse = None if self._secret_warehouse else self.warehouse
        for flag, value in (("--warehouse", warehouse), ("--policies", self.policies), ("--audit", self.audit)):
            if value is not None:
                parts += [flag, value]
        parts += ["--artifacts-shared"] if self.artifacts_shared else []
        return " ".join(shlex.quote(p) for p in [*parts, *extra])

    @property
    def _secret_warehouse(self) -> bool:
        return self.warehouse is not None and has_secret(self.warehouse)

    def runtime_env(self) -> dict[str, Any]:
        """The job's runtime_env: the store URL (and a warehouse URL with a password) and the extra variables, in its
        environment."""
        secrets = {WAREHOUSE_ENV: self.warehouse} if self._secret_warehouse and self.warehouse else {}
        return {"env_vars": {STORE_URL_ENV: self.store_url, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **secrets,
                             **self.env}}


@dataclass(frozen=True)
class JobInfo:
    """What Ray says about a job: its state and, once it ended, why."""

    job_id: str
    status: JobState
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_JOB


def job_id_for(run_id: str, attempt: int = 0) -> str:
    """The submission id of the job running `run_id` (stable, so a retried submit cannot start a second job);
    `attempt` > 0: the job of the attempt-th resume of the run."""
    return f"{JOB_PREFIX}{run_id}" + (f"-r{attempt}" if attempt else "")


class RayJobs:
    """A thin wrapper of JobSubmissionClient that speaks in run ids and raises ExecutionError with hints."""

    def __init__(self, address: str, *, headers: dict[str, str] | None = None) -> None:
        self.address = address.rstrip("/")
        self._headers = headers
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        """The JobSubmissionClient, connected on first use (its constructor calls the cluster)."""
        with self._lock:
            if self._client is None:
                from ray.job_submission import JobSubmissionClient

                try:
                    self._client = JobSubmissionClient(self.address, headers=self._headers)
                except Exception as exc:  # noqa: BLE001 - connection refused, version mismatch...
                    raise ExecutionError(f"cannot reach the Ray cluster at {self.address}: {type(exc).__name__}",
                                         hint="check RAY_ADDRESS (the dashboard address, http://host:8265) and "
                                              "that the Ray head is up") from None
            return self._client

    def submit(self, run_id: str, config: JobConfig, *, extra: Sequence[str] = (), retry_s: float = 60.0,
               attempt: int = 0) -> str:
        """Submit the job that runs `run_id` (`extra`: arguments for the entrypoint; `attempt`: which resume of it);
        returns its submission id. A head that is still starting ("no available agent") is retried for up to
        `retry_s` seconds; the fixed submission id makes a retry safe."""
        job_id = job_id_for(run_id, attempt)
        deadline, delay, tries = time.monotonic() + retry_s, 0.5, 0
        while True:
            tries += 1
            try:
                self.client().submit_job(entrypoint=config.entrypoint(run_id, extra), submission_id=job_id,
                                         runtime_env=config.runtime_env(), metadata={"agentml_run": run_id},
                                         entrypoint_resources=config.resources or None)
                return job_id
            except ExecutionError:
                raise
            except Exception as exc:  # noqa: BLE001 - the client raises RuntimeError/ConnectionError and friends
                reason = _reason(exc)
                if tries > 1 and "already exists" in reason:
                    return job_id  # an earlier try got through after all
                if not _transient(exc, reason) or time.monotonic() + delay > deadline:
                    raise ExecutionError(f"Ray refused the job of run {run_id}: {reason}",
                                         hint="look at the Ray dashboard's job page and the head's logs") from None
            log.info("the Ray head is not ready to take job %s yet; retrying in %.1f s", job_id, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def info(self, job_id: str) -> JobInfo | None:
        """The job's state, or None when Ray does not know this job."""
        try:
            details = self.client().get_job_info(job_id)
        except ExecutionError:
            raise
        except Exception as exc:  # noqa: BLE001 - RuntimeError for an unknown job (HTTP 404); connection errors
            if isinstance(exc, RuntimeError) and ("does not exist" in str(exc) or "404" in str(exc)):
                return None
            raise ExecutionError(f"cannot read job {job_id}: {_reason(exc)}", hint="is the Ray head healthy?") from None
        status: JobState = details.status.value  # Ray's JobStatus values are exactly JobState's
        return JobInfo(job_id, status, details.message or "")

    def logs(self, job_id: str) -> str:
        """The job driver's stdout and stderr."""
        try:
            return str(self.client().get_job_logs(job_id))
        except ExecutionError:
            raise
        except Exception as exc:  # noqa: BLE001 - an unknown job (RuntimeError), a head that does not answer
            raise ExecutionError(f"no logs for job {job_id}: {_reason(exc)}",
                                 hint="Ray keeps logs only while the job's record exists") from None

    def stop(self, job_id: str) -> bool:
        """Ask Ray to stop the job (SIGTERM, then SIGKILL); False when it had already ended."""
        try:
            return bool(self.client().stop_job(job_id))
        except ExecutionError:
            raise
        except Exception as exc:  # noqa: BLE001 - an unknown job (RuntimeError), a head that does not answer
            raise ExecutionError(f"cannot stop job {job_id}: {_reason(exc)}", hint="is the Ray head healthy?") from None

    def ping(self) -> None:
        """Raise ExecutionError unless the cluster answers."""
        try:
            self.client().list_jobs()
        except ExecutionError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ExecutionError(f"the Ray cluster at {self.address} does not answer: {_reason(exc)}",
                                 hint="check that the Ray head and its dashboard are up") from None


def _transient(exc: BaseException, reason: str) -> bool:
    """Errors of a head that is starting or briefly overloaded, worth retrying."""
    return isinstance(exc, ConnectionError) or "try again later" in reason or "No available agent" in reason


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:300]


# ------------------------------------------------------------------------------------------------ the entrypoint


def job_parser(prog: str = "python -m service.jobs", description: str | None = None) \
        -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The entrypoint's argument parser and its `run` command's parser (for entrypoints that add arguments)."""
    parser = argparse.ArgumentParser(prog=prog, description=description or __doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a run recorded in the run store (the Ray job's entrypoint)")
    run.add_argument("--run-id", required=True)
    run.add_argument("--warehouse", help=f"DuckDB file, folder of Parquet/CSV files or warehouse URL (default: "
                                         f"${WAREHOUSE_ENV}, where a URL with a password travels)")
    run.add_argument("--artifacts", required=True, help="artifact store root (folder or URI)")
    run.add_argument("--artifacts-shared", action="store_true",
                     help="the artifacts folder is mounted at the same path on every Ray node")
    run.add_argument("--policies", default=None, help="policies YAML; omitted = local single-user mode")
    run.add_argument("--audit", default=None, help="audit log file (JSON lines)")
    run.add_argument("--store-url", default=None, help=f"run store URL; default ${STORE_URL_ENV}")
    return parser, run


def _stop_on_sigterm(cancel: threading.Event) -> None:
    """`ray job stop` sends SIGTERM first: turn it into a cancel, so the run ends "cancelled" at its next progress
    report instead of dying mid-write."""
    def handler(_signum: int, _frame: FrameType | None) -> None:
        cancel.set()

    signal.signal(signal.SIGTERM, handler)


# After a run succeeded: (the run, its governed engine, its artifact store), e.g. the planner's OODA loop.
AfterRun = Callable[[RunResult, Engine, ArtifactStore], None]


def run_job(run_id: str, store: RunStore, *, registry: Registry, warehouse: str | None, artifacts: str,
            policies: str | None = None, audit: str | None = None, cancel: threading.Event | None = None,
            after: AfterRun | None = None, artifacts_shared: bool = False) -> RunResult:
    """Run the stored run `run_id` in this process, as its recorded principal, writing everything to `store`;
    then `after` when it succeeded and nobody cancelled it."""
    record = store.get_run(run_id)
    roles = list(record.principal.get("roles") or [LOCAL_ROLE])
    try:
        engine = open_engine(warehouse, policies, roles=roles, audit=audit)
    except Exception as exc:  # the run must not stay "queued" when its data cannot be opened
        message = getattr(exc, "message", None) or type(exc).__name__
        store.finish_run(run_id, "failed", error=f"the job could not open the warehouse: {message}",
                         hint=getattr(exc, "hint", None) or "check the warehouse and policy paths on the cluster")
        raise
    artifact_store = ArtifactStore(artifacts, shared=artifacts_shared)
    result = run_stored(run_id, store, engine=engine, artifacts=artifact_store, registry=registry, cancel=cancel)
    if after is not None and result.status == "succeeded" and not (cancel and cancel.is_set()):
        after(result, engine, artifact_store)
    return result


def main(argv: Sequence[str] | None = None, *, registry: Registry, parser: argparse.ArgumentParser | None = None,
         after: Callable[[argparse.Namespace, RunStore], AfterRun | None] | None = None) -> int:
    """Entrypoint: 0 when the run succeeded, 1 when it failed or was cancelled, 2 for bad arguments. The caller (the
    composition root) passes the skill `registry`; `parser` and `after` (from the parsed arguments and the store,
    what to do after a succeeded run) let it add arguments and work after the run."""
    import os

    args = (parser or job_parser()[0]).parse_args(argv)
    url = args.store_url or os.environ.get(STORE_URL_ENV)
    if not url:
        print(f"error: no run store: set {STORE_URL_ENV} or pass --store-url", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cancel = threading.Event()
    _stop_on_sigterm(cancel)
    store = RunStore(url)
    try:
        result = run_job(args.run_id, store, registry=registry, warehouse=args.warehouse or os.environ.get(
                             WAREHOUSE_ENV), artifacts=args.artifacts, artifacts_shared=args.artifacts_shared,
                         policies=args.policies, audit=args.audit, cancel=cancel,
                         after=after(args, store) if after is not None else None)
    except ExecutionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"run {result.id} {result.status}")
    return 0 if result.status == "succeeded" else 1

