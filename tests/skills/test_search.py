"""The search space fitted to the table, early-stopping patience for the learning rate, and the decision threshold
chosen on the validation rows (a generated imbalanced table where 0.5 predicts no positive)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from ml_fixtures import make_harness

from skills.library.boosting.metrics import best_threshold, score
from skills.library.boosting.params import for_booster, from_search, model_params, patience_for
from skills.library.boosting.search import (
    SearchPlan,
    eta_range,
    grace_period,
    positive_rate,
    search_space,
    start_points,
    trial_rounds,
)
from skills.library.evaluate import VALIDATION, EvaluateInput, evaluate, holdout_predictions
from skills.library.train_xgboost import TrainInput, train_xgboost


def _domain(space: dict, name: str) -> tuple[float, float]:
    return space[name].lower, space[name].upper


def test_a_small_table_searches_slow_learners_regularisation_and_the_linear_booster():
    plan = SearchPlan(rows=1_500, rounds=trial_rounds(1_500, 1000), task="classification", positive_rate=0.05)
    space = search_space(plan)
    assert plan.rounds == 1000 and _domain(space, "eta") == (0.005, 0.3)
    assert {"lambda", "alpha", "min_child_weight", "gamma", "colsample_bytree", "subsample", "max_bin"} <= set(space)
    assert space["booster"].categories == ["gbtree", "gblinear"]
    assert (space["max_depth"].lower, space["max_depth"].upper) == (1, 7)  # exclusive upper: stumps..6 when small
    ratio = 0.95 / 0.05
    assert space["scale_pos_weight"].categories == [1.0, round(ratio**0.5, 3), round(ratio, 3)]


def test_a_large_table_gets_fewer_rounds_and_a_learning_rate_that_can_finish():
    assert [trial_rounds(rows, 1000) for rows in (500, 2_000, 2_001, 50_000, 5_000_000)] == [1000, 1000, 500, 300, 200]
    assert trial_rounds(500, 40) == 40  # the plan's budget per trial is a cap
    low, _ = eta_range(trial_rounds(5_000_000, 1000))
    assert low * 200 >= 4.0 and low == 0.02
    space = search_space(SearchPlan(rows=5_000_000, rounds=200, task="classification", positive_rate=0.4,
                                    linear=False))
    assert "scale_pos_weight" not in space  # balanced classes
    assert space["booster"].categories == ["gbtree"]  # categorical features: xgboost's linear booster refuses them
    assert "scale_pos_weight" not in search_space(SearchPlan(rows=100, rounds=100, task="regression"))


def test_the_portfolio_is_tried_first_as_complete_points_inside_the_space():
    plan = SearchPlan(rows=5_000_000, rounds=200, task="classification", positive_rate=0.05, linear=False)
    space, points = search_space(plan), start_points(plan, num_trials=12)
    assert len(points) == 4 and all(set(p) == set(space) for p in points)  # a searcher needs every parameter
    low, high = eta_range(plan.rounds)
    for point in points:
        assert low <= point["eta"] <= high and point["booster"] == "gbtree" and point["scale_pos_weight"] == 1.0
        for name in ("min_child_weight", "gamma", "subsample", "colsample_bytree", "lambda", "alpha"):
            assert space[name].lower <= point[name] <= space[name].upper, name
        assert point["max_bin"] in space["max_bin"].categories
    assert points[0]["eta"] == 0.3 and points[0]["max_depth"] == 6  # xgboost's defaults first
    assert points[1]["max_depth"] == 1 and points[1]["eta"] == 0.05  # slow stumps
    # the searcher keeps a trial of its own; a budget of 2 trials is all portfolio
    assert len(start_points(plan, 3)) == 2 and len(start_points(plan, 2)) == 2 and len(start_points(plan, 1)) == 1


def test_patience_grows_as_the_learning_rate_falls_and_the_first_rung_is_a_quarter_of_the_rounds():
    assert [patience_for(20, {"eta": eta}) for eta in (0.3, 0.1, 0.05, 0.01)] == [20, 20, 40, 200]
    assert patience_for(0, {"eta": 0.01}) == 0 and patience_for(20, {}) == 20
    assert grace_period(1000, 50) == 250 and grace_period(40, 2) == 10 and grace_period(8, 4) == 4


def test_a_linear_model_keeps_no_tree_parameters():
    params = model_params("classification", 0, {"booster": "gblinear", "eta": 0.2, "max_depth": 4, "lambda": 1.0,
                                                "max_bin": 64, "scale_pos_weight": 3.0})
    assert "max_depth" not in params and "tree_method" not in params and "max_bin" not in params
    assert params["lambda"] == 1.0 and params["scale_pos_weight"] == 3.0 and params["eta"] == 0.5  # LINEAR_ETA
    assert for_booster({"max_depth": 4}) == {"max_depth": 4} and for_booster(params) == params  # idempotent
    # a searched linear configuration: L1/L2 scaled once to a linear booster's (row-normalised) penalties
    drawn = from_search({"booster": "gblinear", "lambda": 2.0, "alpha": 0.5, "eta": 0.01, "max_depth": 3})
    assert drawn == {"booster": "gblinear", "lambda": 0.02, "alpha": 0.005, "eta": 0.5}
    assert from_search({"booster": "gbtree", "lambda": 2.0}) == {"booster": "gbtree", "lambda": 2.0}


def test_positive_rate_is_for_binary_labels_only():
    assert positive_rate(np.array([0.0, 1.0, 0.0, 0.0]), "classification") == 0.25
    assert positive_rate(np.array([0.0, 1.0, 2.0]), "classification") is None
    assert positive_rate(np.array([0.0, 1.0]), "regression") is None


# ------------------------------------------------------------------------------ decision threshold


def imbalanced(rows: int = 4000, seed: int = 0) -> pa.Table:
    """~5% positives with a weak signal: no probability gets near 0.5, so the 0.5 threshold predicts no positive."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    logit = -3.6 + 0.9 * x[:, 0] + 0.5 * x[:, 1]
    y = rng.random(rows) < 1 / (1 + np.exp(-logit))
    return pa.table({**{f"x{i}": x[:, i] for i in range(4)}, "y": np.where(y, "yes", "no")})


def test_the_threshold_is_chosen_on_the_validation_rows_where_0_5_predicts_nothing(tmp_path):
    h = make_harness(tmp_path, tables=("rare",))
    table = h.put("rare", imbalanced())
    data = h.ctx.artifacts.get_table(table.uri)
    assert 0.03 < np.mean(np.asarray(data.column("y").to_pylist()) == "yes") < 0.07
    model = train_xgboost(h.ctx, TrainInput(table=table, target="y", num_rounds=100,
                                            params={"eta": 0.05, "max_depth": 3})).model
    y, p = holdout_predictions(h.ctx, model, data)  # the validation rows
    assert p.max() < 0.5 and score("classification", y, p, threshold=0.5)["f1"] == 0.0
    assert model.threshold == pytest.approx(best_threshold(y, p), abs=1e-6) and model.threshold < p.max()
    assert model.metrics["f1"] == pytest.approx(score("classification", y, p, threshold=model.threshold)["f1"])
    assert model.metrics["f1"] > 0.15 and model.metrics["pr_auc"] > np.mean(y)  # better than chance
    out = evaluate(h.ctx, EvaluateInput(model=model, table=table, folds=5))
    assert out.threshold == model.threshold and out.metrics_protocol == VALIDATION
    assert out.protocol == "5-fold stratified CV, seed 0" and out.metric_value == out.cv_metrics["auc"]
    assert out.cv_metrics["f1"] > 0.1  # the folds predict positives at the model's threshold
