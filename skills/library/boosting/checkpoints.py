"""Checkpoints of a boosting run on Ray Train: booster + monitor state, reported every N rounds, never every round.

Each synchronous `ray.train.report` waits for the Train controller's poll (~2 s), which made per-round reporting ~90x
slower than plain xgboost. `CheckpointReporter` reports asynchronously every `frequency` rounds, spaced in time, and
at the end; Ray flushes pending uploads when the training function returns. `restore` reads a checkpoint back.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xgboost as xgb
from ray.train.xgboost import RayTrainReportCallback

from skills.library.boosting.loop import Monitor

if TYPE_CHECKING:
    from ray.train import Checkpoint

MODEL_FILE = "model.ubj"
STATE_FILE = "state.json"


def world_rank() -> int:
    """This Ray Train worker's rank (0 on the only or first worker)."""
    import ray.train

    return ray.train.get_context().get_world_rank() or 0


def restore(checkpoint: Checkpoint | None) -> tuple[xgb.Booster | None, dict[str, Any]]:
    """Booster and monitor state from a checkpoint written by `CheckpointReporter` (None, {} without one)."""
    if checkpoint is None:
        return None, {}
    with checkpoint.as_directory() as path:
        booster = xgb.Booster()
        booster.load_model(str(Path(path, MODEL_FILE)))
        state = json.loads(Path(path, STATE_FILE).read_text())
    return booster, state


def _any_rank(flag: bool) -> bool:
    """True when any training worker says so: every rank must make the same `ray.train.report` calls."""
    if xgb.collective.get_world_size() <= 1:
        return flag
    return bool(xgb.collective.allreduce(np.array([float(flag)]), xgb.collective.Op.MAX)[0])


class CheckpointReporter(RayTrainReportCallback):
    """RayTrainReportCallback that reports metrics and a checkpoint (booster + monitor state) every `frequency`
    rounds, at most once per `min_interval_s`, and at the end; never every round. Uploads are asynchronous, but
    Ray's controller takes one report per poll (~2 s): faster reports would pile up and be flushed at the end, so
    reports are also spaced in time. Every rank reports (V2 reports are collective); only rank 0 checkpoints."""

    def __init__(self, monitor: Monitor, key: str, frequency: int, *, checkpoint: bool = True,
                 restarts: Sequence[int] = (), min_interval_s: float = 2.5) -> None:
        super().__init__(frequency=frequency, checkpoint_at_end=True)
        self._monitor, self._key, self._with_checkpoint = monitor, key, checkpoint
        self._restarts, self._min_interval_s = list(restarts), min_interval_s
        self._reported, self._last_time = -1, -math.inf  # the first report goes out at once

    def _checkpoint_dir(self, model: xgb.Booster) -> str:
        path = tempfile.mkdtemp(prefix="agentml-ckpt-")
        model.save_model(os.path.join(path, MODEL_FILE))
        state = {"history": self._monitor.history, "restarts": self._restarts, "seconds": self._monitor.seconds}
        Path(path, STATE_FILE).write_text(json.dumps(state))
        return path

    def _report(self, model: xgb.Booster) -> None:
        import ray.train
        from ray.train import Checkpoint
        from ray.train.v2.api.report_config import CheckpointUploadMode

        self._reported, self._last_time = model.num_boosted_rounds(), time.monotonic()
        metrics = self._monitor.event().metrics(self._key)
        if not (self._with_checkpoint and world_rank() == 0):
            ray.train.report(metrics, checkpoint_upload_mode=CheckpointUploadMode.ASYNC)
            return
        checkpoint = Checkpoint.from_directory(self._checkpoint_dir(model))
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_upload_mode=CheckpointUploadMode.ASYNC,
                         delete_local_checkpoint_after_upload=True)

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: Mapping[str, Any]) -> bool:
        if model.num_boosted_rounds() % self._frequency == 0 and \
                _any_rank(time.monotonic() - self._last_time >= self._min_interval_s):
            self._report(model)
        return False

    def after_training(self, model: xgb.Booster) -> xgb.Booster:
        if model.num_boosted_rounds() != self._reported:
            self._report(model)
        return model
