"""The boosting loop in one process: validation history, early stopping, progress every N rounds.

`Monitor` keeps early stopping's state in the validation history, which a checkpoint carries, so a worker restarted
from a checkpoint stops exactly where an uninterrupted run would. `boost` is the one xgboost.train call for both
`fit_local` (this process) and the Ray Train workers (`ray_train.train_loop_per_worker`).
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import xgboost as xgb

from skills.errors import SkillError
from skills.library.boosting.data import VALID, TrainingData
from skills.library.boosting.params import mode_of, primary_metric

MAX_POINTS = 100  # per progress report
LIVE_EVERY_S = 2.0  # a progress report at least this often while rounds run (besides every N rounds)


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
    metric: str = ""
    points: list[tuple[int, float]] = field(default_factory=list)  # (round, value) since the previous report


    def metrics(self, key: str) -> dict[str, float | int]:
        """The dict reported to Ray Train / Tune: rounds as time attribute, best-so-far metric under `key`."""
        return {"rounds": self.rounds, key: self.best, "last": self.last, "best_iteration": self.best_iteration}


Sink = Callable[[Event], None]


def thin(points: Sequence[tuple[int, float]], most: int = MAX_POINTS) -> list[tuple[int, float]]:
    """At most `most` of `points`, evenly spread, the last one kept (a live chart needs the shape, not each round)."""
    if len(points) <= most:
        return list(points)
    step = len(points) / most
    picked = [points[int(i * step)] for i in range(most - 1)]
    return [*picked, points[-1]]


def ignore_event(_: Event) -> None:
    """A sink that drops every event (no one is watching progress)."""


class Monitor(xgb.callback.TrainingCallback):
    """Validation history of every eval metric, early stopping on the primary metric and a report every N rounds.

    Early stopping lives here rather than in xgboost's `early_stopping_rounds` so that its state is the history,
    which a checkpoint carries: a worker restarted from a checkpoint stops exactly where an uninterrupted run would."""

    def __init__(self, metric: str, total: int, *, patience: int = 0, every: int = 10,
                 sink: Sink = ignore_event, history: Mapping[str, list[float]] | None = None,
                 seconds: float = 0.0, every_s: float | None = None) -> None:
        """`every_s`: also report once that many seconds passed since the last report (a live chart during slow
        rounds); None for sinks whose reports must come every `every` rounds exactly (Tune's ASHA)."""
        self.metric, self.total, self.patience, self.every, self.sink = metric, total, patience, every, sink
        self.every_s = every_s
        self.history: dict[str, list[float]] = {k: list(v) for k, v in (history or {}).items()}
        self.stopped_early = False
        self.seconds = seconds  # wall time of the boosting rounds alone (before a restart too)
        self._carried, self._started = seconds, time.perf_counter()
        self._reported_at, self._reported_rounds = self._started, self.rounds

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

    def before_training(self, model: xgb.Booster) -> xgb.Booster:
        self._started = time.perf_counter()  # the DMatrix is built: from here on the time is boosting
        return model

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: Mapping[str, Any]) -> bool:
        self.seconds = self._carried + time.perf_counter() - self._started
        for name, values in evals_log.get(VALID, {}).items():
            self.history.setdefault(name, []).append(float(values[-1]))
        self.stopped_early = self.should_stop()
        final = self.stopped_early or self.rounds >= self.total
        now = time.perf_counter()
        late = self.every_s is not None and now - self._reported_at >= self.every_s
        if final or late or self.rounds % self.every == 0:
            values = self.history.get(self.metric, [])
            new = [(i + 1, values[i]) for i in range(self._reported_rounds, len(values))]
            self.sink(replace(self.event(final=final), metric=self.metric, points=thin(new)))
            self._reported_at, self._reported_rounds = now, self.rounds
        return self.stopped_early


@dataclass
class FitResult:
    """A trained booster (all rounds run) with its validation history and where restarts resumed."""

    booster: xgb.Booster
    history: dict[str, list[float]]
    metric: str
    stopped_early: bool = False
    restarts: list[int] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the boosting rounds alone: no startup, no data loading, no DMatrix

    @property
    def best_iteration(self) -> int:
        """Index of the best validation round; a linear booster cannot be cut, so its last round."""
        if is_linear(self.booster):
            return self.booster.num_boosted_rounds() - 1
        return best_iteration(self.history, self.metric)

    def best_booster(self) -> xgb.Booster:
        """The booster cut after its best round, so every later use scores with the best model (a linear booster
        has no rounds to cut: its weights are one model, updated every round)."""
        if is_linear(self.booster):
            return self.booster
        return self.booster[: self.best_iteration + 1]


def is_linear(booster: xgb.Booster) -> bool:
    """True for a gblinear booster."""
    config = json.loads(booster.save_config())
    return bool(config.get("learner", {}).get("gradient_booster", {}).get("name") == "gblinear")


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


def fit_local(prep: TrainingData, params: Mapping[str, Any], num_rounds: int, *, patience: int, every: int,
              sink: Sink = ignore_event, callbacks: Sequence[xgb.callback.TrainingCallback] = (),
              every_s: float | None = LIVE_EVERY_S) -> FitResult:
    """Train in this process with plain xgboost.train (same params, split and metrics as on Ray)."""
    metric = primary_metric(prep.task, prep.classes)
    dtrain, dvalid = prep.dmatrices(params)
    monitor = Monitor(metric, num_rounds, patience=patience, every=every, sink=sink, every_s=every_s)
    booster = boost(params, dtrain, dvalid, monitor, callbacks=callbacks)
    return FitResult(booster, monitor.history, metric, monitor.stopped_early, seconds=monitor.seconds)

