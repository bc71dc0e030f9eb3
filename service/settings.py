"""The one place agentml reads its configuration: environment variables prefixed `AGENTML_` (and a `.env` file).

The CLI and the API build one `Settings()` and pass the values down; skills never read the environment.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Process-wide defaults an entry point sets once, before litellm, xgboost or Ray load (a value already in the
# environment wins): litellm uses its bundled price map instead of downloading one; Ray leaves CUDA_VISIBLE_DEVICES
# alone on CPU-only workers; idle OpenMP threads sleep instead of spinning (xgboost with all cores on a busy machine
# was seen 15-60x slower with spinning threads; Ray workers inherit it); the MLflow client gives up on a server that
# does not answer after a few retries (its defaults retry for minutes, holding the end of a run).
PROCESS_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "OMP_WAIT_POLICY": "PASSIVE",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def configure_process() -> None:
    """Called once by each entry point (the `agentml` CLI, the Ray job entrypoint) as the process starts."""
    for name, value in PROCESS_ENV.items():
        os.environ.setdefault(name, value)


def _location(value: object) -> object:
    return str(value) if isinstance(value, os.PathLike) else value


# A warehouse is a path or a URL (postgresql://...): a Path is taken as its text.
WarehouseLocation = Annotated[str | None, BeforeValidator(_location)]


class Settings(BaseSettings):
    """Where the warehouse, policies, run store, Ray cluster, artifacts and LLM are.

    Every field can be set as `AGENTML_<FIELD>`; `ray_address` also honours Ray's own `RAY_ADDRESS`.
    """

    model_config = SettingsConfigDict(env_prefix="AGENTML_", env_file=".env", extra="ignore",
                                      populate_by_name=True)

    warehouse: WarehouseLocation = Field(
        default=None, description="DuckDB file, folder of Parquet/CSV files, or warehouse URL "
                                  "(postgresql://user:pw@host/db; snowflake://, bigquery://, databricks://)")
    policies: Path | None = Field(default=None, description="policies YAML; unset = local single-user mode")
    run_store_url: str = Field(default="sqlite:///agentml-runs.db", description="SQLAlchemy URL of the run store")
    ray_address: str | None = Field(
        default=None, validation_alias=AliasChoices("AGENTML_RAY_ADDRESS", "RAY_ADDRESS", "ray_address"),
        description="Ray cluster address; unset = start a local Ray",
    )
    artifacts: str = Field(
        default="agentml-artifacts",
        description="artifact store root, also where Ray Train/Tune keep checkpoints: s3://bucket/prefix (gs://, "
                    "hdfs://) on a cluster of several nodes; a local folder only on one node, unless artifacts_shared")
    artifacts_shared: bool = Field(
        default=False, description="the artifacts folder is a shared volume mounted at the same path on every Ray "
                                   "node (NFS, ReadWriteMany); without it a local folder is refused on a multi-node "
                                   "cluster")
    llm_model: str | None = Field(default=None, description="litellm model name; unset = rule-based planner only")
    llm_timeout_s: float = Field(default=60.0, gt=0,
                                 description="most seconds one LLM reply may take, retries included")
    llm_retries: int = Field(default=1, ge=0, description="retries of a failed LLM call (within llm_timeout_s)")
    llm_send_values: bool = Field(
        default=False, description="let the OODA prompt quote data values (category levels, bin edges) of columns "
                                   "that are not masked, denied or PII-like; off: names and error statistics only")
    tokens_file: Path | None = Field(default=None, description="API bearer tokens -> principals (YAML)")
    max_concurrent_runs: int = Field(default=2, ge=1, description="runs that execute at once: the local Ray head's "
                                     "run slots (more wait as pending jobs), or the in-process runner's threads")
    runner: Literal["jobs", "in-process"] = Field(
        default="jobs", description="jobs: every API run is a Ray job (on RAY_ADDRESS, or on a local Ray head the API "
                                    "starts); in-process: runs execute in API threads (tests and debugging only)")
    ray_auth_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("AGENTML_RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN", "ray_auth_token"),
        description="Ray token authentication: the API sends it to the job API (RAY_AUTH_MODE=token is implied)")
    max_active_runs_per_user: int = Field(default=4, ge=1,
                                          description="queued or running runs one user may have at once (else 429)")
    max_boosting_rounds_per_day: int = Field(
        default=200_000, ge=1, description="boosting rounds one user's runs may plan in 24 hours (else 429)")
    num_workers: int = Field(default=1, ge=1, description="Ray Train workers per training run or Tune trial")
    cpus_per_worker: int = Field(default=1, ge=1, description="CPUs of each training worker (xgboost threads)")
    use_gpu: bool | Literal["auto"] = Field(
        default="auto", description="auto: GPUs when the cluster has them or can add GPU nodes; true: always "
                                    "(refused on a cluster that can never get one); false: never")
    gpu_autoscaling: bool = Field(default=False, description="the cluster adds GPU nodes on demand (a KubeRay GPU "
                                  "group that scales from zero; the Helm chart sets it when it renders one)")
    max_workers: int = Field(default=8, ge=1, description="most workers a run may ask for (API `compute`, CLI; "
                             "service.compute.runtime_settings holds every run to it)")
    max_cpus_per_worker: int = Field(default=64, ge=1, description="most CPUs per worker a run may ask for")
    mlflow_uri: str | None = Field(default=None, description="MLflow tracking server (http://host:5000, or any "
                                   "tracking URI): each accepted model is exported there, with its run, trials, "
                                   "metrics, artifacts and a registered model version; unset = no export")
    mlflow_experiment: str | None = Field(default=None, description="MLflow experiment of the exported runs "
                                          "(default: the model's name, <table>-<target>)")
