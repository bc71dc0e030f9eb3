"""score: governed rows in, a Parquet table of scores with each row's top SHAP reasons out; binary, multiclass and
regression models; the model's feature specs are computed over the new rows; missing columns are refused. Real
governance, real xgboost, in process (the Ray Data path runs in the CLI's scoring test)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from ml_fixtures import ID, make_harness
from multiclass_fixtures import FLOWER_ID, SPECIES, flowers, harness

from skills import SkillError
from skills.feature_specs import ArithmeticSpec
from skills.library.score import ScoreInput, score
from skills.library.train_xgboost import TrainInput, train_xgboost

FAST = {"num_rounds": 30, "early_stopping_rounds": 10, "params": {"eta": 0.3, "max_depth": 3}}
CHURN_FEATURES = ["tenure", "monthly_charges", "contract", "internet_service", "charge_per_month"]
SPEC = ArithmeticSpec(kind="ratio", name="charge_per_month", left="total_charges", right="tenure")


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    """A binary churn model trained on a feature spec (charge_per_month = total_charges / tenure)."""
    h = make_harness(tmp_path_factory.mktemp("score"), tables=("wa_churn",))
    h.table()
    from skills.library.features import FeaturesInput, features

    table = features(h.step("features").ctx, FeaturesInput(base_sql="SELECT * FROM wa_churn", key=ID,
                                                           specs=[SPEC])).table
    model = train_xgboost(h.step("train").ctx, TrainInput(table=table, target="churn", features=CHURN_FEATURES,
                                                          **FAST)).model
    return h, model


def _scores(h, out) -> pa.Table:
    return h.ctx.artifacts.dataset(out.scores.uri).to_table()


def test_binary_scores_with_each_rows_top_reasons(churn):
    h, model = churn
    out = score(h.step("score").ctx, ScoreInput(model=model, sql=f"SELECT * FROM wa_churn WHERE {ID} <= 400",
                                                key=ID, specs=[SPEC]))
    table = _scores(h, out)
    assert out.rows == table.num_rows == 400 and sorted(table.column(ID).to_pylist()) == list(range(1, 401))
    assert out.scores.uri.endswith("/score/scores") and len(out.preview) == 10
    first = out.preview[0]
    assert set(first) == {ID, "score", "prediction", "reasons"} and 0 <= first["score"] <= 1
    assert first["prediction"] == (model.classes[1] if first["score"] >= 0.5 else model.classes[0])
    reasons = first["reasons"]
    assert len(reasons) == 3 and {r["feature"] for r in reasons} <= set(CHURN_FEATURES)
    assert [abs(r["contribution"]) for r in reasons] == sorted((abs(r["contribution"]) for r in reasons),
                                                               reverse=True)
    # each reason carries the row's own value of the feature
    row = h.ctx.sql(f"SELECT * FROM wa_churn WHERE {ID} = {first[ID]}").to_pylist()[0]
    shown = {r["feature"]: r["value"] for r in reasons if r["feature"] in row}
    assert shown and all(value == str(row[name]) for name, value in shown.items())


def test_multiclass_gives_the_predicted_class_and_its_reasons(tmp_path):
    h = harness(tmp_path)
    model = train_xgboost(h.ctx, TrainInput(table=h.put("flowers", flowers(), key=FLOWER_ID), target="species",
                                            features=["petal_length", "petal_width", "sepal_width"], **FAST)).model
    out = score(h.step("score").ctx, ScoreInput(model=model, sql="SELECT * FROM flowers", key=FLOWER_ID, top_k=2))
    table = _scores(h, out).sort_by(FLOWER_ID)
    truth = flowers().column("species").to_pylist()
    predicted = table.column("prediction").to_pylist()
    assert set(predicted) <= set(SPECIES) and np.mean([p == t for p, t in zip(predicted, truth, strict=True)]) > 0.7
    assert all(1 / 3 <= s <= 1 for s in table.column("score").to_pylist())  # the predicted class's probability
    assert all(len(r) == 2 for r in table.column("reasons").to_pylist())


def test_regression_scores_are_predicted_values(tmp_path):
    h = make_harness(tmp_path, tables=("wa_churn",))
    model = train_xgboost(h.ctx, TrainInput(table=h.table(limit=1500), target="monthly_charges",
                                            features=["internet_service", "phone_service", "streaming_tv"],
                                            **FAST)).model
    out = score(h.step("score").ctx, ScoreInput(model=model, sql=f"SELECT * FROM wa_churn WHERE {ID} > 7000",
                                                key=ID))
    table = _scores(h, out)
    assert table.num_rows == 43 and all(p is None for p in table.column("prediction").to_pylist())
    assert 15 < float(np.mean(table.column("score").to_numpy())) < 120


def test_rows_without_the_models_columns_are_refused(churn):
    h, model = churn
    with pytest.raises(SkillError) as err:
        score(h.step("score").ctx, ScoreInput(model=model, sql=f"SELECT {ID}, tenure, contract FROM wa_churn",
                                              key=ID))
    assert "monthly_charges" in err.value.message and "lack column" in err.value.message
