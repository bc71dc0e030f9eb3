"""Ray Train: the boosting loop on `XGBoostTrainer` workers, resumed from checkpoints after a worker restart.

xgboost-ray is broken with xgboost 3.x, so `train_loop_per_worker` builds each worker's DMatrix from
`ray.train.get_dataset_shard(...)` (encoded with the model's categories) and runs `loop.boost` with a
`checkpoints.CheckpointReporter`; progress reaches the driver through `relay`.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import pyarrow as pa
import xgboost as xgb

from skills.artifacts import Storage
from skills.errors import SkillError
from skills.frame import build_frame
from skills.library.boosting.checkpoints import CheckpointReporter, restore, world_rank
from skills.library.boosting.compute import Compute
from skills.library.boosting.data import PARTS, VALID, TrainingData
from skills.library.boosting.loop import LIVE_EVERY_S, Event, FitResult, Monitor, Sink, boost, ignore_event
from skills.library.boosting.params import metric_key, primary_metric
from skills.library.boosting.relay import relayed_progress
from skills.types import Task

MAX_FAILURES = 3


@dataclass(frozen=True)
class BoostJob:
    """Everything a Ray Train worker needs (picklable): xgboost params, columns, rounds and reporting."""

    params: dict[str, Any]
    task: Task
    target: str
    features: list[str]
    categories: dict[str, list[str]]
    num_rounds: int
    patience: int
    every: int
    checkpoint: bool = True
    relay: Any = None  # actor handle that forwards progress to the driver, or None
    callbacks: tuple[xgb.callback.TrainingCallback, ...] = ()
    encoded: bool = False  # datasets hold encoded batches (`TrainingData.encoded`), else raw columns
    classes: tuple[str, ...] = ()  # the target's classes in label order (`TrainingData.classes`)

    def with_params(self, overrides: Mapping[str, Any]) -> BoostJob:
        """The same job with some xgboost params replaced (a Tune trial's config)."""
        return replace(self, params={**self.params, **overrides})


def shard_dmatrix(name: str, job: BoostJob) -> xgb.DMatrix:
    """This worker's shard of dataset `name` as a DMatrix, encoded with the job's categories."""
    import ray.train

    batches = list(ray.train.get_dataset_shard(name).iter_batches(batch_format="pyarrow", batch_size=None))
    if not batches:
        raise SkillError(f"a training worker received no {name} rows", hint="use fewer workers or more rows")
    table = pa.concat_tables(batches)
    return build_frame(table, job.features, job.target, job.task, job.categories, job.classes).dmatrix(
        nthread=int(job.params.get("nthread", 0)) or None)


def worker_dmatrices(job: BoostJob) -> tuple[xgb.DMatrix, xgb.DMatrix]:
    """This worker's (train, validation) shards: QuantileDMatrix from encoded batches (streamed tables) or DMatrix
    from raw columns (in-memory tables)."""
    import ray.train

    if not job.encoded:
        return shard_dmatrix("train", job), shard_dmatrix(VALID, job)
    from skills.library.boosting.stream import Encoding, encoded_dmatrices

    batches = {part: ray.train.get_dataset_shard(part).iter_batches(batch_format="numpy", batch_size=None)
               for part in PARTS}
    encoding = Encoding(tuple(job.features), job.target, job.task, job.categories, job.classes)
    return encoded_dmatrices(batches, encoding, job.params)


def _relay_sink(relay: Any) -> Sink:
    """Rank 0 pushes its events to the relay actor; other ranks (the same events) stay quiet."""
    def push(event: Event) -> None:
        relay.push.remote(event)

    return push if relay is not None and world_rank() == 0 else ignore_event


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: shard -> DMatrix, resume from `ray.train.get_checkpoint()` for the remaining rounds."""
    import ray.train

    job: BoostJob = config["job"]
    dtrain, dvalid = worker_dmatrices(job)
    booster, state = restore(ray.train.get_checkpoint())
    restarts = [*state.get("restarts", []), *([booster.num_boosted_rounds()] if booster is not None else [])]
    sink = _relay_sink(job.relay)
    monitor = Monitor(primary_metric(job.task, job.classes), job.num_rounds, patience=job.patience, every=job.every,
                      sink=sink, history=state.get("history"), seconds=float(state.get("seconds") or 0.0),
                      every_s=LIVE_EVERY_S)  # progress only: checkpoints keep their own every-N cadence
    if booster is not None:
        sink(replace(monitor.event(), restarted_from=booster.num_boosted_rounds()))
    reporter = CheckpointReporter(monitor, metric_key(job.task, job.classes), job.every, checkpoint=job.checkpoint,
                                  restarts=restarts)
    boost(job.params, dtrain, dvalid, monitor, callbacks=[reporter, *job.callbacks], init=booster)


def make_trainer(job: BoostJob, datasets: Mapping[str, Any], compute: Compute, storage: Storage, *,
                 callbacks: Sequence[Any] = ()) -> Any:
    """An XGBoostTrainer (V2) running `train_loop_per_worker`, checkpoints and run state in `storage`."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig
    from ray.train.xgboost import XGBoostTrainer

    # One worker reads whole datasets: no split coordinator actor to start (saves ~1.5 s per run).
    split: list[str] | Literal["all"] = "all" if compute.num_workers > 1 else []
    run = RunConfig(name=f"train-{uuid.uuid4().hex[:12]}", **storage.run_config(),
                    failure_config=FailureConfig(max_failures=MAX_FAILURES),
                    checkpoint_config=CheckpointConfig(num_to_keep=2), callbacks=list(callbacks))
    return XGBoostTrainer(train_loop_per_worker, train_loop_config={"job": job}, datasets=dict(datasets),
                          dataset_config=DataConfig(datasets_to_split=split),
                          scaling_config=compute.scaling_config(), run_config=run)


def _training_failed(exc: Exception) -> SkillError:
    detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return SkillError(f"distributed training failed (worker restarts allowed: {MAX_FAILURES}): {detail}",
                      hint="check that the cluster has the CPUs/GPUs asked for (num_workers x cpus_per_worker), "
                           "or run the plan with the local backend")


def fit_ray(prep: TrainingData, job: BoostJob, compute: Compute, storage: Storage,
            sink: Sink = ignore_event) -> FitResult:
    """Train with Ray Train's XGBoostTrainer; workers checkpoint every `job.every` rounds into `storage` and a
    restarted worker group resumes from the last checkpoint. Progress events reach `sink` through a relay actor."""
    with relayed_progress(sink) as relay:
        trainer = make_trainer(replace(job, relay=relay), prep.datasets(), compute, storage)
        try:
            result = trainer.fit()
        except Exception as exc:  # Ray raises TrainingFailedError and friends; the user gets one clear error
            raise _training_failed(exc) from exc
    booster, state = restore(result.checkpoint)
    if booster is None:
        raise SkillError("distributed training finished without a checkpoint", hint="retry the step")
    monitor = Monitor(primary_metric(prep.task, prep.classes), job.num_rounds, patience=job.patience,
                      history=state["history"])
    return FitResult(booster, monitor.history, monitor.metric, monitor.should_stop(), list(state.get("restarts", [])),
                     seconds=float(state.get("seconds") or 0.0))
