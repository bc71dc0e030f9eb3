"""train_xgboost on real churn data: in process and on a real local Ray cluster, with identical results."""
from __future__ import annotations

import time

import numpy as np
import pyarrow.compute as pc
import pytest
import xgboost as xgb
from ml_fixtures import ID, make_harness

from skills import SkillError, spec_of
from skills.library.boosting.data import holdout_split
from skills.library.boosting.saved_model import load_booster
from skills.library.train_xgboost import TrainInput, train_xgboost

CHURN = {"target": "churn", "exclude": [ID]}


def load(harness, uri: str) -> xgb.Booster:
    return load_booster(harness.ctx.artifacts, uri)


def test_classification_in_process_on_wa_churn(tmp_path):
    h = make_harness(tmp_path)
    table = h.table()
    out = train_xgboost(h.ctx, TrainInput(table=table, num_rounds=300, **CHURN))
    model = out.model
    assert model.task == "classification" and model.target == "churn"
    assert ID not in model.features and "churn" not in model.features and "contract" in model.features
    assert model.categories["contract"] == ["Month-to-month", "One year", "Two year"]
    assert set(out.metrics) == {"auc", "pr_auc", "logloss", "accuracy", "f1"} and out.metrics == model.metrics
    assert model.threshold is not None and 0 < model.threshold < 1  # chosen on the validation rows
    assert out.metrics["auc"] > 0.82  # 5-fold AUC of xgboost on this data is 0.842
    # early stopping: 20 rounds without improvement after the best one, model saved at its best round
    rounds_run = len(model.history["logloss"])
    assert rounds_run < 300 and rounds_run == model.best_iteration + 1 + 20
    assert model.num_rounds == model.best_iteration + 1 == load(h, model.uri).num_boosted_rounds()
    # early stopping and the saved round follow the validation loss; AUC is the headline
    assert out.metrics["logloss"] == pytest.approx(min(model.history["logloss"]), abs=1e-5)
    assert "device" not in model.params and "nthread" not in model.params  # hardware choices are not the model's
    rounds = [e.done for e in h.progress("rounds")]
    assert rounds == sorted(rounds) and rounds[-1] == rounds_run


def test_regression_in_process(tmp_path):
    h = make_harness(tmp_path)
    out = train_xgboost(h.ctx, TrainInput(table=h.table(), target="monthly_charges",
                                          exclude=[ID, "total_charges"], num_rounds=80, early_stopping_rounds=0))
    assert out.model.task == "regression"
    assert set(out.metrics) == {"rmse", "mae", "r2"}
    assert out.metrics["r2"] > 0.9  # the services a customer has explain the monthly charge
    assert len(out.model.history["rmse"]) == 80  # no early stopping asked for: every round runs


def test_holdout_split_is_stratified_and_deterministic():
    y = np.r_[np.ones(100), np.zeros(900)].astype(np.float32)
    train, valid = holdout_split(y, "classification", 0.2, seed=3)
    again = holdout_split(y, "classification", 0.2, seed=3)
    other = holdout_split(y, "classification", 0.2, seed=4)
    assert np.array_equal(valid, again[1]) and not np.array_equal(valid, other[1])
    assert len(np.intersect1d(train, valid)) == 0 and len(train) + len(valid) == 1000
    assert y[valid].sum() == 20 and len(valid) == 200  # the positive rate is kept exactly


@pytest.mark.parametrize(("change", "message"), [
    ({"target": "no_such_column"}, "target column"),
    ({"features": ["tenure", "no_such_column"]}, "feature columns not in the table"),
    ({"params": {"max_depth": -3}}, "xgboost refused"),
    ({"params": {"monotone_constraints": [1, 0]}}, "number or a string"),
])
def test_bad_requests_say_how_to_fix_them(tmp_path, change, message):
    h = make_harness(tmp_path)
    with pytest.raises(SkillError, match=message) as err:
        train_xgboost(h.ctx, TrainInput(table=h.table(limit=500), num_rounds=5, **{**CHURN, **change}))
    assert err.value.hint


def test_a_single_class_target_is_refused(tmp_path):
    h = make_harness(tmp_path)
    table = h.table(limit=300)
    data = h.ctx.artifacts.get_table(table.uri)
    uri = h.ctx.artifacts.put_table("one-class.parquet", data.filter(pc.equal(data.column("churn"), "No")))
    with pytest.raises(SkillError, match="single class"):
        train_xgboost(h.ctx, TrainInput(table=table.model_copy(update={"uri": uri}), num_rounds=5, **CHURN))


def test_registered_with_ray_and_a_round_cost():
    spec = spec_of(train_xgboost)
    assert spec.uses_ray and spec.cost is not None
    assert spec.cost(TrainInput.model_validate({"table": {"uri": "x", "rows": 1, "columns": []}, "target": "y",
                                                "num_rounds": 77})) == 77


@pytest.mark.ray
def test_on_ray_train_equals_in_process(tmp_path, ray_cluster):
    local = make_harness(tmp_path / "local")
    on_ray = make_harness(tmp_path / "ray", compute="ray")
    request = dict(num_rounds=60, early_stopping_rounds=10, params={"eta": 0.2, "max_depth": 4}, **CHURN)
    expected = train_xgboost(local.ctx, TrainInput(table=local.table(), **request)).model
    started = time.perf_counter()
    got = train_xgboost(on_ray.ctx, TrainInput(table=on_ray.table(), **request)).model
    step_seconds = time.perf_counter() - started
    # same params, split, data encoding and early stopping: the same model, round for round
    assert got.num_rounds == expected.num_rounds and got.best_iteration == expected.best_iteration
    np.testing.assert_allclose(got.history["auc"], expected.history["auc"], rtol=0, atol=1e-9)
    assert got.metrics == pytest.approx(expected.metrics, abs=1e-9)
    rounds = on_ray.progress("rounds")  # relayed from the training worker
    assert rounds and rounds[-1].done == len(got.history["auc"])
    for model in (expected, got):  # the boosting rounds' own time, carried through the checkpoint on Ray
        assert model.boost_seconds is not None and model.boost_seconds > 0
    assert got.boost_seconds < step_seconds  # Ray Train's startup and the data loading are not boosting
    store = on_ray.ctx.artifacts.local_path(on_ray.ctx.key("checkpoints"))
    assert any(p.name.startswith("checkpoint_") for p in store.rglob("checkpoint_*"))  # checkpoints in the store
