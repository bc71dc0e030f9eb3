"""Shared XGBoost + Ray helpers for `train_xgboost`, `tune` and `evaluate`: one place for every convention.

- Parameters per task (`model_params`, `xgb_params`): what is stored with a model never holds compute choices
  (device, threads), so a model trained on GPUs scores and cross-validates on a laptop.
- Splits (`prepare`, `holdout_split`, `fold_ids`): deterministic given the seed, stratified for classification. The
  split convention is written into the saved booster (`SPLIT_ATTR`) so `evaluate` finds the same validation rows.
- The compute decision (`scaling_for`): ONE pure function from cluster resources + settings to workers, CPUs, GPU use,
  the xgboost `device`, Ray Train's ScalingConfig and Tune's trial resources and concurrency.
- Metrics and curves (`score`, `roc_points`, `pr_points`), without scikit-learn.
- The boosting loop: `Monitor` (validation history, early stopping that survives a restart, progress every N rounds)
  and, on Ray, `train_loop_per_worker` with `CheckpointReporter`, a `RayTrainReportCallback` that reports and
  checkpoints every N rounds, never every round: each synchronous `ray.train.report` waits for the Train controller's
  poll (~2 s), which made per-round reporting ~90x slower than plain xgboost. Reports are asynchronous; Ray flushes
  pending uploads when the training function returns.

This module imports xgboost and Ray Train (seconds); the skill modules import it inside their functions so that
loading the skill registry stays fast.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import xgboost as xgb
from ray.train.xgboost import RayTrainReportCallback
from scipy.stats import rankdata

from skills.context import RuntimeSettings
from skills.errors import SkillError
from skills.frame import (
    Frame,
    build_frame,
    default_features,
    encode_target,
    infer_categories,
    infer_task,
)
from skills.types import Task

if TYPE_CHECKING:
    from ray.train import Checkpoint, ScalingConfig

# ---------------------------------------------------------------------------------------------------------------------
# Task conventions and parameters
# ---------------------------------------------------------------------------------------------------------------------

PRIMARY_METRIC: dict[str, str] = {"classification": "auc", "regression": "rmse"}
# xgboost's eval metrics on the validation set, primary last (xgboost's own convention for early stopping).
EVAL_METRICS: dict[str, list[str]] = {"classification": ["logloss", "auc"], "regression": ["mae", "rmse"]}
OBJECTIVE: dict[str, str] = {"classification": "binary:logistic", "regression": "reg:squarederror"}
MAXIMIZE = frozenset({"auc", "accuracy", "f1", "r2"})
# Chosen per run from the hardware, never stored with a model.
COMPUTE_KEYS = frozenset({"device", "nthread", "n_jobs", "eval_metric", "gpu_id", "tree_method_device"})
DEFAULTS: dict[str, float | int | str] = {"tree_method": "hist", "eta": 0.1, "max_depth": 6, "min_child_weight": 1.0}
SPLIT_ATTR = "agentml_split"
VALID = "valid"
MAX_FAILURES = 3


def primary_metric(task: Task) -> str:
    """The metric that early stopping, Tune and the OODA loop optimise: AUC or RMSE."""
    return PRIMARY_METRIC[task]


def mode_of(metric: str) -> Literal["max", "min"]:
    """"max" for metrics where higher is better."""
    return "max" if metric in MAXIMIZE else "min"


def metric_key(task: Task) -> str:
    """The name reported to Ray Train/Tune: best validation value of the primary metric so far."""
    return f"valid_{primary_metric(task)}"


def model_params(task: Task, seed: int, overrides: Mapping[str, Any] | None = None) -> dict[str, float | int | str]:
    """Parameters stored with a model: task objective, defaults, the seed, then `overrides` (compute keys dropped)."""
    params: dict[str, float | int | str] = {"objective": OBJECTIVE[task], **DEFAULTS, "seed": seed}
    for key, value in (overrides or {}).items():
        if key in COMPUTE_KEYS:
            continue
        if not isinstance(value, int | float | str):
            raise SkillError(f"xgboost parameter {key!r} must be a number or a string",
                             hint='write constraints as xgboost strings, e.g. "(1,-1)"')
        params[key] = int(value) if isinstance(value, bool) else value
    return params


def xgb_params(params: Mapping[str, Any], task: Task, compute: Compute) -> dict[str, Any]:
    """What xgboost.train gets: stored parameters + eval metrics + this run's device and threads."""
    return {**params, "eval_metric": EVAL_METRICS[task], **compute.xgb_params()}


# ---------------------------------------------------------------------------------------------------------------------
# Compute: the one decision about workers, CPUs and GPUs
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compute:
    """How a training run or a Tune trial uses the cluster."""

    num_workers: int = 1
    cpus_per_worker: int = 1
    use_gpu: bool = False
    max_concurrent_trials: int = 1

    def xgb_params(self) -> dict[str, Any]:
        """xgboost's device and thread count: CUDA hist on GPU workers."""
        return {"device": "cuda" if self.use_gpu else "cpu", "nthread": self.cpus_per_worker}

    def worker_resources(self) -> dict[str, float]:
        """Ray resources of one training worker."""
        resources: dict[str, float] = {"CPU": float(self.cpus_per_worker)}
        if self.use_gpu:
            resources["GPU"] = 1.0
        return resources

    def scaling_config(self) -> ScalingConfig:
        """Ray Train's ScalingConfig for these workers."""
        from ray.train import ScalingConfig

        return ScalingConfig(num_workers=self.num_workers, use_gpu=self.use_gpu,
                             resources_per_worker=self.worker_resources())

    def trial_resources(self) -> dict[str, float]:
        """Resources of one Tune trial. A multi-worker trial only drives an XGBoostTrainer whose workers hold the
        CPUs/GPUs, so the trial itself asks for no CPU (else it would block its own workers on small clusters);
        Tune refuses an empty resource bundle, hence one byte of memory."""
        if self.num_workers > 1:
            return {"cpu": 0.0, "memory": 1.0}
        return {key.lower(): value for key, value in self.worker_resources().items()}


def _wants_gpu(resources: Mapping[str, float], use_gpu: bool | str) -> bool:
    if use_gpu == "auto":
        return float(resources.get("GPU", 0.0)) > 0
    return bool(use_gpu)


def scaling_for(resources: Mapping[str, float], settings: RuntimeSettings, num_workers: int | None = None) -> Compute:
    """Workers, CPUs, GPU use and trial concurrency from cluster resources (`ray.cluster_resources()`) and settings.

    GPUs are used when `settings.use_gpu` is True, or "auto" and the cluster reports any. Concurrent Tune trials:
    what fits in the CPUs (and GPUs) after keeping one CPU for the driver, Tune's controller and Ray Data, at least 1
    (so 1 on a 2-CPU machine, where Train-in-Tune trials were seen to contend)."""
    workers = max(1, num_workers or settings.num_workers)
    cpus = max(1, settings.cpus_per_worker)
    gpu = _wants_gpu(resources, settings.use_gpu)
    by_cpu = int(max(float(resources.get("CPU", 0.0)) - 1.0, 0.0) // (workers * cpus))
    concurrent = min(by_cpu, int(float(resources.get("GPU", 0.0)) // workers)) if gpu else by_cpu
    return Compute(num_workers=workers, cpus_per_worker=cpus, use_gpu=gpu, max_concurrent_trials=max(1, concurrent))


def cluster_compute(settings: RuntimeSettings, num_workers: int | None = None) -> Compute:
    """`scaling_for` the running Ray cluster (no resources known when Ray is not up)."""
    import ray

    resources = ray.cluster_resources() if ray.is_initialized() else {}
    return scaling_for(resources, settings, num_workers)


# ---------------------------------------------------------------------------------------------------------------------
# Data: features, task, deterministic splits
# ---------------------------------------------------------------------------------------------------------------------


def _strata(y: np.ndarray, task: Task) -> list[np.ndarray]:
    """Row indices per class (classification) or all rows in one group (regression)."""
    if task == "classification":
        return [np.flatnonzero(y == level) for level in np.unique(y)]
    return [np.arange(len(y))]


def holdout_split(y: np.ndarray, task: Task, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows), sorted; stratified for classification; a pure function of its arguments."""
    rng = np.random.default_rng(seed)
    valid = [rng.permutation(rows)[: round(valid_fraction * len(rows))] for rows in _strata(y, task)]
    mask = np.zeros(len(y), dtype=bool)
    mask[np.concatenate(valid)] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def fold_ids(y: np.ndarray, task: Task, folds: int, seed: int) -> np.ndarray:
    """Fold number (0..folds-1) of each row: shuffled with `seed`, stratified for classification."""
    smallest = min(len(rows) for rows in _strata(y, task))
    if folds < 2 or smallest < folds:
        raise SkillError(f"{folds}-fold cross-validation needs at least {folds} rows of each class, got {smallest}",
                         hint="use fewer folds or more rows")
    rng = np.random.default_rng(seed)
    out = np.empty(len(y), dtype=np.int64)
    offset = 0
    for rows in _strata(y, task):
        out[rng.permutation(rows)] = (np.arange(len(rows)) + offset) % folds
        offset += len(rows)  # continue the round robin so small classes do not all start in fold 0
    return out


def _check_target(table: pa.Table, target: str) -> None:
    if target not in table.column_names:
        raise SkillError(f"target column {target!r} is not in the table",
                         hint=f"pick one of: {', '.join(table.column_names)}")


def subset(frame: Frame, rows: np.ndarray) -> Frame:
    """The rows `rows` (indices or mask) of a design matrix."""
    return replace(frame, X=frame.X[rows], y=None if frame.y is None else frame.y[rows])


def resolve_features(table: pa.Table, target: str, features: Sequence[str] | None,
                     exclude: Sequence[str] = ()) -> list[str]:
    """The given features minus excluded ones, or every usable column (see `skills.frame.default_features`)."""
    if features:
        missing = [f for f in features if f not in table.column_names]
        if missing:
            raise SkillError(f"feature columns not in the table: {', '.join(missing)}",
                             hint=f"pick from: {', '.join(table.column_names)}")
    chosen = list(dict.fromkeys(f for f in features if f not in exclude and f != target)) if features else \
        default_features(table, target, exclude)
    if not chosen:
        raise SkillError("no usable feature columns", hint="name numeric or categorical columns in `features`")
    return chosen


@dataclass
class Prepared:
    """A training table cut down to features + target, with its task, categories and validation split."""

    table: pa.Table
    task: Task
    target: str
    features: list[str]
    categories: dict[str, list[str]]
    train_rows: np.ndarray
    valid_rows: np.ndarray
    valid_fraction: float
    seed: int

    def part(self, which: str) -> pa.Table:
        """The raw rows of the training ("train") or validation ("valid") split."""
        return self.table.take(self.train_rows if which == "train" else self.valid_rows)

    def frame(self, which: str) -> Frame:
        """The design matrix of one split, encoded with this model's categories."""
        return build_frame(self.part(which), self.features, self.target, self.task, self.categories)

    def split_info(self) -> dict[str, float | int]:
        """The split convention, stored in the booster so evaluation finds the same validation rows."""
        return {"valid_fraction": self.valid_fraction, "seed": self.seed, "rows": self.table.num_rows}


def prepare(table: pa.Table, target: str, task: Task | None, features: Sequence[str] | None,
            exclude: Sequence[str], valid_fraction: float, seed: int) -> Prepared:
    """Check the target, pick features, infer the task, fix categories and split train/validation."""
    _check_target(table, target)
    chosen = resolve_features(table, target, features, exclude)
    task = task or infer_task(table, target)
    table = table.select([*chosen, target])
    y = encode_target(table.column(target), task)
    train, valid = holdout_split(y, task, valid_fraction, seed)
    _check_split(y, task, train, valid)
    categories = infer_categories(table, chosen)
    return Prepared(table, task, target, chosen, categories, train, valid, valid_fraction, seed)


def _check_split(y: np.ndarray, task: Task, train: np.ndarray, valid: np.ndarray) -> None:
    if len(train) == 0 or len(valid) == 0:
        raise SkillError(f"{len(y)} rows are too few for a train/validation split",
                         hint="use more rows or a valid_fraction between 0.1 and 0.5")
    if task == "classification" and (len(np.unique(y[train])) < 2 or len(np.unique(y[valid])) < 2):
        raise SkillError("the target has a single class in the training or validation rows",
                         hint="pick a target with both outcomes present, or use more rows")


def validation_rows(table: pa.Table, model_target: str, task: Task, booster: xgb.Booster) -> np.ndarray:
    """Rows of `table` that were the model's validation split; every row when `table` is not the training table
    (a different row count means new data, all of it unseen)."""
    info = json.loads(booster.attr(SPLIT_ATTR) or "{}")
    if not info or int(info["rows"]) != table.num_rows:
        return np.arange(table.num_rows)
    y = encode_target(table.column(model_target), task)
    return holdout_split(y, task, float(info["valid_fraction"]), int(info["seed"]))[1]


def load_booster(artifacts: Any, uri: str) -> xgb.Booster:
    """The booster saved at `uri` in the artifact store, set up to predict on this machine's CPU."""
    booster = xgb.Booster()
    booster.load_model(bytearray(artifacts.get_bytes(uri)))
    booster.set_param({"device": "cpu"})
    return booster


# ---------------------------------------------------------------------------------------------------------------------
# Metrics and curves
# ---------------------------------------------------------------------------------------------------------------------


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged)."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _classification_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    q = np.clip(p, 1e-15, 1 - 1e-15)
    label = p >= 0.5
    tp = float(np.sum(label & (y == 1)))
    precision_recall = float(label.sum() + (y == 1).sum())
    return {
        "auc": auc(y, p),
        "logloss": float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))),
        "accuracy": float(np.mean(label == (y == 1))),
        "f1": 2 * tp / precision_recall if precision_recall else 0.0,
    }


def _regression_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    err = p - y
    sst = float(np.sum((y - y.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": 1.0 - float(np.sum(err**2)) / sst if sst > 0 else 0.0,
    }


def score(task: Task, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Classification: auc, logloss, accuracy, f1 (threshold 0.5). Regression: rmse, mae, r2."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    return _classification_scores(y, pred) if task == "classification" else _regression_scores(y, pred)


def _thin(n: int, max_points: int) -> np.ndarray:
    """At most `max_points` evenly spaced indices of 0..n-1, first and last always kept."""
    return np.unique(np.linspace(0, n - 1, num=min(n, max_points)).round().astype(np.int64))


def _ranked_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives at each distinct threshold, highest score first."""
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order] == 1, p[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ps)), len(ps) - 1]
    tps = np.cumsum(ys)[last_of_tie].astype(np.float64)
    return tps, (last_of_tie + 1 - tps).astype(np.float64), ps[last_of_tie]


def roc_points(y: np.ndarray, p: np.ndarray, max_points: int = 101) -> dict[str, list[float]]:
    """ROC curve points {fpr, tpr, threshold}, from (0, 0) to (1, 1)."""
    tps, fps, thresholds = _ranked_counts(np.asarray(y), np.asarray(p))
    fpr = np.r_[0.0, fps / max(fps[-1], 1.0)]
    tpr = np.r_[0.0, tps / max(tps[-1], 1.0)]
    keep = _thin(len(fpr), max_points)
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(),
            "threshold": np.r_[np.inf, thresholds][keep].clip(max=1.0).tolist()}


def pr_points(y: np.ndarray, p: np.ndarray, max_points: int = 101) -> dict[str, list[float]]:
    """Precision-recall curve points {recall, precision}, recall rising from 0 to 1."""
    tps, fps, _ = _ranked_counts(np.asarray(y), np.asarray(p))
    precision = np.r_[1.0, tps / (tps + fps)]
    recall = np.r_[0.0, tps / max(tps[-1], 1.0)]
    keep = _thin(len(recall), max_points)
    return {"recall": recall[keep].tolist(), "precision": precision[keep].tolist()}


# ---------------------------------------------------------------------------------------------------------------------
# The boosting loop: history, early stopping, reports every N rounds
# ---------------------------------------------------------------------------------------------------------------------


def report_every(num_rounds: int, reports: int = 10) -> int:
    """Rounds between reports: about `reports` per run, never every round on long runs."""
    return max(1, math.ceil(num_rounds / reports))


def best_iteration(history: Mapping[str, Sequence[float]], metric: str) -> int:
    """Index of the best round of `metric` in `history` (first one on ties); -1 when empty."""
    values = np.asarray(history.get(metric, []), dtype=np.float64)
    if values.size == 0:
        return -1
    return int(np.argmax(values) if mode_of(metric) == "max" else np.argmin(values))


@dataclass
class Event:
    """Progress of one boosting run, as reported every N rounds and at the end."""

    rounds: int
    total: int
    best: float
    last: float
    best_iteration: int
    final: bool = False
    restarted_from: int | None = None

    def metrics(self, key: str) -> dict[str, float | int]:
        """The dict reported to Ray Train / Tune: rounds as time attribute, best-so-far metric under `key`."""
        return {"rounds": self.rounds, key: self.best, "last": self.last, "best_iteration": self.best_iteration}


Sink = Callable[[Event], None]


def _ignore(_: Event) -> None:
    return None


class Monitor(xgb.callback.TrainingCallback):
    """Validation history of every eval metric, early stopping on the primary metric and a report every N rounds.

    Early stopping lives here rather than in xgboost's `early_stopping_rounds` so that its state is the history,
    which a checkpoint carries: a worker restarted from a checkpoint stops exactly where an uninterrupted run would."""

    def __init__(self, metric: str, total: int, *, patience: int = 0, every: int = 10, sink: Sink = _ignore,
                 history: Mapping[str, list[float]] | None = None) -> None:
        self.metric, self.total, self.patience, self.every, self.sink = metric, total, patience, every, sink
        self.history: dict[str, list[float]] = {k: list(v) for k, v in (history or {}).items()}
        self.stopped_early = False

    @property
    def rounds(self) -> int:
        """Rounds recorded so far (before a restart too)."""
        return len(self.history.get(self.metric, []))

    def event(self, final: bool = False) -> Event:
        """The current state as an Event."""
        values = self.history.get(self.metric, [])
        best = best_iteration(self.history, self.metric)
        return Event(rounds=self.rounds, total=self.total, best=values[best] if values else float("nan"),
                     last=values[-1] if values else float("nan"), best_iteration=best, final=final)

    def should_stop(self) -> bool:
        """True once the best round is `patience` rounds behind."""
        return self.patience > 0 and self.rounds - 1 - best_iteration(self.history, self.metric) >= self.patience

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: Mapping[str, Any]) -> bool:
        for name, values in evals_log.get(VALID, {}).items():
            self.history.setdefault(name, []).append(float(values[-1]))
        self.stopped_early = self.should_stop()
        final = self.stopped_early or self.rounds >= self.total
        if final or self.rounds % self.every == 0:
            self.sink(self.event(final=final))
        return self.stopped_early


@dataclass
class FitResult:
    """A trained booster (all rounds run) with its validation history and where restarts resumed."""

    booster: xgb.Booster
    history: dict[str, list[float]]
    metric: str
    stopped_early: bool = False
    restarts: list[int] = field(default_factory=list)

    @property
    def best_iteration(self) -> int:
        """Index of the best validation round."""
        return best_iteration(self.history, self.metric)

    def best_booster(self) -> xgb.Booster:
        """The booster cut after its best round, so every later use scores with the best model."""
        return self.booster[: self.best_iteration + 1]


def _train(params: Mapping[str, Any], dtrain: xgb.DMatrix, num_rounds: int, **kwargs: Any) -> xgb.Booster:
    try:
        return xgb.train(dict(params), dtrain, num_boost_round=num_rounds, verbose_eval=False, **kwargs)
    except xgb.core.XGBoostError as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise SkillError(f"xgboost refused the training run: {first}",
                         hint="check the params (names and ranges) against the xgboost documentation") from None


def boost(params: Mapping[str, Any], dtrain: xgb.DMatrix, dvalid: xgb.DMatrix, monitor: Monitor, *,
          callbacks: Sequence[xgb.callback.TrainingCallback] = (), init: xgb.Booster | None = None) -> xgb.Booster:
    """xgboost.train for the rounds the monitor still has to run (all, or the rest after a restart)."""
    done = init.num_boosted_rounds() if init is not None else 0
    return _train(params, dtrain, max(monitor.total - done, 0), evals=[(dvalid, VALID)], xgb_model=init,
                  callbacks=[monitor, *callbacks])


def boost_plain(params: Mapping[str, Any], dtrain: xgb.DMatrix, num_rounds: int) -> xgb.Booster:
    """xgboost.train for exactly `num_rounds`, no evaluation (cross-validation folds)."""
    return _train(params, dtrain, num_rounds)


def fit_local(prep: Prepared, params: Mapping[str, Any], num_rounds: int, *, patience: int, every: int,
              sink: Sink = _ignore, callbacks: Sequence[xgb.callback.TrainingCallback] = ()) -> FitResult:
    """Train in this process with plain xgboost.train (same params, split and metrics as on Ray)."""
    metric = primary_metric(prep.task)
    nthread = int(params.get("nthread", 0)) or None
    dtrain, dvalid = (prep.frame(part).dmatrix(nthread=nthread) for part in ("train", VALID))
    monitor = Monitor(metric, num_rounds, patience=patience, every=every, sink=sink)
    booster = boost(params, dtrain, dvalid, monitor, callbacks=callbacks)
    return FitResult(booster, monitor.history, metric, monitor.stopped_early)


# ---------------------------------------------------------------------------------------------------------------------
# Ray Train: the worker loop, checkpoints, progress back to the driver
# ---------------------------------------------------------------------------------------------------------------------

MODEL_FILE = "model.ubj"
STATE_FILE = "state.json"


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

    def with_params(self, overrides: Mapping[str, Any]) -> BoostJob:
        """The same job with some xgboost params replaced (a Tune trial's config)."""
        return replace(self, params={**self.params, **overrides})


def _world_rank() -> int:
    import ray.train

    return ray.train.get_context().get_world_rank() or 0


def shard_dmatrix(name: str, job: BoostJob) -> xgb.DMatrix:
    """This worker's shard of dataset `name` as a DMatrix, encoded with the job's categories."""
    import ray.train

    batches = list(ray.train.get_dataset_shard(name).iter_batches(batch_format="pyarrow", batch_size=None))
    if not batches:
        raise SkillError(f"a training worker received no {name} rows", hint="use fewer workers or more rows")
    table = pa.concat_tables(batches)
    return build_frame(table, job.features, job.target, job.task, job.categories).dmatrix(
        nthread=int(job.params.get("nthread", 0)) or None)


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
        state = {"history": self._monitor.history, "restarts": self._restarts}
        Path(path, STATE_FILE).write_text(json.dumps(state))
        return path

    def _report(self, model: xgb.Booster) -> None:
        import ray.train
        from ray.train import Checkpoint
        from ray.train.v2.api.report_config import CheckpointUploadMode

        self._reported, self._last_time = model.num_boosted_rounds(), time.monotonic()
        metrics = self._monitor.event().metrics(self._key)
        if not (self._with_checkpoint and _world_rank() == 0):
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


def _relay_sink(relay: Any) -> Sink:
    def push(event: Event) -> None:
        relay.push.remote(event)

    return push if relay is not None and _world_rank() == 0 else _ignore


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: shard -> DMatrix, resume from `ray.train.get_checkpoint()` for the remaining rounds."""
    import ray.train

    job: BoostJob = config["job"]
    dtrain, dvalid = shard_dmatrix("train", job), shard_dmatrix(VALID, job)
    booster, state = restore(ray.train.get_checkpoint())
    restarts = [*state.get("restarts", []), *([booster.num_boosted_rounds()] if booster is not None else [])]
    sink = _relay_sink(job.relay)
    monitor = Monitor(primary_metric(job.task), job.num_rounds, patience=job.patience, every=job.every, sink=sink,
                      history=state.get("history"))
    if booster is not None:
        sink(replace(monitor.event(), restarted_from=booster.num_boosted_rounds()))
    reporter = CheckpointReporter(monitor, metric_key(job.task), job.every, checkpoint=job.checkpoint,
                                  restarts=restarts)
    boost(job.params, dtrain, dvalid, monitor, callbacks=[reporter, *job.callbacks], init=booster)


def _relay_actor_class() -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class ProgressRelay:
        """Collects worker progress events until the driver drains them."""

        def __init__(self) -> None:
            self.events: list[Event] = []

        def push(self, event: Event) -> None:
            self.events.append(event)

        def drain(self) -> list[Event]:
            out, self.events = self.events, []
            return out

    return ProgressRelay


@contextmanager
def relayed_progress(sink: Sink, poll_s: float = 0.5) -> Iterator[Any]:
    """An actor that workers push Events to, pumped into `sink` by a driver thread while the block runs."""
    import ray

    relay = _relay_actor_class().remote()
    stop = threading.Event()

    def pump() -> None:
        while not stop.wait(poll_s):
            for event in ray.get(relay.drain.remote()):
                sink(event)

    thread = threading.Thread(target=pump, name="agentml-progress", daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        stop.set()
        thread.join()
        for event in ray.get(relay.drain.remote()):
            sink(event)
        ray.kill(relay)


def ray_datasets(prep: Prepared) -> dict[str, Any]:
    """The train and validation rows as Ray Datasets (raw columns; workers encode them with the model's
    categories through `build_frame`, so every shard encodes identically)."""
    import ray.data

    return {"train": ray.data.from_arrow(prep.part("train")), VALID: ray.data.from_arrow(prep.part(VALID))}


def make_trainer(job: BoostJob, datasets: Mapping[str, Any], compute: Compute, storage_path: str, *,
                 callbacks: Sequence[Any] = ()) -> Any:
    """An XGBoostTrainer (V2) running `train_loop_per_worker`, checkpoints under `storage_path`."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig
    from ray.train.xgboost import XGBoostTrainer

    # One worker reads whole datasets: no split coordinator actor to start (saves ~1.5 s per run).
    split: list[str] | Literal["all"] = "all" if compute.num_workers > 1 else []
    run = RunConfig(name=f"train-{uuid.uuid4().hex[:12]}", storage_path=storage_path,
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


def fit_ray(prep: Prepared, job: BoostJob, compute: Compute, storage_path: str, sink: Sink = _ignore) -> FitResult:
    """Train with Ray Train's XGBoostTrainer; workers checkpoint every `job.every` rounds into `storage_path` and a
    restarted worker group resumes from the last checkpoint. Progress events reach `sink` through a relay actor."""
    with relayed_progress(sink) as relay:
        trainer = make_trainer(replace(job, relay=relay), ray_datasets(prep), compute, storage_path)
        try:
            result = trainer.fit()
        except Exception as exc:  # Ray raises TrainingFailedError and friends; the user gets one clear error
            raise _training_failed(exc) from exc
    booster, state = restore(result.checkpoint)
    if booster is None:
        raise SkillError("distributed training finished without a checkpoint", hint="retry the step")
    monitor = Monitor(primary_metric(prep.task), job.num_rounds, patience=job.patience, history=state["history"])
    return FitResult(booster, monitor.history, monitor.metric, monitor.should_stop(), list(state.get("restarts", [])))
