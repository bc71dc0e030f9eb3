"""The search space of `tune`, fitted to the table: rounds and learning rates for its size, regularisation, column
sampling, histogram bins, the linear booster as an arm, and class weights for an imbalanced binary target.

Sizes (measured on public tables of 1k-10k rows, issue 13): on small tables a slow learner (low learning rate, many
rounds) or a regularised or linear booster beats fast deep trees, and its rounds cost little; on large tables every
round is expensive and a trial gets fewer. The lowest learning rate is the one that can still learn within a trial's
rounds (`eta x rounds >= MIN_LEARNING`), so no arm of the space is one that can never finish.

The space is flat (every searcher in the lock handles it: TPE of optuna and hyperopt, random sampling): `booster` is
a choice, and a gblinear trial ignores the tree parameters it draws (`params.for_booster` drops them). xgboost's
linear booster refuses categorical features, so it is an arm only for tables whose features are all numeric
(one-hot encoding for it is not built yet).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from skills.types import Task

# (rows up to, boosting rounds per trial): a table above the last size gets LARGE_TABLE_ROUNDS.
ROUNDS_BY_ROWS: tuple[tuple[int, int], ...] = ((2_000, 1000), (20_000, 500), (200_000, 300))
LARGE_TABLE_ROUNDS = 200
MIN_LEARNING = 4.0  # eta x rounds of the slowest learner: 40 rounds' worth at the default eta 0.1
MIN_ETA, MAX_ETA = 0.005, 0.3
SMALL_TABLE = 2_000  # rows up to which trees stay shallow (depth <= 6)
IMBALANCED = 0.2  # a binary target whose rarer class is below this share gets `scale_pos_weight` as an arm


def trial_rounds(rows: int, cap: int) -> int:
    """Boosting rounds per trial for a table of `rows` rows, at most `cap` (the plan's budget per trial)."""
    fitted = next((rounds for upper, rounds in ROUNDS_BY_ROWS if rows <= upper), LARGE_TABLE_ROUNDS)
    return max(1, min(cap, fitted))


def eta_range(rounds: int) -> tuple[float, float]:
    """(lowest, highest) learning rate searched: the lowest still learns within `rounds`."""
    return min(MAX_ETA, max(MIN_ETA, MIN_LEARNING / max(rounds, 1))), MAX_ETA


@dataclass(frozen=True)
class SearchPlan:
    """What the search space is fitted to: table rows, rounds per trial, task and the class balance."""

    rows: int
    rounds: int
    task: Task
    positive_rate: float | None = None  # binary targets only
    linear: bool = True  # gblinear is an arm: xgboost's linear booster takes no categorical features

    @property
    def class_weights(self) -> list[float]:
        """`scale_pos_weight` choices: 1, and for an imbalanced binary target sqrt(neg/pos) and neg/pos."""
        rate = self.positive_rate
        if rate is None or not 0.0 < rate < 1.0 or IMBALANCED <= rate <= 1.0 - IMBALANCED:
            return [1.0]
        ratio = (1.0 - rate) / rate
        return [1.0, round(math.sqrt(ratio), 3), round(ratio, 3)]


def search_space(plan: SearchPlan) -> dict[str, Any]:
    """The hyperparameters searched, as Ray Tune domains."""
    from ray import tune

    low, high = eta_range(plan.rounds)
    space: dict[str, Any] = {
        "booster": tune.choice(["gbtree", "gblinear"] if plan.linear else ["gbtree"]),
        "eta": tune.loguniform(low, high),
        "max_depth": tune.randint(1, max_depth(plan) + 1),
        "min_child_weight": tune.loguniform(0.5, 20.0),
        "gamma": tune.loguniform(1e-3, 5.0),
        "subsample": tune.uniform(0.5, 1.0),
        "colsample_bytree": tune.uniform(0.5, 1.0),
        "lambda": tune.loguniform(0.01, 10.0),
        "alpha": tune.loguniform(1e-3, 10.0),
        "max_bin": tune.choice([64, 128, 256]),
    }
    if len(weights := plan.class_weights) > 1:
        space["scale_pos_weight"] = tune.choice(weights)
    return space


def max_depth(plan: SearchPlan) -> int:
    """The deepest trees searched: 6 on small tables, 10 above."""
    return 6 if plan.rows <= SMALL_TABLE else 10


# Configurations every search tries first, in this order (the searcher's `points_to_evaluate`), then the searcher
# explores around what they found. Measured on public tables (issue 13, 5 folds, early stopping on validation
# logloss): no single one wins everywhere, but together they cover the winners: xgboost's own defaults (fast, deep;
# strong on larger tables with interactions), additive stumps at a low learning rate (close to a linear model; best
# on small tables where logistic regression beats trees, e.g. +0.06 AUC on 1,470 rows) and two shallow, regularised,
# subsampled ensembles in between.
PORTFOLIO: tuple[dict[str, Any], ...] = (
    {"eta": 0.3, "max_depth": 6, "min_child_weight": 1.0, "subsample": 1.0, "colsample_bytree": 1.0, "lambda": 1.0},
    {"eta": 0.05, "max_depth": 1, "min_child_weight": 1.0, "subsample": 1.0, "colsample_bytree": 1.0, "lambda": 1.0},
    {"eta": 0.05, "max_depth": 2, "min_child_weight": 5.0, "subsample": 1.0, "colsample_bytree": 0.8, "lambda": 5.0},
    {"eta": 0.03, "max_depth": 3, "min_child_weight": 3.0, "subsample": 0.8, "colsample_bytree": 0.7, "lambda": 1.0},
)


def start_points(plan: SearchPlan, num_trials: int) -> list[dict[str, Any]]:
    """The portfolio as complete points of `search_space(plan)` (learning rates clipped to its range), at most
    `num_trials` of them, minus one so the searcher always gets a trial of its own when there are 3 or more."""
    low, high = eta_range(plan.rounds)
    fixed = {"booster": "gbtree", "gamma": 1e-3, "alpha": 1e-3, "max_bin": 256}
    if len(plan.class_weights) > 1:
        fixed["scale_pos_weight"] = 1.0
    points = [{**fixed, **point, "eta": min(high, max(low, point["eta"])),
               "max_depth": min(point["max_depth"], max_depth(plan))} for point in PORTFOLIO]
    keep = num_trials - 1 if num_trials >= 3 else num_trials
    return points[:max(keep, 0)]


def positive_rate(labels: np.ndarray, task: Task) -> float | None:
    """The share of class 1 among binary labels (0/1); None for regression or more than two classes."""
    if task != "classification" or not len(labels):
        return None
    levels = np.unique(labels)
    if len(levels) != 2 or not set(levels.tolist()) <= {0.0, 1.0}:
        return None
    return float(np.mean(labels == 1))


def grace_period(rounds: int, every: int) -> int:
    """ASHA's first rung: a quarter of a trial's rounds, on a report boundary. (A rung at a twentieth, 10 of 200
    rounds, cut every low-learning-rate trial before it learned: 12 trials used 280 of 2,600 rounds, issue 13.)"""
    return max(every, (rounds // 4) // every * every)
