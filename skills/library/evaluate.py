"""evaluate: holdout metrics, k-fold cross-validation and curve data for a trained model.

Holdout: the model's own validation rows (the split convention is stored in the booster) when `table` is the table it
was trained on, else every row of `table` (new data). Early stopping chose the round count on those validation rows, so
holdout metrics lean optimistic; cross-validation, which retrains the model's parameters for its number of rounds on
k stratified folds, is the unbiased estimate. `cross_validate` is public so the OODA loop can run paired comparisons.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from skills.context import SkillContext
from skills.library.boosting.data import fold_ids, subset
from skills.library.boosting.params import EVAL_METRICS, model_params, primary_metric
from skills.registry import skill
from skills.types import ModelArtifact, TableArtifact, Task

if TYPE_CHECKING:
    import pyarrow as pa

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


class EvaluateOutput(BaseModel):
    """Holdout metrics, mean and per-fold cross-validation metrics, the headline metric and curve data."""

    model_config = ConfigDict(extra="forbid")
    metrics: dict[str, float]
    cv_metrics: dict[str, float]
    cv_folds: list[dict[str, float]]
    metric_name: str
    metric_value: float
    curves: dict[str, Any]


def cross_validate(table: pa.Table, features: Sequence[str], target: str, task: Task, params: Mapping[str, Any],
                   num_rounds: int, folds: int = 5, seed: int = 0, categories: dict[str, list[str]] | None = None,
                   *, on_fold: FoldHook | None = None) -> list[dict[str, float]]:
    """Per-fold metrics of `params` trained for `num_rounds` on k-1 folds and scored on the k-th (AUC, logloss,
    accuracy, F1 for classification; RMSE, MAE, R2 for regression). Folds are stratified for classification and
    deterministic given `seed`; categories default to the levels of the whole table, shared by every fold."""
    from skills.frame import build_frame
    from skills.library.boosting.loop import boost_plain
    from skills.library.boosting.metrics import score

    frame = build_frame(table, features, target, task, categories)
    ids = fold_ids(frame.labels, task, folds, seed)
    full = {**model_params(task, seed, params), "eval_metric": EVAL_METRICS[task]}
    full["nthread"] = params.get("nthread", 0) or 0  # 0: every core this process may use
    out: list[dict[str, float]] = []
    for k in range(folds):
        train, test = subset(frame, ids != k), subset(frame, ids == k)
        booster = boost_plain(full, train.dmatrix(), num_rounds)
        out.append(score(task, test.labels, booster.predict(test.dmatrix())))
        if on_fold is not None:
            on_fold(k, out[-1])
    return out


def mean_metrics(folds: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over folds."""
    if not folds:
        return {}
    return {name: float(np.mean([f[name] for f in folds])) for name in folds[0]}


def curves_for(task: Task, y: np.ndarray, pred: np.ndarray, model: ModelArtifact, seed: int) -> dict[str, Any]:
    """ROC and PR points (classification) or a predicted-vs-actual sample (regression), plus the learning curve."""
    from skills.library.boosting.metrics import pr_points, roc_points

    metric = primary_metric(task)
    out: dict[str, Any] = {"learning_curve": {"metric": metric, "values": model.history.get(metric, []),
                                              "best_iteration": model.best_iteration}}
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
    from skills.frame import build_frame
    from skills.library.boosting.saved_model import load_booster, validation_rows

    booster = load_booster(ctx.artifacts, model.uri, "evaluate")
    rows = validation_rows(table, model.target, model.task, booster)
    frame = build_frame(table.take(rows), model.features, model.target, model.task, model.categories)
    return frame.labels, booster.predict(frame.dmatrix())


def _cost(inp: EvaluateInput) -> int:
    return inp.folds * max(inp.model.num_rounds, 1)


@skill("evaluate", cost=_cost, tags=("model",))
def evaluate(ctx: SkillContext, inp: EvaluateInput) -> EvaluateOutput:
    """Judge a trained model: holdout metrics on its validation rows (AUC, logloss, accuracy, F1 for
    classification; RMSE, MAE, R2 for regression), stratified k-fold cross-validation of its parameters (mean and
    per fold) and curve data for the report (ROC and precision-recall, or predicted vs actual; learning curve)."""
    from skills.library.boosting.metrics import score

    model = inp.model
    table = ctx.artifacts.get_table(inp.table.uri)
    ctx.progress(f"read {table.num_rows} rows", done=table.num_rows, total=table.num_rows, unit="rows")
    y, pred = holdout_predictions(ctx, model, table)
    metrics = score(model.task, y, pred)

    def fold_done(k: int, _: dict[str, float]) -> None:
        ctx.progress(f"fold {k + 1}/{inp.folds}", done=k + 1, total=inp.folds, unit="folds")

    folds = cross_validate(table, model.features, model.target, model.task, model.params, model.num_rounds,
                           inp.folds, ctx.settings.seed, model.categories, on_fold=fold_done) if inp.folds else []
    name = primary_metric(model.task)
    return EvaluateOutput(metrics=metrics, cv_metrics=mean_metrics(folds), cv_folds=folds, metric_name=name,
                          metric_value=metrics[name], curves=curves_for(model.task, y, pred, model, ctx.settings.seed))
