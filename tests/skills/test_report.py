"""report: a self-contained HTML file with inline SVG plots; all text escaped; nothing an analyst may not see."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from analysis_fixtures import (
    ADMIN,
    ANALYST,
    CANARY_SSN,
    customers_frame,
    make_ctx,
    make_engine,
    planted_churn,
    planted_model,
    train_model,
)
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

from skills import Plan
from skills.frame import build_frame
from skills.library.explain import ExplainInput, explain
from skills.library.features import FeaturesInput, features
from skills.library.query import QueryInput, query
from skills.library.report import ReportInput, report
from skills.library.residuals import ResidualsInput, residuals

HOSTILE = '<script>alert("x")</script>'
EXTERNAL = re.compile(r"""<script|<link|<iframe|<img|@import|url\(\s*['"]?http|(?:src|href)\s*=\s*["'](?!#)""", re.I)


def real_trials(frame, n_valid: int = 1500) -> list[dict]:
    """Four real xgboost runs with per-round validation AUC; two cut short as ASHA would."""
    train = xgb.DMatrix(frame.X[n_valid:], frame.y[n_valid:], feature_types=frame.feature_types,
                        enable_categorical=True)
    valid = xgb.DMatrix(frame.X[:n_valid], frame.y[:n_valid], feature_types=frame.feature_types,
                        enable_categorical=True)
    trials = []
    for i, depth in enumerate([2, 3, 6, 8]):
        params = {"objective": "binary:logistic", "eval_metric": "auc", "max_depth": depth, "eta": 0.2,
                  "nthread": 2}
        history: dict = {}
        rounds = 30 if i < 2 else 8  # the deep trees get stopped early
        xgb.train(params, train, rounds, evals=[(valid, "valid")], evals_result=history, verbose_eval=False)
        auc = history["valid"]["auc"]
        trials.append({"trial_id": f"t{i}", "params": {"max_depth": depth}, "rounds": rounds, "metric": auc[-1],
                       "history": auc, "stopped_early": i >= 2})
    return trials


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    ctx = make_ctx(make_engine(customers_frame(50)), ADMIN, tmp_path_factory.mktemp("report"), step="report")
    model, table = planted_model(ctx.artifacts, planted_churn())
    frame = build_frame(ctx.artifacts.get_table(table.uri), model.features, model.target, model.task,
                        categories=model.categories)
    booster = xgb.Booster()
    booster.load_model(bytearray(ctx.artifacts.get_bytes(model.uri)))
    p = booster.predict(frame.dmatrix())
    fpr, tpr, _ = roc_curve(frame.y, p)
    precision, recall, _ = precision_recall_curve(frame.y, p)
    curves = {"roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
              "pr": {"precision": precision.tolist(), "recall": recall.tolist()}}
    return {"ctx": ctx, "model": model, "curves": curves, "auc": float(roc_auc_score(frame.y, p)),
            "explained": explain(ctx, ExplainInput(model=model, table=table)),
            "residuals": residuals(ctx, ResidualsInput(model=model, table=table)), "trials": real_trials(frame)}


def full_input(a: dict, **overrides) -> ReportInput:
    iterations = [
        {"iteration": 1, "candidates": [{"kind": "window", "name": "avg_spend_90d"}, {"name": "tenure_ratio"}],
         "scores": [0.851, 0.842], "accepted": True, "why": f"+0.006 AUC, paired test p=0.01 {HOSTILE}"},
        {"iteration": 2, "candidates": [{"name": "lag_1"}], "scores": [0.850], "accepted": False,
         "why": "no significant gain"},
    ]
    plan = Plan(goal="Why are users leaving?", steps=[
        {"id": "q", "skill": "query", "inputs": {"sql": "SELECT * FROM customers", "key": "customer_id"}},
        {"id": "x", "skill": "explain", "inputs": {"model": {"$ref": "train.model"}, "table": {"$ref": "q.table"}}},
    ])
    values = dict(title=f"Churn {HOSTILE}", model=a["model"], metrics={"auc": a["auc"], "logloss": 0.41},
                  importance=a["explained"].importance, drivers=a["explained"].drivers, trials=a["trials"],
                  slices=a["residuals"].slices, overall_error=a["residuals"].overall_error, iterations=iterations,
                  curves=a["curves"], plan=plan, steps=[{"id": "q", "status": "succeeded", "seconds": 0.4}])
    return ReportInput(**{**values, **overrides})


def test_full_report_has_every_plot_and_section(analysis):
    ctx = analysis["ctx"]
    out = report(ctx, full_input(analysis))
    assert out.path is not None and out.path.endswith("report.html") and out.uri.startswith("file://")
    doc = ctx.artifacts.get_bytes(out.uri).decode()
    assert doc == Path(out.path).read_text(encoding="utf-8")
    assert doc.count("<svg") == 5  # importance, ROC, PR, learning curves, residual slices
    for text in ("ROC curve", "Precision-recall curve", "Feature importance", "stopped early", "Residual slices",
                 "Improvement loop", "avg_spend_90d", "Plan and steps", "← train.model", "Month-to-month contract",
                 f"{analysis['auc']:.4g}"):
        assert text in doc, text
    assert "Tuning trials: 2 ran to the end, 2 stopped early" in doc
    assert not EXTERNAL.search(doc)  # self-contained: no scripts, stylesheets, images or links to fetch


def test_every_text_is_escaped(analysis):
    a = analysis
    drivers = [d.model_copy(update={"feature": HOSTILE, "summary": HOSTILE}) for d in a["explained"].drivers]
    slices = [s.model_copy(update={"slice": HOSTILE}) for s in a["residuals"].slices]
    out = report(a["ctx"], full_input(a, drivers=drivers, importance=None, slices=slices, notes=HOSTILE))
    doc = a["ctx"].artifacts.get_bytes(out.uri).decode()
    assert "<script" not in doc
    assert doc.count("&lt;script&gt;") >= 5  # title, note, driver, slice, iteration reason (and SVG text)


def test_minimal_and_regression_reports(analysis, tmp_path):
    ctx = make_ctx(analysis["ctx"].engine, ADMIN, tmp_path, step="r")
    doc = ctx.artifacts.get_bytes(report(ctx, ReportInput(title="Just a title")).uri).decode()
    assert "<h1>Just a title</h1>" in doc and "<svg" not in doc
    rng = np.random.default_rng(0)
    actual = rng.normal(100, 20, 200)
    predicted = actual + rng.normal(0, 5, 200)
    curves = {"predicted_vs_actual": {"actual": actual.tolist(), "predicted": predicted.tolist()}}
    doc = ctx.artifacts.get_bytes(report(ctx, ReportInput(title="r", curves=curves, metric_name="rmse",
                                                          metric_value=5.1)).uri).decode()
    assert "Predicted vs actual" in doc and doc.count("<svg") == 1 and "rmse" in doc


def test_report_never_shows_what_the_analyst_may_not_see(tmp_path):
    """query -> features -> train -> explain -> residuals -> report as an analyst who may not see ssn/card_number."""
    engine = make_engine(customers_frame(1200))
    ctx = make_ctx(engine, ANALYST, tmp_path, step="q")
    admin_cols = query(make_ctx(engine, ADMIN, tmp_path, step="a"), QueryInput(sql="SELECT * FROM customers"))
    assert "ssn" in admin_cols.table.columns  # the column exists; only the analyst may not see it
    spec = {"kind": "window", "name": "avg_bill_90d", "table": "billing", "key": "customer_id", "time": "month",
            "column": "amount", "window_days": 90}
    feats = features(ctx.for_step("f"), FeaturesInput(base_sql="SELECT * FROM customers", key="customer_id",
                                                      specs=[spec], cutoff="as_of"))
    table = ctx.artifacts.get_table(feats.table.uri)
    assert "ssn" not in table.column_names
    names = [c for c in table.column_names if c not in ("customer_id", "churn", "as_of", "region")]
    model = train_model(ctx.artifacts, "test/train/model.json", table, "churn", names)
    explained = explain(ctx.for_step("x"), ExplainInput(model=model, table=feats.table))
    slices = residuals(ctx.for_step("r"), ResidualsInput(model=model, table=feats.table, min_count=10))
    plan = Plan(goal="Build a churn model", steps=[
        {"id": "q", "skill": "query", "inputs": {"sql": "SELECT * FROM customers"}}])
    out = report(ctx.for_step("report"), ReportInput(
        title="Churn (analyst)", model=model, importance=explained.importance, drivers=explained.drivers,
        slices=slices.slices, overall_error=slices.overall_error, plan=plan))
    doc = ctx.artifacts.get_bytes(out.uri).decode()
    assert "avg_bill_90d" in doc and doc.count("<svg") == 2
    for secret in ("ssn", CANARY_SSN, "card_number", "4000-0"):
        assert secret not in doc.lower(), secret


def test_ooda_candidates_are_drawn_with_the_accepted_one_highlighted(analysis):
    # the rows `service.session.iteration_rows` writes: one per candidate group and iteration
    rows = [{"iteration": 1, "candidates": "billing_amount_spread", "score": 0.9092, "accepted": True},
            {"iteration": 1, "candidates": "billing_amount_avg", "score": 0.8897, "accepted": False},
            {"iteration": 2, "candidates": "ratios_tenure", "score": None, "accepted": False}]
    ctx = analysis["ctx"]
    doc = ctx.artifacts.get_bytes(report(ctx, ReportInput(title="t", iterations=rows)).uri).decode()
    svg = doc[doc.index("<svg"):doc.index("</svg>")]
    assert "Feature race" in svg and doc.count("<svg") == 1
    assert "1: billing_amount_spread" in doc and "1: billing_amount_avg" in doc
    assert "2: ratios_tenure" not in svg  # no score, no bar
    assert svg.count("fill: #c05621") == 1 and svg.count("fill: #2b6cb0") == 1  # accepted orange, the other blue


def test_columns_left_out_are_listed_with_their_reasons_only_when_given():
    from skills.library.report import render

    doc = render(ReportInput(title="t", excluded=[{"column": "<b>id</b>", "reason": "identifier: 3 distinct of 3 rows"},
                                                  {"column": "hired_on", "reason": "time column (DATE)"}]))
    assert "<h2>Columns left out</h2>" in doc and "&lt;b&gt;id&lt;/b&gt;" in doc
    assert "identifier: 3 distinct of 3 rows" in doc and "time column (DATE)" in doc
    assert "Columns left out" not in render(ReportInput(title="t"))
