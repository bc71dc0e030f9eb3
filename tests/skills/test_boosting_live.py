"""Live progress of the boosting loop: besides every N rounds, a report once `every_s` seconds passed, each carrying
the validation curve since the previous report (thinned), so a chart can draw it while training runs."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import xgboost as xgb

from skills.library.boosting.loop import Event, Monitor, boost, thin


class Slow(xgb.callback.TrainingCallback):
    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        time.sleep(0.03)
        return False


def _data() -> tuple[xgb.DMatrix, xgb.DMatrix]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4))
    y = (x[:, 0] + rng.normal(scale=0.5, size=400) > 0).astype(float)
    return xgb.DMatrix(x[:300], y[:300]), xgb.DMatrix(x[300:], y[300:])


def _boost(rounds: int, every: int, every_s: float | None, slow: bool = False) -> list[Event]:
    events: list[Event] = []
    monitor = Monitor("auc", rounds, every=every, sink=events.append, every_s=every_s)
    dtrain, dvalid = _data()
    boost({"objective": "binary:logistic", "eval_metric": ["auc"], "nthread": 1}, dtrain, dvalid, monitor,
          callbacks=[Slow()] if slow else [])
    assert len(monitor.history["auc"]) == rounds
    return events


def test_reports_every_n_rounds_carry_the_curve_since_the_last_one() -> None:
    events = _boost(30, every=10, every_s=None)
    assert [e.rounds for e in events] == [10, 20, 30] and events[-1].final
    rounds = [r for e in events for r, _ in e.points]
    assert rounds == list(range(1, 31)) and {e.metric for e in events} == {"auc"}


def test_slow_rounds_report_at_least_every_every_s_seconds() -> None:
    events = _boost(24, every=1000, every_s=0.1, slow=True)  # ~0.03 s per round: a report every ~4 rounds
    assert 4 <= len(events) <= 12, [e.rounds for e in events]
    assert [r for e in events for r, _ in e.points] == list(range(1, 25))  # nothing lost, nothing twice
    assert len(_boost(24, every=1000, every_s=None, slow=True)) == 1  # Tune's reports: every N rounds only


def test_thin_keeps_the_shape_and_the_last_point() -> None:
    points = [(i, float(i)) for i in range(1, 1001)]
    kept = thin(points, 100)
    assert len(kept) == 100 and kept[0] == (1, 1.0) and kept[-1] == (1000, 1000.0)
    assert thin(points[:5], 100) == points[:5]
