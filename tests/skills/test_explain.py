"""explain: SHAP via pred_contribs finds a planted driver and the real drivers of telco churn, with directions."""
from __future__ import annotations

import pytest
from analysis_fixtures import ADMIN, customers_frame, make_ctx, make_engine, planted_churn, planted_model

from skills import SkillError
from skills.library.explain import ExplainInput, explain, summary_line


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    ctx = make_ctx(make_engine(customers_frame(50)), ADMIN, root, step="explain")
    model, table = planted_model(ctx.artifacts, planted_churn())
    return ctx, model, table


def test_planted_driver_comes_first_with_its_direction(setup):
    ctx, model, table = setup
    out = explain(ctx, ExplainInput(model=model, table=table, sample_rows=1500))
    top = out.drivers[0]
    assert (top.feature, top.direction) == ("engagement", "decreases")  # planted: low engagement <=> churn
    assert top.summary == "Higher engagement decreases churn risk"
    assert top.importance > 2 * out.drivers[1].importance
    assert out.rows == 1500
    assert [f.importance for f in out.importance] == sorted((f.importance for f in out.importance), reverse=True)
    assert {f.feature for f in out.importance} == set(model.features)


def test_real_drivers_of_churn_have_the_known_directions(setup):
    ctx, model, table = setup
    drivers = {d.feature: d for d in explain(ctx, ExplainInput(model=model, table=table, top_k=6)).drivers}
    assert len(drivers) == 6
    contract = drivers["contract"]
    assert (contract.direction, contract.level) == ("increases", "Month-to-month")
    assert contract.summary == "Month-to-month contract increases churn risk"
    assert drivers["tenure"].direction == "decreases"  # long-standing customers churn less
    events = ctx.on_progress.events
    assert events[-1].unit == "rows" and events[-1].done == events[-1].total == 2000  # the default sample


def test_regression_wording_and_direction(tmp_path):
    df = customers_frame(1500).dropna(subset=["total_charges"])
    ctx = make_ctx(make_engine(customers_frame(20)), ADMIN, tmp_path)
    model, table = planted_model(ctx.artifacts, df, target="total_charges", task="regression")
    top = explain(ctx, ExplainInput(model=model, table=table, top_k=2)).drivers
    assert top[0].feature == "tenure" and top[0].summary == "Higher tenure increases predicted total charges"


def test_summary_lines():
    assert summary_line("online_security", "increases", "No", "churn", "classification") == \
        "Online security = No increases churn risk"
    assert summary_line("senior_citizen", "increases", None, "churn", "classification", binary=True) == \
        "Senior citizen = 1 increases churn risk"
    assert summary_line("monthly_charges", "increases", None, "churn", "classification") == \
        "Higher monthly charges increase churn risk"


def test_table_without_the_model_features_is_refused(setup, tmp_path):
    ctx, model, _ = setup
    other = ctx.artifacts.put_table("other.parquet", ctx.sql("SELECT customer_id, tenure FROM customers"))
    from skills import TableArtifact

    with pytest.raises(SkillError, match="lacks column"):
        explain(ctx, ExplainInput(model=model, table=TableArtifact(uri=other, rows=50, columns=["customer_id",
                                                                                                "tenure"])))
