"""train_xgboost: a gradient-boosted model (classification or regression) on a table another step wrote.

With `ctx.settings.compute == "ray"` (the executor started Ray) training runs on Ray Train's XGBoostTrainer: workers
read their dataset shards, checkpoint every N rounds into the artifact store and a restarted worker group resumes from
the last checkpoint (FailureConfig). GPUs follow `settings.use_gpu` and the cluster (see
`boosting.compute.scaling_for`): xgboost then trains with `device=cuda`. With `compute == "local"` the same
parameters, split, early stopping and metrics run through plain xgboost.train.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from skills.context import SkillContext
from skills.library.boosting.compute import Compute, cluster_compute
from skills.library.boosting.data import TrainingData, prepare
from skills.library.boosting.params import model_params, patience_for, xgb_params
from skills.registry import skill
from skills.types import ModelArtifact, TableArtifact, Task

if TYPE_CHECKING:
    import xgboost as xgb

    from skills.library.boosting.loop import Event, FitResult


class LearningData(BaseModel):
    """What to learn (target, task) from which table and columns: shared by train_xgboost and tune."""

    model_config = ConfigDict(extra="forbid")
    table: TableArtifact
    target: str
    task: Task | None = Field(None, description="inferred from the target when omitted")
    features: list[str] | None = Field(None, description="default: every usable column but the target")
    exclude: list[str] = Field(default_factory=list, description="columns never used as features (keys, times)")
    positive: str | None = Field(
        None, description="classification: the target level that counts as positive (the question's outcome, e.g. "
                          "'bad'); on a target with more levels, that level against all others. Default: "
                          "yes/true/1/churn..., else the last level; 3+ levels without it: multiclass")


class TrainInput(LearningData):
    """What to learn (target, task), from which columns, for how many rounds."""

    params: dict[str, Any] = Field(default_factory=dict, description="xgboost parameters over the defaults")
    num_rounds: int = Field(200, ge=1, le=100_000)
    early_stopping_rounds: int = Field(20, ge=0, description="0 disables early stopping")
    valid_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    num_workers: int | None = Field(None, ge=1, description="Ray Train workers (default: settings.num_workers)")


class TrainOutput(BaseModel):
    """The saved model and its validation metrics."""

    model_config = ConfigDict(extra="forbid")
    model: ModelArtifact
    metrics: dict[str, float]


def load_prepared(ctx: SkillContext, table: TableArtifact, target: str, task: Task | None,
                  features: Sequence[str] | None, exclude: Sequence[str], valid_fraction: float,
                  positive: str | None = None) -> TrainingData:
    """Fix features, task, categories and the validation split of the table artifact: streamed from the artifact
    store when it has more than `settings.stream_rows` rows (see `boosting.stream`), else read into memory."""
    from skills.library.boosting.stream import prepare_stream, streams

    if streams(ctx.artifacts, table.uri, ctx.settings.stream_rows):
        prep = prepare_stream(ctx.artifacts, table, target, task, list(features or []), list(exclude),
                              valid_fraction, ctx.settings.seed, positive)
        ctx.progress(f"counted {prep.rows} rows", done=prep.rows, total=prep.rows, unit="rows")
        return prep
    data = ctx.artifacts.get_table(table.uri)
    ctx.progress(f"read {data.num_rows} rows", done=data.num_rows, total=data.num_rows, unit="rows")
    return prepare(data, target, task, features, exclude, valid_fraction, ctx.settings.seed, positive)


def compute_for(ctx: SkillContext, num_workers: int | None) -> Compute:
    """The cluster's compute decision on Ray; in process (no cluster to look at), one worker, on a GPU only when
    the settings say use_gpu=true."""
    if ctx.settings.compute == "ray":
        return cluster_compute(ctx.settings, num_workers)
    return Compute(cpus_per_worker=ctx.settings.cpus_per_worker, use_gpu=ctx.settings.use_gpu is True)


def progress_sink(ctx: SkillContext) -> Any:
    """Boosting events -> ctx.progress (rounds done)."""

    def sink(event: Event) -> None:
        if event.restarted_from is not None:
            ctx.logger.warning("training worker restarted; resuming from round %d", event.restarted_from)
            ctx.progress(f"resumed from the checkpoint at round {event.restarted_from}", done=event.rounds,
                         total=event.total, unit="rounds", restarted_from=event.restarted_from)
            return
        ctx.progress(f"round {event.rounds}/{event.total}", done=event.rounds, total=event.total, unit="rounds",
                     best=event.best, best_iteration=event.best_iteration, metric=event.metric,
                     points=[[r, v] for r, v in event.points])  # the validation curve since the last report

    return sink


def fit_model(ctx: SkillContext, prep: TrainingData, params: dict[str, Any], num_rounds: int,
              early_stopping_rounds: int, num_workers: int | None = None,
              callbacks: Sequence[xgb.callback.TrainingCallback] = ()) -> ModelArtifact:
    """Train (on Ray Train or in process, per ctx.settings.compute), keep the best round and save the model.
    Early stopping waits `early_stopping_rounds` at the default learning rate, more below it (`patience_for`).
    `callbacks` are extra xgboost callbacks that run on every training worker (tests use one to kill a worker)."""
    from skills.library.boosting.loop import fit_local, report_every

    compute = compute_for(ctx, num_workers)
    compute = compute.streaming() if prep.encoded else compute
    stored = model_params(prep.task, prep.seed, params, prep.classes)
    full = xgb_params(stored, prep.task, compute)
    every = report_every(num_rounds)
    early_stopping_rounds = patience_for(early_stopping_rounds, stored)
    if ctx.settings.compute == "ray":
        from skills.library.boosting.ray_train import BoostJob, fit_ray

        job = BoostJob(full, prep.task, prep.target, prep.features, prep.categories, num_rounds,
                       early_stopping_rounds, every, callbacks=tuple(callbacks), encoded=prep.encoded,
                       classes=tuple(prep.classes))
        fit = fit_ray(prep, job, compute, ctx.artifacts.storage_for(ctx.key("checkpoints")), progress_sink(ctx))
    else:
        fit = fit_local(prep, full, num_rounds, patience=early_stopping_rounds, every=every,
                        sink=progress_sink(ctx), callbacks=callbacks)
    return save_model(ctx, prep, stored, fit)


def save_model(ctx: SkillContext, prep: TrainingData, params: dict[str, Any], fit: FitResult) -> ModelArtifact:
    """Cut the booster at its best round, record the split convention in it, choose a binary model's decision
    threshold on the validation rows, score it there and write it (xgboost JSON) to the artifact store."""
    from skills.library.boosting.metrics import score
    from skills.library.boosting.saved_model import SPLIT_ATTR

    booster = fit.best_booster()
    booster.set_param({"device": "cpu"})  # a GPU-trained model scores on the driver's CPU
    booster.set_attr(**{SPLIT_ATTR: json.dumps(prep.split_info())})
    y, pred = prep.valid_predictions(booster)
    threshold = decision_threshold(prep.task, y, pred)
    metrics = score(prep.task, y, pred, threshold=threshold)
    uri = ctx.artifacts.put_bytes(ctx.key("model.json"), bytes(booster.save_raw("json")))
    return ModelArtifact(uri=uri, task=prep.task, target=prep.target, features=prep.features,
                         categories=prep.categories, classes=prep.classes, params=params,
                         num_rounds=booster.num_boosted_rounds(), best_iteration=fit.best_iteration,
                         metrics=metrics, history=fit.history, boost_seconds=round(fit.seconds, 3),
                         threshold=threshold)


def decision_threshold(task: Task, y: np.ndarray, pred: np.ndarray) -> float | None:
    """A binary model's threshold: the one maximising F1 on its validation rows (a rare class's probabilities may
    never reach 0.5). None for regression and multiclass (one probability column per class: the argmax decides)."""
    from skills.library.boosting.metrics import best_threshold

    if task != "classification" or np.ndim(pred) != 1:
        return None
    return round(best_threshold(y, pred), 6)


def _cost(inp: TrainInput) -> int:
    return inp.num_rounds


@skill("train_xgboost", uses_ray=True, cost=_cost, tags=("model",))
def train_xgboost(ctx: SkillContext, inp: TrainInput) -> TrainOutput:
    """Train an XGBoost model that predicts `target` (classification or regression, inferred when omitted) from the
    columns of `table` (default: all usable columns except `exclude`). Holds out `valid_fraction` of the rows
    (stratified) for early stopping and the decision threshold; returns the model (saved at its best round) with
    validation metrics: AUC, PR AUC, logloss, accuracy, F1 (at the threshold that maximises F1 on those rows) for
    binary classification (`positive` names the level that counts as positive); macro AUC, mlogloss, accuracy, macro
    F1 for a target with 3+ classes (softprob); RMSE, MAE, R2 for regression. Runs on Ray Train (GPUs when the
    cluster has them, checkpoints and worker restarts) when the plan runs on Ray."""
    prep = load_prepared(ctx, inp.table, inp.target, inp.task, inp.features, inp.exclude, inp.valid_fraction,
                         inp.positive)
    model = fit_model(ctx, prep, inp.params, inp.num_rounds, inp.early_stopping_rounds, inp.num_workers)
    return TrainOutput(model=model, metrics=model.metrics)
