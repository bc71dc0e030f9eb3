"""All task types: a three-class target trains softprob and is evaluated, explained and sliced; `positive` names the
level a binary model predicts; targets that cannot be learned get a clear error. Generated tables, real governance,
real xgboost (in process: these skills run the same code on Ray tasks, covered by their own tests)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from multiclass_fixtures import FLOWER_ID, SPECIES, flowers, harness, loans
from sklearn import metrics as skm

from skills import SkillError
from skills.frame import MAX_CLASSES, encode_target, target_classes
from skills.library.boosting.metrics import score
from skills.library.evaluate import EvaluateInput, evaluate
from skills.library.explain import ExplainInput, explain
from skills.library.report import ReportInput, render
from skills.library.residuals import ResidualsInput, residuals
from skills.library.train_xgboost import TrainInput, train_xgboost
from skills.library.tune import TuneInput, tune

FEATURES = ["petal_length", "petal_width", "sepal_width"]
FAST = {"num_rounds": 40, "early_stopping_rounds": 10, "params": {"eta": 0.3, "max_depth": 3}}


@pytest.fixture(scope="module")
def species(tmp_path_factory):
    h = harness(tmp_path_factory.mktemp("multiclass"))
    table = h.put("flowers", flowers(), key=FLOWER_ID)
    model = train_xgboost(h.ctx, TrainInput(table=table, target="species", features=FEATURES, **FAST)).model
    return h, table, model


def test_three_classes_train_softprob_with_their_levels(species):
    _, _, model = species
    assert model.task == "classification" and model.multiclass and model.positive is None
    assert model.classes == list(SPECIES)
    assert model.params["objective"] == "multi:softprob" and model.params["num_class"] == 3
    assert {"auc", "mlogloss", "accuracy", "f1"} <= set(model.metrics) and "logloss" not in model.metrics
    assert model.metrics["auc"] > 0.85 and model.metrics["mlogloss"] < np.log(3)  # better than guessing
    assert "mlogloss" in model.history and len(model.history["auc"]) >= model.best_iteration + 1


def test_multiclass_evaluation_is_stratified_and_has_no_roc(species):
    h, table, model = species
    out = evaluate(h.ctx.for_step("evaluate"), EvaluateInput(model=model, table=table, folds=3))
    assert out.metric_name == "auc" and out.metric_value > 0.85
    assert out.cv_metrics["auc"] > 0.85 and out.cv_metrics["mlogloss"] < 0.8
    assert len(out.cv_folds) == 3 and all(f["auc"] > 0.8 for f in out.cv_folds)
    assert "roc" not in out.curves and "pr" not in out.curves
    shares = out.curves["classes"]
    assert shares["levels"] == list(SPECIES) and sum(shares["share"]) == pytest.approx(1.0)
    html = render(ReportInput(title="Which species", model=model, metrics=out.metrics, curves=out.curves))
    assert "3 classes" in html and "setosa, versicolor, virginica" in html and "share predicted" in html


def test_multiclass_drivers_name_the_class_they_move(species):
    h, table, model = species
    out = explain(h.ctx.for_step("explain"), ExplainInput(model=model, table=table, top_k=3, sample_rows=500))
    ranked = [f.feature for f in out.importance]
    assert ranked[-1] == "sepal_width"  # noise comes last
    top = out.drivers[0]
    assert top.feature in ("petal_length", "petal_width") and top.target_class in SPECIES
    # a longer petal means virginica and not setosa (versicolor sits in between: no single direction to check)
    if top.target_class != "versicolor":
        assert top.direction == ("decreases" if top.target_class == "setosa" else "increases")
    assert top.summary.endswith(f"the chance that species is {top.target_class}")


def test_multiclass_residuals_find_the_noisy_site(species):
    h, table, model = species
    out = residuals(h.ctx.for_step("residuals"), ResidualsInput(model=model, table=table, min_count=50))
    assert out.error_name == "miss" and 0.0 < out.overall_error < 0.5
    worst = out.slices[0]
    assert (worst.column, worst.slice, worst.in_model) == ("site", "marsh", False) and worst.lift > 1.3


def test_multiclass_metrics_match_scikit_learn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, size=300)
    p = rng.dirichlet(np.ones(4), size=300) + np.eye(4)[y] * 0.5
    p /= p.sum(axis=1, keepdims=True)
    got = score("classification", y, p)
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert got["mlogloss"] == pytest.approx(skm.log_loss(y, p))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p.argmax(axis=1)))
    assert got["f1"] == pytest.approx(skm.f1_score(y, p.argmax(axis=1), average="macro"))


# ------------------------------------------------------------------------------------------------ the positive level


def test_positive_flips_the_label_and_the_drivers(tmp_path):
    h = harness(tmp_path)
    table = h.put("loans", loans(), key="loan_id")
    request = {"table": table, "target": "status", "exclude": ["loan_id"], **FAST}
    default = train_xgboost(h.ctx, TrainInput(**request)).model
    flipped = train_xgboost(h.ctx.for_step("flipped"), TrainInput(**request, positive="BAD")).model
    assert (default.classes, default.positive) == (["bad", "good"], "good")  # neither is a yes word: the last
    assert (flipped.classes, flipped.positive) == (["good", "bad"], "bad")
    # the same validation rows whichever level is positive (splits do not depend on the coding): the same AUC
    assert abs(default.metrics["auc"] - flipped.metrics["auc"]) < 0.01 and flipped.metrics["auc"] > 0.8

    def income(model):
        out = explain(h.ctx.for_step("explain"), ExplainInput(model=model, table=table, sample_rows=500))
        return next(d for d in out.drivers if d.feature == "income")

    good, bad = income(default), income(flipped)
    assert good.summary == "Higher income increases the chance that status is good"
    assert bad.summary == "Higher income decreases the chance that status is bad"
    cv = [evaluate(h.ctx.for_step("evaluate"), EvaluateInput(model=m, table=table, folds=3)).cv_metrics["auc"]
          for m in (default, flipped)]
    assert abs(cv[0] - cv[1]) < 0.01
    assert "status = bad" in render(ReportInput(title="Bad loans", model=flipped))


def test_positive_on_a_multiclass_target_is_that_class_against_the_rest():
    column = pa.chunked_array([["setosa", "virginica", "versicolor", "virginica"]])
    classes = target_classes({"setosa": 1, "virginica": 2, "versicolor": 1}, positive="Virginica")
    assert classes == ["not virginica", "virginica"]
    assert encode_target(column, "classification", classes).tolist() == [0.0, 1.0, 0.0, 1.0]


# ------------------------------------------------------------------------------------------------ bad targets


def _bad(h, data: pa.Table, **request) -> SkillError:
    table = h.put("odd", data)
    with pytest.raises(SkillError) as err:
        train_xgboost(h.ctx, TrainInput(table=table, num_rounds=5, **request))
    assert err.value.hint
    return err.value


def test_targets_that_cannot_be_learned_say_why_and_how_to_fix_it(tmp_path):
    h = harness(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    one = _bad(h, pa.table({"x": x, "y": ["yes"] * 200}), target="y")
    assert "single class" in one.message and "'yes' in all 200 rows" in one.message
    empty = _bad(h, pa.table({"x": x, "y": pa.array([None] * 200, pa.string())}), target="y")
    assert "all 200 rows are missing" in empty.message
    ids = _bad(h, pa.table({"x": x, "y": [f"user-{i}" for i in range(200)]}), target="y")
    assert "looks like an identifier" in ids.message and "200 distinct values in 200 rows" in ids.message
    assert "regression" in ids.hint
    many = _bad(h, pa.table({"x": x, "y": [f"c{i % 60}" for i in range(200)]}), target="y")
    assert f"60 classes, more than the {MAX_CLASSES}" in many.message and "group" in many.hint
    unknown = _bad(h, pa.table({"x": x, "y": rng.choice(["a", "b"], size=200)}), target="y", positive="c")
    assert "'c' is not a value of the target" in unknown.message and "a, b" in unknown.hint
    numeric = _bad(h, pa.table({"x": x, "y": x * 2}), target="y", task="regression", positive="1")
    assert "only applies to classification" in numeric.message


# ------------------------------------------------------------------------------------------------ on Ray


@pytest.mark.ray
def test_tune_searches_a_multiclass_model_on_mlogloss_and_retrains_it_on_ray_train(tmp_path, ray_cluster):
    h = harness(tmp_path, compute="ray")
    table = h.put("flowers", flowers(), key=FLOWER_ID)
    out = tune(h.ctx, TuneInput(table=table, target="species", features=FEATURES, num_trials=2, max_rounds=30,
                                search="random", scheduler="fifo", seed=0))
    assert out.model.classes == list(SPECIES) and out.model.params["objective"] == "multi:softprob"
    metrics = [t["metric"] for t in out.trials]
    assert all(0.0 < m < np.log(3) for m in metrics)  # each trial's best validation mlogloss
    assert out.best_params == min(out.trials, key=lambda t: t["metric"])["params"]  # lower is better
    assert out.model.metrics["auc"] > 0.85 and out.model.metrics["mlogloss"] < 0.8


@pytest.mark.ray
def test_a_streamed_multiclass_table_trains_on_ray(tmp_path, ray_cluster):
    h = harness(tmp_path, compute="ray", stream_rows=100)  # 600 rows: streamed in Ray Data batches
    table = h.put("flowers", flowers(), key=FLOWER_ID)
    model = train_xgboost(h.ctx, TrainInput(table=table, target="species", features=FEATURES, **FAST)).model
    assert model.classes == list(SPECIES) and model.multiclass
    assert model.metrics["auc"] > 0.85 and model.metrics["mlogloss"] < 0.8
