"""SkillContext: everything a skill may use, passed in (skills never read env vars and never call ray.init)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from skills.artifacts import ArtifactStore

if TYPE_CHECKING:
    import pyarrow as pa

    from governance import Engine, Principal


class RuntimeSettings(BaseModel):
    """Knobs the executor sets for skills. `compute` says whether Ray is up (the executor started it)."""

    model_config = ConfigDict(extra="forbid")
    compute: Literal["local", "ray"] = "local"
    num_workers: int = 1
    cpus_per_worker: int = 1
    use_gpu: bool | Literal["auto"] = "auto"
    seed: int = 0
    max_rows: int | None = None
    stream_rows: int = Field(500_000, ge=0, description="train/tune stream tables with more rows than this from the "
                             "artifact store in Ray Data batches instead of reading them into the driver")


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
