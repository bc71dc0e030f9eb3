"""Task conventions and the xgboost parameters stored with a model.

What is stored with a model never holds compute choices (device, threads): those come from `compute.Compute` per run
(`xgb_params`), so a model trained on GPUs scores and cross-validates on a laptop.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from skills.errors import SkillError
from skills.types import Task

if TYPE_CHECKING:
    from skills.library.boosting.compute import Compute

# What early stopping, Tune and the feature race optimise on validation rows: a loss. Choosing among configurations
# by AUC on one validation split overfits that split (issue 13: a wider search chosen by validation AUC lost 0.007 CV
# AUC on mlc_churn); the loss is smooth in every row's probability, so it ranks configurations more reliably.
PRIMARY_METRIC: dict[str, str] = {"classification": "logloss", "regression": "rmse"}
# What the user reads: the headline of evaluate (cross-validated), the report and result.json.
HEADLINE_METRIC: dict[str, str] = {"classification": "auc", "regression": "rmse"}
# xgboost's eval metrics on the validation set, primary last (xgboost's own convention for early stopping).
EVAL_METRICS: dict[str, list[str]] = {"classification": ["auc", "logloss"], "regression": ["mae", "rmse"]}
OBJECTIVE: dict[str, str] = {"classification": "binary:logistic", "regression": "reg:squarederror"}
MULTICLASS_OBJECTIVE = "multi:softprob"  # one probability per class
MULTICLASS_EVAL_METRICS = ["mlogloss", "auc"]  # xgboost's multiclass AUC: one-vs-rest, weighted by class
MAXIMIZE = frozenset({"auc", "pr_auc", "accuracy", "f1", "r2"})
# Chosen per run from the hardware, never stored with a model.
COMPUTE_KEYS = frozenset({"device", "nthread", "n_jobs", "eval_metric", "gpu_id", "tree_method_device"})
DEFAULTS: dict[str, float | int | str] = {"tree_method": "hist", "eta": 0.1, "max_depth": 6, "min_child_weight": 1.0}
LINEAR_ETA = 0.5  # the lowest learning rate of a linear booster (`for_booster`)
LINEAR_REGULARISATION = 0.01  # a linear booster's L1/L2 per unit of the searched (tree) values
# What a linear booster does not use (xgboost warns about each): the trees' shape, sampling and histogram.
TREE_ONLY = frozenset({"tree_method", "max_depth", "min_child_weight", "gamma", "subsample", "colsample_bytree",
                       "colsample_bylevel", "colsample_bynode", "max_bin", "max_leaves", "grow_policy"})


def primary_metric(task: Task, classes: Sequence[str] = ()) -> str:
    """The validation metric that early stopping, Tune and the OODA race optimise: logloss (mlogloss for a target
    with more than two `classes`) or RMSE. The headline stays AUC or RMSE (`headline_metric`)."""
    if task == "classification" and len(classes) > 2:
        return "mlogloss"
    return PRIMARY_METRIC[task]


def race_metric(task: Task, classes: Sequence[str] = ()) -> str:
    """What the OODA race and its paired test accept a feature by: the headline (AUC, RMSE) a user reads, mlogloss
    for 3+ classes (their AUC saturates in a round or two). A feature is kept only when it improves the number the
    user judges the model by; the loss (`primary_metric`) only chooses configurations."""
    return "mlogloss" if task == "classification" and len(classes) > 2 else HEADLINE_METRIC[task]


def headline_metric(task: Task) -> str:
    """The metric a model is judged by in evaluate, the report and result.json: (macro) AUC or RMSE."""
    return HEADLINE_METRIC[task]


def mode_of(metric: str) -> Literal["max", "min"]:
    """"max" for metrics where higher is better."""
    return "max" if metric in MAXIMIZE else "min"


def metric_key(task: Task, classes: Sequence[str] = ()) -> str:
    """The name reported to Ray Train/Tune: best validation value of the primary metric so far."""
    return f"valid_{primary_metric(task, classes)}"


def model_params(task: Task, seed: int, overrides: Mapping[str, Any] | None = None,
                 classes: Sequence[str] = ()) -> dict[str, float | int | str]:
    """Parameters stored with a model: task objective (softprob with `num_class` for a target with more than two
    `classes`), defaults, the seed, then `overrides` (compute keys dropped; a linear booster drops the tree
    parameters, `for_booster`)."""
    params: dict[str, float | int | str] = {"objective": OBJECTIVE[task], **DEFAULTS, "seed": seed}
    if task == "classification" and len(classes) > 2:
        params.update(objective=MULTICLASS_OBJECTIVE, num_class=len(classes))
    for key, value in (overrides or {}).items():
        if key in COMPUTE_KEYS:
            continue
        if not isinstance(value, int | float | str):
            raise SkillError(f"xgboost parameter {key!r} must be a number or a string",
                             hint='write constraints as xgboost strings, e.g. "(1,-1)"')
        params[key] = int(value) if isinstance(value, bool) else value
    return for_booster(params)


def for_booster(params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` for their booster (idempotent): a gblinear model keeps no tree parameters and learns at `LINEAR_ETA`
    at least (coordinate descent on a linear model needs no shrinkage: at a tree's learning rate of 0.01 its
    probabilities were still near 0.5 after 200 rounds)."""
    if params.get("booster") != "gblinear":
        return dict(params)
    linear = {k: v for k, v in params.items() if k not in TREE_ONLY}
    linear["eta"] = max(float(linear.get("eta", LINEAR_ETA)), LINEAR_ETA)
    return linear


def from_search(config: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration drawn from the search space as model parameters, applied once per draw: a linear booster
    gets the searched L1/L2 scaled by `LINEAR_REGULARISATION` (xgboost normalises a linear booster's penalties by the
    rows: lambda or alpha >= 1, mild for trees, zeroed every weight of a logistic table, validation logloss 0.69 vs
    0.47 at 0.01), then `for_booster`."""
    params = dict(config)
    if params.get("booster") == "gblinear":
        for key in ("lambda", "alpha"):
            if key in params:
                params[key] = float(params[key]) * LINEAR_REGULARISATION
    return for_booster(params)


def patience_for(patience: int, params: Mapping[str, Any]) -> int:
    """Early-stopping patience for the learning rate in `params`: `patience` rounds at the default eta (0.1) and
    more in proportion below it (a model learning at eta 0.01 gets 10x the rounds to improve); 0 stays off."""
    eta = float(params.get("eta", DEFAULTS["eta"]))
    if patience <= 0 or not eta > 0:
        return patience
    return max(patience, math.ceil(patience * float(DEFAULTS["eta"]) / eta))


def eval_metrics(params: Mapping[str, Any], task: Task) -> list[str]:
    """xgboost's validation metrics for the stored `params` (multiclass ones for a softprob objective)."""
    return list(MULTICLASS_EVAL_METRICS) if params.get("objective") == MULTICLASS_OBJECTIVE else EVAL_METRICS[task]


def xgb_params(params: Mapping[str, Any], task: Task, compute: Compute) -> dict[str, Any]:
    """What xgboost.train gets: stored parameters + eval metrics + this run's device and threads."""
    return {**params, "eval_metric": eval_metrics(params, task), **compute.xgb_params()}
