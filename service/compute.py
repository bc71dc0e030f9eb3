"""A run's compute: settings (AGENTML_NUM_WORKERS, AGENTML_CPUS_PER_WORKER, AGENTML_USE_GPU, ...) and the run's own
choice (CLI `--workers/--cpus-per-worker/--gpu`, the API's `compute` object) become the `RuntimeSettings` skills see,
in one function, `runtime_settings`, held to the server's limits (AGENTML_MAX_WORKERS, AGENTML_MAX_CPUS_PER_WORKER).

The result travels with the run: the run store keeps it in the run's record, so the API's in-process runner and a
Ray job (which re-reads the record) run with what the request chose. Whether the cluster can add GPU nodes
(`gpu_autoscaling`) is the server's setting, recorded with the run the same way.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from governance import AgentmlError
from service.settings import Settings
from skills.context import GpuChoice, RuntimeSettings


class ComputeChoice(BaseModel):
    """What one run asks for: training workers, CPUs per worker, GPUs. Unset fields: the server's settings."""

    model_config = ConfigDict(extra="forbid")
    workers: int | None = Field(default=None, ge=1, description="Ray Train workers per training run or Tune trial "
                                "(at most the server's AGENTML_MAX_WORKERS)")
    cpus_per_worker: int | None = Field(default=None, ge=1, description="CPUs of each worker (at most "
                                        "AGENTML_MAX_CPUS_PER_WORKER)")
    gpu: Literal["auto", "true", "false"] | bool | None = Field(
        default=None, description="auto: GPUs when the cluster has them or can add GPU nodes; true: always; "
                                  "false: never")


class ComputeLimitError(AgentmlError):
    """A run asked for more compute than this server allows (bad input: 422, CLI exit 2)."""

    code: ClassVar[str] = "compute_invalid"

    def details(self) -> list[dict[str, Any]]:
        return [{"field": f"compute.{self.fields.get('field')}", "kind": "limit", "message": self.message,
                 "hint": self.hint or ""}]


def _gpu(value: str | bool) -> GpuChoice:
    if isinstance(value, bool):
        return value
    return "auto" if value == "auto" else value == "true"


def _within(name: str, value: int, limit: int, setting: str) -> int:
    if value > limit:
        raise ComputeLimitError(f"{name}={value} is over the limit of {limit} (AGENTML_{setting})", field=name,
                                hint=f"ask for at most {limit}; an operator may raise AGENTML_{setting}")
    return value


def runtime_settings(settings: Settings, choice: ComputeChoice | None = None, **update: Any) -> RuntimeSettings:
    """The one way settings (AGENTML_*) and a run's own choice (CLI options, the API's `compute`) become the
    `RuntimeSettings` skills see; `update` sets other fields (seed). Raises ComputeLimitError past the limits."""
    choice = choice or ComputeChoice()
    workers = _within("workers", choice.workers or settings.num_workers, settings.max_workers, "MAX_WORKERS")
    cpus = _within("cpus_per_worker", choice.cpus_per_worker or settings.cpus_per_worker,
                   settings.max_cpus_per_worker, "MAX_CPUS_PER_WORKER")
    gpu = settings.use_gpu if choice.gpu is None else _gpu(choice.gpu)
    return RuntimeSettings(num_workers=workers, cpus_per_worker=cpus, use_gpu=gpu,
                           gpu_autoscaling=settings.gpu_autoscaling, **update)
