"""evaluate: k-fold cross-validation (the headline), validation metrics and curve data for a trained model.

The headline (`metric_value`, named by `protocol`, e.g. "5-fold stratified CV, seed 0") is cross-validation: the
model's parameters retrained for its number of rounds on k folds of the rows (stratified for classification, seeded)
and scored on the fold left out. `metrics` are the model's own validation rows (the split convention is stored in the
booster) when `table` is the table it was trained on: those rows chose the hyperparameters, rounds and decision
threshold, so they are "validation (used for tuning)" and lean optimistic, never held-out. On any other table
`metrics` cover every row (new data). Accuracy and F1 use the model's decision threshold (chosen on its validation
rows, like its other hyperparameters). `cross_validate` is public so the OODA loop can run paired comparisons.

When the executor started Ray (`settings.compute == "ray"`), the validation scoring and every fold run as Ray tasks
that read the table's columns from the artifact store themselves (`boosting.tasks`): the driver holds no rows, only
metrics and capped curve data come back. Without Ray the same functions run in this process on one read of the table.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from skills.context import SkillContext
from skills.library.boosting.data import fold_ids, subset
from skills.library.boosting.params import eval_metrics, headline_metric, model_params, primary_metric
from skills.library.boosting.tasks import RayTasks, StoredTable, ray_tasks, reader, run_each
from skills.registry import skill
from skills.types import ModelArtifact, TableArtifact, Task

if TYPE_CHECKING:
    import pyarrow as pa
    import xgboost as xgb

    from skills.artifacts import ArtifactStore
    from skills.frame import Frame

MAX_SCATTER = 500
FoldHook = Callable[[int, dict[str, float]], None]


class EvaluateInput(BaseModel):
    """The model, the table it is judged on, and the number of cross-validation folds (0 = none)."""

    model_config = ConfigDict(extra="forbid")
    model: ModelArtifact
    table: TableArtifact
    folds: int = Field(5, ge=0, le=20)

    @field_validator("folds")
    @classmethod
    def _not_one(cls, v: int) -> int:
        if v == 1:
            raise ValueError("cross-validation needs at least 2 folds (0 turns it off)")
        return v


VALIDATION = "validation (used for tuning)"  # what the model's own validation rows are called, everywhere


class EvaluateOutput(BaseModel):
    """The headline metric and its protocol, mean and per-fold cross-validation metrics, the validation (or new
    table) metrics and curve data."""

    model_config = ConfigDict(extra="forbid")
    metrics: dict[str, float] = Field(description="metrics on the rows `metrics_protocol` names")
    metrics_protocol: str = Field(VALIDATION, description=f'"{VALIDATION}" (the model\'s validation rows) or '
                                  '"new table (N rows)"')
    cv_metrics: dict[str, float]
    cv_folds: list[dict[str, float]]
    metric_name: str
    metric_value: float = Field(description="the cross-validated metric (the `metrics` one when folds=0)")
    protocol: str = Field("", description='how metric_value was measured, e.g. "5-fold stratified CV, seed 0"')
    threshold: float | None = Field(None, description="the decision threshold accuracy and F1 used")
    curves: dict[str, Any]


@dataclass(frozen=True)
class FoldSpec:
    """Everything one cross-validation fold needs (picklable): xgboost params with `nthread` fixed, so a fold scores
    the same in this process and in a Ray task."""

    features: list[str]
    target: str
    task: Task
    params: dict[str, Any]
    num_rounds: int
    folds: int
    seed: int
    categories: dict[str, list[str]] | None = None
    classes: tuple[str, ...] = ()  # the model's classes (`ModelArtifact.classes`); () infers them from the table
    threshold: float | None = None  # binary classification's decision threshold (None: 0.5)

    @property
    def columns(self) -> list[str]:
        """The columns a fold reads."""
        return [*self.features, self.target]


def fold_spec(features: Sequence[str], target: str, task: Task, params: Mapping[str, Any], num_rounds: int,
              folds: int, seed: int, categories: dict[str, list[str]] | None, nthread: int,
              classes: Sequence[str] = (), threshold: float | None = None) -> FoldSpec:
    """The fold spec of a model's parameters; `nthread` 0 means every core of the process that runs the fold."""
    stored = model_params(task, seed, params, classes)
    full = {**stored, "eval_metric": eval_metrics(stored, task), "nthread": nthread}
    return FoldSpec(list(features), target, task, full, num_rounds, folds, seed, categories, tuple(classes),
                    threshold)


def cv_protocol(task: Task, folds: int, seed: int) -> str:
    """How a cross-validated metric was measured, in words: "5-fold stratified CV, seed 0"."""
    return f"{folds}-fold {'stratified ' if task == 'classification' else ''}CV, seed {seed}"


@dataclass
class FoldData:
    """The design matrix of the whole table and every row's fold (computed once per process that runs folds)."""

    spec: FoldSpec
    frame: Frame
    ids: np.ndarray


def fold_data(load: Callable[[], pa.Table], spec: FoldSpec) -> FoldData:
    """Read the table, encode it and number its folds: stratified, seeded, identical wherever it runs. Categories
    default to the levels of the whole table, shared by every fold."""
    from skills.frame import build_frame

    frame = build_frame(load(), spec.features, spec.target, spec.task, spec.categories, spec.classes or None)
    return FoldData(spec, frame, fold_ids(frame.labels, spec.task, spec.folds, spec.seed))


def fold_scores(data: FoldData, k: int) -> dict[str, float]:
    """Train on every fold but `k` for the spec's rounds and score fold `k`."""
    from skills.library.boosting.loop import boost_plain
    from skills.library.boosting.metrics import score

    spec = data.spec
    train, test = subset(data.frame, data.ids != k), subset(data.frame, data.ids == k)
    nthread = int(spec.params["nthread"]) or None
    booster = boost_plain(spec.params, train.dmatrix(nthread=nthread), spec.num_rounds)
    return score(spec.task, test.labels, booster.predict(test.dmatrix(nthread=nthread)), threshold=spec.threshold)


def run_folds(spec: FoldSpec, load: Callable[[], pa.Table], on: RayTasks | None,
              on_fold: FoldHook | None = None) -> list[dict[str, float]]:
    """Per-fold metrics, fold by fold in this process (`on` None: `load` runs once) or one Ray task per fold
    (each task calls `load`, which then must read the table itself: `tasks.reader`)."""
    def label(k: int) -> str:
        return f"cross-validation fold {k + 1} of {spec.folds}"

    return run_each(fold_scores, partial(fold_data, load, spec), range(spec.folds), on, label, on_fold)


def cross_validate(table: pa.Table, features: Sequence[str], target: str, task: Task, params: Mapping[str, Any],
                   num_rounds: int, folds: int = 5, seed: int = 0, categories: dict[str, list[str]] | None = None,
                   *, on_fold: FoldHook | None = None, classes: Sequence[str] = ()) -> list[dict[str, float]]:
    """Per-fold metrics of `params` trained for `num_rounds` on k-1 folds and scored on the k-th (AUC, logloss,
    accuracy, F1 for classification, macro AUC and mlogloss for 3+ `classes`; RMSE, MAE, R2 for regression), in
    this process. Folds are stratified for classification (on every class) and deterministic given `seed`;
    categories and classes default to the levels of the whole table, shared by every fold. `evaluate` runs the
    same folds as Ray tasks when Ray is up (`run_folds`)."""
    spec = fold_spec(features, target, task, params, num_rounds, folds, seed, categories,
                     nthread=int(params.get("nthread", 0) or 0), classes=classes)  # 0: every core of this process
    return run_folds(spec, partial(_given, table), None, on_fold)


def _given(table: pa.Table) -> pa.Table:
    return table


def mean_metrics(folds: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over folds."""
    if not folds:
        return {}
    return {name: float(np.mean([f[name] for f in folds])) for name in folds[0]}


def curves_for(task: Task, y: np.ndarray, pred: np.ndarray, model: ModelArtifact, seed: int) -> dict[str, Any]:
    """ROC and PR points (binary classification), each class's share of the rows and of the predicted classes
    (multiclass) or a predicted-vs-actual sample (regression), plus the learning curve."""
    from skills.library.boosting.metrics import pr_points, roc_points

    metric = primary_metric(task, model.classes)
    out: dict[str, Any] = {"learning_curve": {"metric": metric, "values": model.history.get(metric, []),
                                              "best_iteration": model.best_iteration}}
    if pred.ndim == 2:  # one probability per class: no single ROC curve
        predicted = np.argmax(pred, axis=1)
        out["classes"] = {"levels": list(model.classes),
                          "share": [float(np.mean(y == k)) for k in range(pred.shape[1])],
                          "predicted_share": [float(np.mean(predicted == k)) for k in range(pred.shape[1])]}
        return out
    if task == "classification":
        out["roc"] = roc_points(y, pred)
        out["pr"] = pr_points(y, pred)
        out["positive_rate"] = float(np.mean(y == 1))
        return out
    rows = np.sort(np.random.default_rng(seed).permutation(len(y))[:MAX_SCATTER])
    out["predicted_vs_actual"] = {"actual": y[rows].tolist(), "predicted": pred[rows].tolist()}
    return out


def holdout_predictions(ctx: SkillContext, model: ModelArtifact, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions) on the model's validation rows of `table` (all rows of a new table)."""
    from skills.library.boosting.saved_model import load_booster

    return _holdout(load_booster(ctx.artifacts, model.uri, "evaluate"), model, table)


def _holdout(booster: xgb.Booster, model: ModelArtifact, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    from skills.frame import build_frame
    from skills.library.boosting.saved_model import validation_rows

    rows = validation_rows(table, model, booster)
    frame = build_frame(table.take(rows), model.features, model.target, model.task, model.categories,
                        model.classes or None)
    return frame.labels, booster.predict(frame.dmatrix())


@dataclass(frozen=True)
class Holdout:
    """What scoring the holdout needs besides the table (picklable)."""

    store: ArtifactStore
    model: ModelArtifact
    seed: int


def holdout_summary(table: pa.Table, job: Holdout) -> tuple[dict[str, float], dict[str, Any]]:
    """Holdout metrics and curve data: small, whatever the table's size (curves are capped in points)."""
    from skills.library.boosting.metrics import score
    from skills.library.boosting.saved_model import load_booster

    y, pred = _holdout(load_booster(job.store, job.model.uri, "evaluate"), job.model, table)
    metrics = score(job.model.task, y, pred, threshold=job.model.threshold)
    return metrics, curves_for(job.model.task, y, pred, job.model, job.seed)


def scored_rows(ctx: SkillContext, model: ModelArtifact, rows: int) -> str:
    """What `metrics` were measured on: the model's validation rows (`VALIDATION`) when a table of `rows` rows is
    its training table, else every row of a new table."""
    from skills.library.boosting.saved_model import load_booster, trained_on

    return VALIDATION if trained_on(load_booster(ctx.artifacts, model.uri, "evaluate"), rows) else \
        f"new table ({rows} rows)"


def _cost(inp: EvaluateInput) -> int:
    return inp.folds * max(inp.model.num_rounds, 1)


@skill("evaluate", cost=_cost, tags=("model",))
def evaluate(ctx: SkillContext, inp: EvaluateInput) -> EvaluateOutput:
    """Judge a trained model: k-fold cross-validation of its parameters (stratified for classification, seeded;
    mean and per fold: AUC, PR AUC, logloss, accuracy, F1 for binary classification; macro AUC, mlogloss, accuracy,
    macro F1 for 3+ classes; RMSE, MAE, R2 for regression) as the headline metric with its protocol, the same metrics
    on its validation rows ("validation (used for tuning)": they chose its hyperparameters, so they lean optimistic)
    or on every row of a new table, and curve data for the report (ROC and precision-recall, class shares, or
    predicted vs actual; learning curve)."""
    model, seed = inp.model, ctx.settings.seed
    source, on = StoredTable(ctx.artifacts, inp.table.uri), ray_tasks(ctx)
    spec = fold_spec(model.features, model.target, model.task, model.params, model.num_rounds, inp.folds, seed,
                     model.categories, nthread=on.cpus if on else 0,  # 0: every core of this process
                     classes=model.classes, threshold=model.threshold)
    # On Ray every task reads the columns it needs by itself; in this process they are read once and shared.
    load = reader(source, spec.columns) if on else partial(_given, source.read(spec.columns))
    rows = source.num_rows()
    where = f"{on.concurrency} Ray task(s) at a time, {on.cpus} CPU(s) each" if on else "this process"
    ctx.progress(f"evaluating on {rows} rows in {where}", done=rows, total=rows, unit="rows")
    [(metrics, curves)] = run_each(holdout_summary, load, [Holdout(ctx.artifacts, model, seed)], on,
                                   lambda _: "scoring the validation rows")
    finished = itertools.count(1)

    def fold_done(k: int, _: dict[str, float]) -> None:
        done = next(finished)
        ctx.progress(f"fold {k + 1} done ({done}/{inp.folds})", done=done, total=inp.folds, unit="folds")

    folds = run_folds(spec, load, on, fold_done) if inp.folds else []
    name, cv, seen = headline_metric(model.task), mean_metrics(folds), scored_rows(ctx, model, rows)
    return EvaluateOutput(metrics=metrics, metrics_protocol=seen, cv_metrics=cv, cv_folds=folds, metric_name=name,
                          metric_value=cv[name] if folds else metrics[name],
                          protocol=cv_protocol(model.task, inp.folds, seed) if folds else seen,
                          threshold=model.threshold, curves=curves)
