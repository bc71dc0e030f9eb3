"""tune on real churn data and generated tables with a real local Ray cluster: ASHA + TPE, FIFO + random, budgets,
multi-worker trials, slow learners past the first rung, the linear booster as an arm."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from ml_fixtures import ID, make_harness

from skills.library.boosting.search import grace_period
from skills.library.evaluate import EvaluateInput, evaluate
from skills.library.tune import TuneInput, tune

pytestmark = pytest.mark.ray

CHURN = {"target": "churn", "exclude": [ID]}


def test_asha_with_tpe_stops_weak_trials_and_retrains_the_best(tmp_path, ray_cluster):
    h = make_harness(tmp_path)
    out = tune(h.ctx, TuneInput(table=h.table(), num_trials=6, max_rounds=40, seed=1, **CHURN))
    assert len(out.trials) == len({t["trial_id"] for t in out.trials}) == 6
    assert any(t["stopped_early"] for t in out.trials)  # ASHA cut some trials at a rung
    assert all(t["rounds"] == 40 for t in out.trials if not t["stopped_early"])
    assert set(out.best_params) == set(out.trials[0]["params"])  # categorical features: the trees' space only
    assert {"lambda", "alpha", "gamma", "colsample_bytree", "max_bin"} <= set(out.best_params)
    best = min(out.trials, key=lambda t: t["metric"])  # validation logloss
    assert out.best_params == best["params"]
    # the retrained model is the best trial's model: same params, split and data, so the same learning curve
    every = 40 // 20
    reported = [out.model.history["logloss"][every * (i + 1) - 1] for i in range(len(best["history"]))
                if every * (i + 1) <= len(out.model.history["logloss"])]
    assert reported and reported == pytest.approx(best["history"][: len(reported)], abs=1e-9)
    for key in ("eta", "max_depth", "subsample"):
        assert out.model.params[key] == best["params"][key]
    retrain_rounds = len(out.model.history["logloss"])
    assert out.rounds_used == sum(t["rounds"] for t in out.trials) + retrain_rounds
    assert sum(t["rounds"] for t in out.trials) < 6 * 40
    assert out.model.metrics["auc"] > 0.82
    assert [e.done for e in h.progress("trials")] == [1, 2, 3, 4, 5, 6]


def test_fifo_random_search_runs_every_trial_fully(tmp_path, ray_cluster):
    h = make_harness(tmp_path)
    out = tune(h.ctx, TuneInput(table=h.table(limit=2000), num_trials=3, max_rounds=20, search="random",
                                scheduler="fifo", early_stopping_rounds=0, seed=0, **CHURN))
    assert [t["rounds"] for t in out.trials] == [20, 20, 20]
    assert not any(t["stopped_early"] for t in out.trials)
    assert all(len(t["history"]) == 20 for t in out.trials)  # a report every round on 20 rounds


def test_total_rounds_budget_ends_the_search(tmp_path, ray_cluster):
    h = make_harness(tmp_path)
    out = tune(h.ctx, TuneInput(table=h.table(limit=2000), num_trials=8, max_rounds=20, search="hyperopt",
                                scheduler="fifo", max_total_rounds=30, **CHURN))
    spent = sum(t["rounds"] for t in out.trials)
    assert 30 <= spent <= 30 + 20 and spent < 8 * 20
    assert out.model.num_rounds >= 1


def test_multi_worker_trials_fit_an_xgboost_trainer(tmp_path, ray_cluster):
    h = make_harness(tmp_path)
    out = tune(h.ctx, TuneInput(table=h.table(limit=3000), num_trials=1, max_rounds=10, search="random",
                                scheduler="fifo", num_workers=2, **CHURN))
    (trial,) = out.trials
    assert "error" not in trial and trial["rounds"] == 10
    assert 0 < trial["metric"] < 0.5  # validation logloss (0.69: no skill)
    assert Path(h.ctx.artifacts.local_path(h.ctx.key("tune"))).exists()


def test_without_ray_the_error_says_how_to_get_it(tmp_path):
    """A fresh process where Ray is not initialised (the session cluster lives in this one)."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from ml_fixtures import make_harness
        from skills import SkillError
        from skills.library.tune import TuneInput, tune
        h = make_harness(__import__("pathlib").Path({str(tmp_path)!r}))
        try:
            tune(h.ctx, TuneInput(table=h.table(limit=200), target="churn", num_trials=1, max_rounds=5))
        except SkillError as err:
            print("MESSAGE", err.message, "HINT", err.hint)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          check=False)
    assert "MESSAGE tune needs a running Ray cluster" in done.stdout, done.stderr[-2000:]
    assert "backend='ray'" in done.stdout


def test_every_multi_worker_trial_completes_and_reports(tmp_path, ray_cluster):
    """2 Ray Train workers per trial, 2 trials one after the other on 2 CPUs: Tune must not reuse a trial's actor
    (a Train-in-Tune trainable cannot reset its config), so the second trial runs and reports its metric too."""
    h = make_harness(tmp_path)
    out = tune(h.ctx, TuneInput(table=h.table(limit=600), num_trials=2, max_rounds=4, search="random",
                                scheduler="fifo", early_stopping_rounds=0, num_workers=2, **CHURN))
    assert len(out.trials) == 2
    for trial in out.trials:
        assert "error" not in trial, trial.get("error")
        assert trial["rounds"] == 4 and trial["metric"] is not None and 0 < trial["metric"] < 0.6  # validation logloss


def slow_learner(rows: int = 800, seed: int = 0) -> pa.Table:
    """A noisy regression on smooth and interacting features: fast learners overfit within a few rounds, a low
    learning rate needs hundreds of rounds."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + 0.3 * x[:, 3] + rng.normal(0, 1.0, rows)
    return pa.table({**{f"x{i}": x[:, i] for i in range(6)}, "y": y})


def test_low_learning_rates_are_not_cut_before_they_learn(tmp_path, ray_cluster):
    h = make_harness(tmp_path, tables=("slow",))
    out = tune(h.ctx, TuneInput(table=h.put("slow", slow_learner()), target="y", num_trials=8, max_rounds=400,
                                seed=0))
    grace = grace_period(400, 400 // 20)
    low = [t for t in out.trials if t["params"]["eta"] <= 0.05 and t["params"]["booster"] == "gbtree"]
    for t in out.trials:
        print(t["params"]["booster"], round(t["params"]["eta"], 4), t["rounds"], round(t["metric"], 4))
    assert low, "no slow learner sampled"
    assert all(t["rounds"] >= grace for t in low)  # the first rung is at a quarter of the rounds, not 10 of 200
    assert any(t["rounds"] > grace for t in low)  # and a slow learner survives it on a table that needs one
    assert sum(t["rounds"] for t in out.trials) < 8 * 400  # ASHA still stops weak trials


def linear_table(rows: int = 600, seed: int = 0) -> pa.Table:
    """A binary target that is logistic in ten numeric features: a linear model's home ground."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 10))
    logit = x @ rng.normal(0, 0.8, 10)
    y = rng.random(rows) < 1 / (1 + np.exp(-logit))
    return pa.table({**{f"x{i}": x[:, i] for i in range(10)}, "y": np.where(y, "yes", "no")})


def test_the_linear_booster_is_an_arm_and_wins_on_a_linear_table(tmp_path, ray_cluster):
    h = make_harness(tmp_path, tables=("linear",))
    table = h.put("linear", linear_table())
    out = tune(h.ctx, TuneInput(table=table, target="y", num_trials=8, max_rounds=200, search="random",
                                scheduler="fifo", seed=0))
    # validation logloss: lower is better
    best = {b: min(t["metric"] for t in out.trials if t["params"]["booster"] == b) for b in ("gbtree", "gblinear")}
    assert best["gblinear"] < best["gbtree"]
    assert out.best_params["booster"] == "gblinear" and out.model.params["booster"] == "gblinear"
    assert "max_depth" not in out.model.params and "max_depth" not in out.best_params  # a linear model has no trees
    cv = evaluate(h.ctx, EvaluateInput(model=out.model, table=table, folds=3))
    assert cv.cv_metrics["auc"] > 0.85 and cv.threshold is not None
