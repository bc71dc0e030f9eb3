"""evaluate and cross_validate on real churn data; metric code checked against scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
from ml_fixtures import ID, churn_data, make_harness
from pydantic import ValidationError
from sklearn import metrics as skm

from skills import SkillError
from skills.library.boosting.data import fold_ids
from skills.library.boosting.metrics import best_threshold, pr_points, roc_points, score
from skills.library.boosting.saved_model import load_booster
from skills.library.boosting.tasks import RayTasks, StoredTable, reader
from skills.library.evaluate import EvaluateInput, cross_validate, evaluate, fold_spec, run_folds
from skills.library.train_xgboost import TrainInput, train_xgboost

FEATURES = ["tenure", "contract", "monthly_charges", "internet_service", "payment_method", "senior_citizen"]
PARAMS = {"eta": 0.1, "max_depth": 3}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    h = make_harness(tmp_path_factory.mktemp("evaluate"))
    table = h.table()
    model = train_xgboost(h.ctx, TrainInput(table=table, target="churn", exclude=[ID], num_rounds=150,
                                            params=PARAMS)).model
    return h, table, model


def test_holdout_is_the_models_validation_split(trained):
    h, table, model = trained
    out = evaluate(h.step("evaluate").ctx, EvaluateInput(model=model, table=table, folds=3))
    assert out.metrics == pytest.approx(model.metrics, abs=1e-9)  # same rows, same model
    assert out.metrics_protocol == "validation (used for tuning)" and out.threshold == model.threshold
    # the headline is cross-validated and says how; the validation rows chose rounds and threshold
    assert out.metric_name == "auc" and out.metric_value == out.cv_metrics["auc"]
    assert out.protocol == "3-fold stratified CV, seed 0"
    assert len(out.cv_folds) == 3 and set(out.cv_metrics) == {"auc", "pr_auc", "logloss", "accuracy", "f1"}
    assert out.cv_metrics["auc"] == pytest.approx(np.mean([f["auc"] for f in out.cv_folds]))
    assert 0.8 < out.cv_metrics["auc"] < 0.9
    roc = out.curves["roc"]
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(roc["tpr"]) >= 0) and len(roc["fpr"]) <= 101
    assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(out.metrics["auc"], abs=0.01)
    assert out.curves["pr"]["recall"][-1] == 1.0
    assert out.curves["learning_curve"]["values"] == model.history["logloss"]
    assert [e.done for e in h.progress("folds")][-3:] == [1, 2, 3]


def test_a_new_table_is_scored_on_every_row(trained):
    h, _, model = trained
    fresh = h.table(limit=1500)  # other rows count: new data, all of it held out
    out = evaluate(h.ctx, EvaluateInput(model=model, table=fresh, folds=0))
    data = h.ctx.artifacts.get_table(fresh.uri)
    from skills.frame import build_frame

    frame = build_frame(data, model.features, "churn", "classification", model.categories)
    pred = load_booster(h.ctx.artifacts, model.uri).predict(frame.dmatrix())
    assert out.metrics["auc"] == pytest.approx(skm.roc_auc_score(frame.y, pred), abs=1e-9)
    assert out.cv_folds == [] and out.cv_metrics == {}
    assert out.metrics_protocol == out.protocol == "new table (1500 rows)" and out.metric_value == out.metrics["auc"]


def test_cross_validate_is_deterministic_and_stratified():
    table = churn_data("wa_churn")
    def run(seed: int) -> list[dict[str, float]]:
        return cross_validate(table, FEATURES, "churn", "classification", PARAMS, 40, folds=4, seed=seed)

    first, again, other = run(7), run(7), run(8)
    assert first == again and first != other and len(first) == 4
    assert all(0.78 < fold["auc"] < 0.9 for fold in first)
    y = (np.asarray(table.column("churn").to_pylist()) == "Yes").astype(np.float32)
    ids = fold_ids(y, "classification", 4, seed=7)
    rates = [y[ids == k].mean() for k in range(4)]
    assert max(rates) - min(rates) < 0.002  # every fold keeps the churn rate
    assert sorted(np.bincount(ids)) == [1760, 1761, 1761, 1761]


def test_regression_metrics_and_scatter(tmp_path):
    h = make_harness(tmp_path)
    table = h.table()
    model = train_xgboost(h.ctx, TrainInput(table=table, target="tenure", exclude=[ID, "total_charges"],
                                            num_rounds=60)).model
    out = evaluate(h.ctx, EvaluateInput(model=model, table=table, folds=2))
    assert out.metric_name == "rmse" and set(out.metrics) == {"rmse", "mae", "r2"}
    scatter = out.curves["predicted_vs_actual"]
    assert len(scatter["actual"]) == len(scatter["predicted"]) == 500
    assert out.cv_metrics["rmse"] > 0


def test_one_fold_is_refused():
    with pytest.raises(ValidationError, match="at least 2 folds"):
        EvaluateInput.model_validate({"model": {"uri": "m", "task": "regression", "target": "y", "features": []},
                                      "table": {"uri": "t", "rows": 1, "columns": []}, "folds": 1})


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.3).astype(float)
    p = np.clip(0.25 + 0.3 * y + rng.normal(0, 0.2, 2000), 0.001, 0.999).round(2)  # ties on purpose
    got = score("classification", y, p)
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert got["logloss"] == pytest.approx(skm.log_loss(y, p))
    assert got["f1"] == pytest.approx(skm.f1_score(y, p >= 0.5))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5))
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y, p))
    at = score("classification", y, p, threshold=0.4)
    assert at["f1"] == pytest.approx(skm.f1_score(y, p >= 0.4)) and at["auc"] == got["auc"]
    # the chosen threshold's F1 is the best F1 of any threshold
    t = best_threshold(y, p)
    assert skm.f1_score(y, p >= t) == pytest.approx(max(skm.f1_score(y, p >= c) for c in np.unique(p)))
    t = rng.normal(size=500)
    pred = t + rng.normal(0, 0.5, 500)
    reg = score("regression", t, pred)
    assert reg["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(t, pred)))
    assert reg["mae"] == pytest.approx(skm.mean_absolute_error(t, pred))
    assert reg["r2"] == pytest.approx(skm.r2_score(t, pred))
    fpr, tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    roc = roc_points(y, p, max_points=10_000)
    np.testing.assert_allclose(roc["fpr"], fpr)
    np.testing.assert_allclose(roc["tpr"], tpr)
    precision, recall, _ = skm.precision_recall_curve(y, p, drop_intermediate=False)
    pr = pr_points(y, p, max_points=10_000)
    np.testing.assert_allclose(pr["recall"][1:], recall[::-1][1:])  # sklearn: recall falling, ours rising
    np.testing.assert_allclose(pr["precision"][1:], precision[::-1][1:])


# ------------------------------------------------------------------------------------ folds as Ray tasks


def test_folds_on_ray_tasks_equal_the_folds_in_process(trained, ray_cluster):
    """Same spec (nthread fixed), two executors: identical per-fold metrics; each task reads the table itself."""
    h, table, model = trained
    source = StoredTable(h.ctx.artifacts, table.uri)
    spec = fold_spec(model.features, "churn", "classification", model.params, 40, 3, seed=5,
                     categories=model.categories, nthread=1)
    here = run_folds(spec, reader(source, spec.columns), None)
    done: list[int] = []
    there = run_folds(spec, reader(source, spec.columns), RayTasks(cpus=1, concurrency=2),
                      on_fold=lambda k, _: done.append(k))
    assert there == here and len(here) == 3 and sorted(done) == [0, 1, 2]


def test_evaluate_on_ray_reads_no_rows_in_the_driver_and_matches_local(trained, ray_cluster, monkeypatch):
    h, table, model = trained
    local = evaluate(h.ctx, EvaluateInput(model=model, table=table, folds=3))
    ray_h = make_harness(h.ctx.artifacts.local_path("").parent, compute="ray")  # same store, Ray up
    monkeypatch.setattr(StoredTable, "read", lambda *_: pytest.fail("the driver read rows"))
    on_ray = evaluate(ray_h.ctx, EvaluateInput(model=model, table=table, folds=3))
    assert len(on_ray.cv_folds) == 3
    assert all(a == pytest.approx(b, abs=1e-9) for a, b in zip(on_ray.cv_folds, local.cv_folds, strict=True))
    assert on_ray.metrics == pytest.approx(local.metrics, abs=1e-9) and on_ray.curves == local.curves
    assert sorted(e.done for e in ray_h.progress("folds")) == [1, 2, 3]
    assert "Ray task" in ray_h.progress("rows")[0].message


@pytest.mark.parametrize("compute", ["local", "ray"])
def test_a_failed_fold_is_a_skill_error_naming_the_fold(trained, ray_cluster, compute):
    h, table, model = trained
    bad = model.model_copy(update={"params": {**model.params, "max_depth": -3}})
    ctx = make_harness(h.ctx.artifacts.local_path("").parent, compute=compute).ctx
    with pytest.raises(SkillError, match=r"cross-validation fold [123] of 3 failed: xgboost refused") as info:
        evaluate(ctx, EvaluateInput(model=bad, table=table, folds=3))
    assert "Traceback" not in str(info.value) and info.value.hint
