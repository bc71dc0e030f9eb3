"""The demo warehouse: deterministic, documented, history strictly before the cutoff, PII hidden from the analyst."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from governance import Engine, PolicyViolation, Principal, load_policies
from service.demo import AS_OF, REGIONS, build_warehouse

ANALYST = Principal(user="ann", roles=["analyst"], attributes={"region": "north"})
ADMIN = Principal(user="root", roles=["admin"])


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory):
    return build_warehouse(tmp_path_factory.mktemp("demo") / "wh")


@pytest.fixture(scope="module")
def engine(warehouse) -> Engine:
    return Engine.from_warehouse(warehouse.root, load_policies(warehouse.policies), threads=1)


def test_same_seed_same_bytes(warehouse, tmp_path: Path) -> None:
    again = build_warehouse(tmp_path / "again")
    for name in ("customers.parquet", "billing.parquet", "policies.yaml"):
        assert (again.root / name).read_bytes() == (warehouse.root / name).read_bytes(), name


def test_another_seed_other_synthetic_columns(warehouse, tmp_path: Path) -> None:
    other = pq.read_table(build_warehouse(tmp_path / "other", seed=1).customers)
    ours = pq.read_table(warehouse.customers)
    assert other.column("churn").equals(ours.column("churn"))  # the real data does not change
    assert not other.column("name").equals(ours.column("name"))


def test_customers_are_the_real_churn_table_plus_synthetic_columns(warehouse) -> None:
    customers = pq.read_table(warehouse.customers)
    assert customers.num_rows == 7043
    assert pc.count_distinct(customers.column("customer_id")).as_py() == 7043
    assert {"name", "email", "region", "as_of", "churn", "tenure", "monthly_charges"} <= set(customers.column_names)
    assert set(customers.column("region").to_pylist()) == set(REGIONS)
    assert all(e.endswith("@example.com") for e in customers.column("email").to_pylist())
    assert customers.column("churn").to_pylist().count("Yes") == 1869


def test_billing_is_monthly_history_strictly_before_the_cutoff(warehouse) -> None:
    customers, billing = pq.read_table(warehouse.customers), pq.read_table(warehouse.billing)
    assert max(billing.column("month").to_pylist()) < AS_OF
    per_customer = dict(zip(*np.unique(billing.column("customer_id").to_numpy(), return_counts=True), strict=True))
    tenure = dict(zip(customers.column("customer_id").to_pylist(), customers.column("tenure").to_pylist(),
                      strict=True))
    assert all(per_customer.get(cid, 0) == t for cid, t in tenure.items())
    assert set(billing.column("late_payment").to_pylist()) == {0, 1}


def test_planted_signals_are_there_and_modest(warehouse) -> None:
    """Churners' recent bills rose more and scattered more; both effects are partial, not labels in disguise."""
    eng = Engine.from_warehouse(warehouse.root, load_policies(warehouse.policies), threads=1)
    rows = eng.query("""
        SELECT c.churn, c.payment_method,
               avg(CASE WHEN b.month >= DATE '2023-10-01' THEN b.amount END) / avg(b.amount) AS recent_ratio,
               stddev(CASE WHEN b.month >= DATE '2023-07-01' THEN b.amount / c.monthly_charges END) AS spread,
               avg(b.late_payment) AS late_rate
        FROM customers c JOIN billing b ON b.customer_id = c.customer_id
        WHERE c.tenure >= 12 GROUP BY c.customer_id, c.churn, c.payment_method""", ADMIN).to_pandas()
    by = rows.groupby("churn").mean(numeric_only=True)
    assert by.loc["Yes", "recent_ratio"] > by.loc["No", "recent_ratio"] + 0.02
    assert by.loc["Yes", "spread"] > 1.5 * by.loc["No", "spread"]
    typical = rows.spread[rows.churn == "No"].quantile(0.9)
    erratic = (rows.spread[rows.churn == "Yes"] > typical).mean()
    assert 0.3 < erratic < 0.8, erratic  # many churners look like everyone else: a signal, not the label
    late = rows.groupby("payment_method").late_rate.mean()  # late payments follow the real payment method only
    assert late.loc["Electronic check"] > 2 * late.drop("Electronic check").max()


def test_analyst_sees_no_pii_and_one_region(engine: Engine) -> None:
    catalog = engine.catalog(ANALYST)
    assert "name" not in catalog["customers"]
    rows = engine.query("SELECT email, region FROM customers", ANALYST)
    assert set(rows.column("email").to_pylist()) == {"***@example.com"}
    assert set(rows.column("region").to_pylist()) == {"north"}
    assert set(engine.query("SELECT DISTINCT region FROM billing", ANALYST).column("region").to_pylist()) == {"north"}
    with pytest.raises(PolicyViolation):
        engine.query("SELECT name FROM customers", ANALYST)


def test_admin_sees_everything(engine: Engine) -> None:
    rows = engine.query("SELECT name, email, region FROM customers", ADMIN)
    assert rows.num_rows == 7043
    assert len(set(rows.column("email").to_pylist())) == 7043
    assert set(rows.column("region").to_pylist()) == set(REGIONS)
