"""What the API shares between requests: settings, tokens, run store, registry, governed engine, artifacts, runner.

One `Services` per app, built by `create_app` and stored on `app.state`. The engine loads the warehouse in a
background thread so that `/healthz` answers at once; `/readyz` says when everything is ready.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from executor import ExecutionError, JobConfig, RayJobs, RunStore, open_engine
from governance import GovernanceError, load_policies
from service.api.auth import TokenTable
from service.api.clusters import Cluster, LocalCluster, RemoteCluster
from service.api.errors import ApiError
from service.api.runner import LocalRunner, RayJobRunner, Runner
from service.compute import runtime_settings
from service.mlflow_export import MlflowTarget
from service.ray_head import LocalRayHead
from service.settings import Settings
from skills.artifacts import ArtifactStore
from skills.registry import Registry, load_registry

if TYPE_CHECKING:
    from governance import AuditLog, Engine

log = logging.getLogger("agentml.api")
ENGINE_WAIT_S = 60.0


def audit_path(settings: Settings) -> Path | None:
    """The audit log file: next to the artifacts when they are local (jobs on the same file system append to it)."""
    if "://" in settings.artifacts and not settings.artifacts.startswith("file://"):
        return None
    root = Path(settings.artifacts.removeprefix("file://"))
    return (root / "audit.jsonl").resolve()


def job_config(settings: Settings, store_url: str) -> JobConfig:
    """Where a Ray job finds the run's store, data, policies, artifacts and audit log (absolute paths)."""
    def absolute(path: str | Path | None) -> str | None:
        return str(Path(path).resolve()) if path is not None and "://" not in str(path) else \
            (str(path) if path is not None else None)

    artifacts = settings.artifacts if "://" in settings.artifacts else str(Path(settings.artifacts).resolve())
    return JobConfig(store_url=store_url, warehouse=absolute(settings.warehouse), artifacts=artifacts,
                     artifacts_shared=settings.artifacts_shared,
                     policies=absolute(settings.policies), audit=absolute(audit_path(settings)),
                     module="service.jobs",  # the run, then the OODA loop when a request asks for iterations
                     env=mlflow_env(settings))


def mlflow_env(settings: Settings) -> dict[str, str]:
    """The MLflow export settings a job needs in its environment (it reads them with `Settings()`)."""
    named = {"AGENTML_MLFLOW_URI": settings.mlflow_uri, "AGENTML_MLFLOW_EXPERIMENT": settings.mlflow_experiment}
    return {k: v for k, v in named.items() if v}


def policy_roles(path: Path | None) -> list[str]:
    """Every role a policy file names (none without one, or when it cannot be read: readyz reports that)."""
    if path is None:
        return []
    try:
        policies = load_policies(path)
    except GovernanceError:
        return []
    return sorted({*(policies.roles or []), *(r for t in policies.tables.values() for r in t.allow)})


def is_job_address(address: str | None) -> bool:
    """A dashboard address (http://host:8265) means: submit every run as a Ray job."""
    return bool(address) and address.startswith(("http://", "https://"))  # type: ignore[union-attr]


def cluster_for(settings: Settings) -> Cluster | None:
    """Where runs go: the cluster RAY_ADDRESS names (its dashboard address), else the API's own local Ray head;
    None for the in-process runner."""
    address = settings.ray_address
    if settings.runner == "in-process":
        return None
    if not address:
        return LocalCluster(LocalRayHead(run_slots=settings.max_concurrent_runs))
    if not is_job_address(address):
        raise ExecutionError(f"RAY_ADDRESS={address} is not a dashboard address: the API submits every run as a Ray "
                             "job, through the job API", field="ray_address",
                             hint="set RAY_ADDRESS to the head's dashboard address (http://head:8265), or unset it "
                                  "for a local Ray head; AGENTML_RUNNER=in-process runs in the API (debugging)")
    token = settings.ray_auth_token.get_secret_value() if settings.ray_auth_token is not None else None
    # Ray 2.60 sends the token only with RAY_AUTH_MODE=token set as well: send it ourselves
    return RemoteCluster(RayJobs(address, headers={"Authorization": f"Bearer {token}"} if token else None))


class Services:
    """The API's long-lived parts. `engine` waits for the warehouse to load (503 when it cannot)."""

    def __init__(self, settings: Settings, *, registry: Registry | None = None) -> None:
        runtime_settings(settings)  # the server's own compute defaults within its limits, or no start
        self.settings = settings
        self.tokens = TokenTable.load(settings.tokens_file, local_roles=policy_roles(settings.policies))
        self.store = RunStore(settings.run_store_url)
        self.registry = registry if registry is not None else load_registry()
        self.artifacts = ArtifactStore(settings.artifacts, shared=settings.artifacts_shared)
        self.audit_path = audit_path(settings)
        self._engine: Engine | None = None
        self._engine_error: ApiError | None = None
        self._loaded = threading.Event()
        self.cluster = cluster_for(settings)
        self.runner: Runner = self._runner()

    def _runner(self) -> Runner:
        if self.cluster is not None:
            return RayJobRunner(self.store, self.cluster, job_config(self.settings, self.store.url))
        return LocalRunner(self.store, self.get_engine, self.artifacts, self.registry,
                           max_concurrent=self.settings.max_concurrent_runs, ray_address=self.settings.ray_address,
                           mlflow=MlflowTarget.from_settings(self.settings))

    # ---- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the warehouse in the background and recover runs a previous process left behind."""
        threading.Thread(target=self._load_engine, name="agentml-engine", daemon=True).start()
        self.runner.start()

    def close(self) -> None:
        """Stop the runner (in-process runs end "interrupted") and release the store."""
        self.runner.close()
        self.store.close()

    def _load_engine(self) -> None:
        roles = sorted(self.tokens.roles) or ["local"]
        try:
            self._engine = open_engine(self.settings.warehouse, self.settings.policies, roles=roles,
                                       audit=self.audit_path)
        except Exception as exc:  # any reason: readyz and every data route say it, the log keeps the traceback
            log.exception("could not open the warehouse")
            self._engine_error = ApiError(503, "not_ready", f"the warehouse could not be opened: "
                                          f"{getattr(exc, 'message', None) or type(exc).__name__}",
                                          hint=getattr(exc, "hint", None) or "check AGENTML_WAREHOUSE and "
                                                                             "AGENTML_POLICIES, then restart")
        finally:
            self._loaded.set()

    # ---- access -------------------------------------------------------------------------------------------------
    def get_engine(self, wait_s: float = ENGINE_WAIT_S) -> Engine:
        """The governed engine, once loaded. Raises ApiError 503 while loading too long or when loading failed."""
        if not self._loaded.wait(wait_s):
            raise ApiError(503, "not_ready", "the warehouse is still loading", hint="retry in a few seconds")
        if self._engine is None:
            raise self._engine_error or ApiError(503, "not_ready", "no warehouse")
        return self._engine

    @property
    def audit(self) -> AuditLog | None:
        """The engine's audit log (None until the engine loaded)."""
        return self._engine.audit if self._engine is not None else None

    def readiness(self) -> dict[str, str]:
        """Check -> "ok" or why not: warehouse, run store, Ray cluster (job mode)."""
        checks = {"warehouse": self._warehouse_check(), "run_store": self._store_check()}
        if self.cluster is not None and not self.cluster.local:
            checks["ray"] = self._ray_check()
        return checks

    def _warehouse_check(self) -> str:
        if not self._loaded.is_set():
            return "loading"
        return "ok" if self._engine is not None else (self._engine_error.message if self._engine_error else "error")

    def _store_check(self) -> str:
        try:
            self.store.has_run("readyz")
        except Exception as exc:  # noqa: BLE001
            return f"unreachable: {type(exc).__name__}"
        return "ok"

    def _ray_check(self) -> str:
        assert self.cluster is not None
        try:
            self.cluster.jobs().ping()
        except Exception as exc:  # noqa: BLE001
            return getattr(exc, "message", type(exc).__name__)
        return "ok"
