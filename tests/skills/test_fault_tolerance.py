"""Kill a Ray Train worker mid-run: the run resumes from its last checkpoint and ends exactly like an uninterrupted one.

The worker process really dies (`os._exit` inside the xgboost loop, once: a marker file guards it); Ray Train's
FailureConfig starts a new worker group, whose training loop finds `ray.train.get_checkpoint()` and trains the
remaining rounds only.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from ml_fixtures import ID, make_harness

from skills.library.train_xgboost import fit_model, load_prepared

pytestmark = pytest.mark.ray

ROUNDS, EVERY, CRASH_AT = 40, 4, 27


class CrashOnce(xgb.callback.TrainingCallback):
    """Slows rounds down (so checkpoints are spaced as in real training), then kills its own worker process once
    at round `at`, a few seconds after the previous checkpoint was reported."""

    def __init__(self, marker: str, at: int, delay_s: float = 0.2, grace_s: float = 4.0) -> None:
        self.marker, self.at, self.delay_s, self.grace_s = marker, at, delay_s, grace_s

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: dict) -> bool:
        time.sleep(self.delay_s)
        if model.num_boosted_rounds() == self.at and not os.path.exists(self.marker):
            time.sleep(self.grace_s)  # let Ray Train's controller register the last checkpoint
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)
        return False


def _ship_by_value() -> None:
    """Workers may not import this test module by name: pickle its classes by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_killed_worker_resumes_from_checkpoint_with_the_same_rounds(tmp_path, ray_cluster):
    _ship_by_value()
    marker = tmp_path / "crashed"
    h = make_harness(tmp_path, compute="ray")
    table = h.table()
    prep = load_prepared(h.ctx, table, "churn", None, None, [ID], 0.2)
    params = {"eta": 0.1, "max_depth": 4}
    # early_stopping_rounds=0 so every round runs: the run must reach exactly ROUNDS rounds
    model = fit_model(h.ctx, prep, params, ROUNDS, 0, callbacks=[CrashOnce(str(marker), CRASH_AT)])

    assert marker.exists(), "the worker was never killed"
    assert int(marker.read_text()) != os.getpid()  # it was a worker process, not this one
    resumed = [e.data["restarted_from"] for e in h.events if "restarted_from" in e.data]
    assert len(resumed) == 1 and 0 < resumed[0] <= CRASH_AT, resumed  # from a checkpoint, not from scratch
    print(f"worker killed at round {CRASH_AT}, resumed from the checkpoint at round {resumed[0]}")
    assert len(model.history["auc"]) == ROUNDS

    reference = make_harness(tmp_path / "reference")  # the same run, uninterrupted, in process
    expected = fit_model(reference.ctx, load_prepared(reference.ctx, reference.table(), "churn", None, None,
                                                      [ID], 0.2), params, ROUNDS, 0)
    np.testing.assert_allclose(model.history["auc"], expected.history["auc"], rtol=0, atol=1e-9)
    assert model.num_rounds == expected.num_rounds and model.metrics == pytest.approx(expected.metrics, abs=1e-9)
