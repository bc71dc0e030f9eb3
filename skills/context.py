"""SkillContext: everything a skill may use, passed in (skills never read env vars and never call ray.init)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from skills.artifacts import ArtifactStore
from skills.errors import SkillError

if TYPE_CHECKING:
    import pyarrow as pa

    from governance import Engine, Principal


GpuChoice = bool | Literal["auto"]


class RuntimeSettings(BaseModel):
    """Knobs the executor sets for skills. `compute` says whether Ray is up (the executor started it).

    `num_workers`, `cpus_per_worker` and `use_gpu` are what a run asks for (settings, CLI, API request);
    `gpu_autoscaling` says whether the cluster can add GPU nodes on demand (a KubeRay GPU worker group that scales
    from zero: the Helm chart sets AGENTML_GPU_AUTOSCALING when it renders one)."""

    model_config = ConfigDict(extra="forbid")
    compute: Literal["local", "ray"] = "local"
    num_workers: int = Field(1, ge=1)
    cpus_per_worker: int = Field(1, ge=1)
    use_gpu: GpuChoice = "auto"
    gpu_autoscaling: bool = False
    seed: int = 0
    max_rows: int | None = None
    stream_rows: int = Field(500_000, ge=0, description="train/tune stream tables with more rows than this from the "
                             "artifact store in Ray Data batches instead of reading them into the driver")
    # A governed result above this many rows is read by Ray tasks in shards (at most `max_read_shards` of them, each
    # about this size), straight from the warehouse into Parquet parts; a smaller one is read in one piece.
    rows_per_shard: int = Field(default=250_000, ge=1)
    max_read_shards: int = Field(default=64, ge=1)

    def gpu_for(self, resources: Mapping[str, float]) -> bool:
        """Whether training uses GPUs on a cluster with `resources` (`ray.cluster_resources()`).

        false: never. auto: when the cluster has GPUs now or can add GPU nodes (`gpu_autoscaling`). true: always,
        asking the autoscaler for GPU nodes if there are none yet; refused (SkillError) when the cluster has no GPU
        and no autoscaler that could add one, since the request would wait forever."""
        has_gpu = float(resources.get("GPU", 0.0)) > 0
        if self.use_gpu is False:
            return False
        if self.use_gpu == "auto":
            return has_gpu or self.gpu_autoscaling
        if not (has_gpu or self.gpu_autoscaling):
            raise SkillError("GPUs were asked for (use_gpu=true), but this Ray cluster has no GPU and no autoscaler "
                             "that could add one", hint="set AGENTML_USE_GPU (or --gpu, or the run's compute.gpu) to "
                             "auto or false, or run on a cluster with GPU workers (the Helm chart's ray.gpuWorkers "
                             "sets AGENTML_GPU_AUTOSCALING=true)")
        return True


class Progress(BaseModel):
    """One progress event: `done` of `total` `unit` (rows read, rounds done, trials done)."""

    model_config = ConfigDict(extra="forbid")
    run_id: str = ""
    step: str = ""
    message: str = ""
    done: float | None = None
    total: float | None = None
    unit: str = ""
    data: dict[str, Any] = {}
    time: float = 0.0


ProgressSink = Callable[[Progress], None]


def _drop(_: Progress) -> None:
    return None


@dataclass
class SkillContext:
    """The principal, the governed engine, the artifact store, runtime settings and a progress sink."""

    principal: Principal
    engine: Engine
    artifacts: ArtifactStore
    settings: RuntimeSettings = field(default_factory=RuntimeSettings)
    run_id: str = "adhoc"
    step_id: str = "step"
    on_progress: ProgressSink = _drop
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("agentml.skills"))

    def sql(self, query: str) -> pa.Table:
        """Run `query` through governance as this context's principal. The only way a skill reads data."""
        return self.engine.query(query, self.principal)

    def progress(self, message: str = "", *, done: float | None = None, total: float | None = None,
                 unit: str = "", **data: Any) -> None:
        """Report progress (rows read, rounds done, trials done) to whoever runs the plan."""
        self.on_progress(Progress(run_id=self.run_id, step=self.step_id, message=message, done=done, total=total,
                                  unit=unit, data=data, time=time.time()))

    def key(self, name: str) -> str:
        """Artifact key for a file this step writes: `<run>/<step>/<name>`."""
        return f"{self.run_id}/{self.step_id}/{name}"

    def for_step(self, step_id: str) -> SkillContext:
        """A copy of this context for another step of the same run."""
        return SkillContext(self.principal, self.engine, self.artifacts, self.settings, self.run_id, step_id,
                            self.on_progress, self.logger)
