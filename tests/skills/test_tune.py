"""tune on real churn data with a real local Ray cluster: ASHA + TPE, FIFO + random, budgets, multi-worker trials."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ml_fixtures import ID, make_harness

from skills.library.tune import TuneInput, search_space, tune

pytestmark = pytest.mark.ray

CHURN = {"target": "churn", "exclude": [ID]}


def test_asha_with_tpe_stops_weak_trials_and_retrains_the_best(tmp_path, ray_cluster):
    h = make_harness(tmp_path)
    out = tune(h.ctx, TuneInput(table=h.table(), num_trials=6, max_rounds=40, seed=1, **CHURN))
    assert len(out.trials) == len({t["trial_id"] for t in out.trials}) == 6
    assert any(t["stopped_early"] for t in out.trials)  # ASHA cut some trials at a rung
    assert all(t["rounds"] == 40 for t in out.trials if not t["stopped_early"])
    assert set(out.best_params) == set(search_space())
    best = max(out.trials, key=lambda t: t["metric"])
    assert out.best_params == best["params"]
    # the retrained model is the best trial's model: same params, split and data, so the same learning curve
    every = 40 // 20
    reported = [out.model.history["auc"][every * (i + 1) - 1] for i in range(len(best["history"]))
                if every * (i + 1) <= len(out.model.history["auc"])]
    assert reported and reported == pytest.approx(best["history"][: len(reported)], abs=1e-9)
    for key in ("eta", "max_depth", "subsample"):
        assert out.model.params[key] == best["params"][key]
    retrain_rounds = len(out.model.history["auc"])
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
    assert "error" not in trial and trial["rounds"] == 10 and trial["metric"] > 0.75
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
        assert trial["rounds"] == 4 and trial["metric"] is not None and trial["metric"] > 0.6
