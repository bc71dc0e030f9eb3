"""Fixtures for the planner tests: a registry of I/O stand-ins, a governed engine over a small warehouse.

The stand-in skills have exactly the input/output types of CONTRACTS.md (the real `query` skill is used as is); their
bodies are never run: validation and planning only look at the types, `reads` and `cost`. Tests that need the real
library use `skills.load_registry()`.
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import pyarrow as pa
import pytest
from pydantic import BaseModel, ConfigDict, Field

from skills.context import SkillContext
from skills.registry import Registry, skill
from skills.types import ModelArtifact, TableArtifact, Task


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WindowSpec(_In):
    kind: Literal["window"]
    name: str
    table: str
    key: str
    time: str
    column: str
    agg: Literal["avg", "sum", "min", "max", "count", "stddev"]
    window_days: int = Field(gt=0)
    offset_days: int = 0


class LagSpec(_In):
    kind: Literal["lag"]
    name: str
    table: str
    key: str
    time: str
    column: str
    periods: int = Field(default=1, gt=0)


class TrendSpec(_In):
    kind: Literal["trend"]
    name: str
    table: str
    key: str
    time: str
    column: str
    window_days: int = 90


class ArithSpec(_In):
    kind: Literal["ratio", "difference", "sum", "product"]
    name: str
    left: str
    right: str


class EncodeSpec(_In):
    kind: Literal["encode"]
    name: str
    column: str
    method: Literal["frequency", "one_hot"]


FeatureSpec = Annotated[WindowSpec | LagSpec | TrendSpec | ArithSpec | EncodeSpec, Field(discriminator="kind")]


class FeaturesIn(_In):
    base_sql: str
    key: str
    specs: list[FeatureSpec]
    cutoff: str | None = None


class FeaturesOut(_In):
    table: TableArtifact
    features: list[str]


class TrainIn(_In):
    table: TableArtifact
    target: str
    task: Task | None = None
    features: list[str] | None = None
    exclude: list[str] = []
    params: dict[str, Any] = {}
    num_rounds: int = Field(default=200, ge=1)
    early_stopping_rounds: int = 20
    valid_fraction: float = 0.2
    num_workers: int | None = None


class TrainOut(_In):
    model: ModelArtifact
    metrics: dict[str, float]


class TuneIn(_In):
    table: TableArtifact
    target: str
    task: Task | None = None
    features: list[str] | None = None
    exclude: list[str] = []
    num_trials: int = Field(default=12, ge=1)
    max_rounds: int = Field(default=200, ge=1)
    search: Literal["optuna", "hyperopt", "random"] = "optuna"
    scheduler: Literal["asha", "fifo"] = "asha"
    time_budget_s: float | None = None
    seed: int = 0


class TuneOut(_In):
    model: ModelArtifact
    best_params: dict[str, Any]
    trials: list[dict[str, Any]]
    rounds_used: int


class EvaluateIn(_In):
    model: ModelArtifact
    table: TableArtifact
    folds: int = 5


class EvaluateOut(_In):
    metrics: dict[str, float]
    cv_metrics: dict[str, float]
    cv_folds: list[dict[str, float]]
    metric_name: str
    metric_value: float
    curves: dict[str, Any]


class ExplainIn(_In):
    model: ModelArtifact
    table: TableArtifact
    top_k: int = 10
    sample_rows: int = 2000


class ExplainOut(_In):
    importance: list[dict[str, Any]]
    drivers: list[dict[str, Any]]


class ResidualsIn(_In):
    model: ModelArtifact
    table: TableArtifact
    columns: list[str] | None = None
    top_k: int = 10
    min_count: int = 30


class ResidualsOut(_In):
    slices: list[dict[str, Any]]
    overall_error: float


class ReportIn(_In):
    title: str
    model: ModelArtifact | None = None
    metrics: dict[str, float] | None = None
    metric_name: str | None = None
    metric_value: float | None = None
    overall_error: float | None = None
    importance: list[dict[str, Any]] | None = None
    drivers: list[dict[str, Any]] | None = None
    trials: list[dict[str, Any]] | None = None
    slices: list[dict[str, Any]] | None = None
    iterations: list[dict[str, Any]] | None = None
    curves: dict[str, Any] | None = None


class ReportOut(_In):
    uri: str
    path: str | None = None


class ScoreIn(_In):
    model: ModelArtifact
    sql: str
    key: str | None = None
    specs: list[FeatureSpec] = []
    cutoff: str | None = None
    top_k: int = 3


class ScoreOut(_In):
    scores: TableArtifact
    rows: int
    preview: list[dict[str, Any]] = []


def _features_reads(inp: FeaturesIn) -> dict[str, set[str] | None]:
    out: dict[str, set[str] | None] = {}
    for spec in inp.specs:
        if isinstance(spec, dict):  # literal_input does not validate: specs may still be dicts
            table, cols = spec.get("table"), {spec.get(k) for k in ("key", "time", "column")} - {None}
        else:
            table, cols = getattr(spec, "table", None), {getattr(spec, k, None) for k in ("key", "time", "column")}
        if table:
            out.setdefault(table, set()).update(c for c in cols if c)  # type: ignore[union-attr]
    return out


def _unused(*_: Any) -> Any:
    raise AssertionError("stand-in skills are for planning and validation only")


def standin_registry(with_score: bool = False) -> Registry:
    """A private registry with the contract's I/O types (and the real `query` skill)."""
    from skills.library.query import query, query_reads

    reg = Registry()
    skill("query", reads=query_reads, registry=reg)(query)

    def features(ctx: SkillContext, inp: FeaturesIn) -> FeaturesOut:
        """Feature specs over related tables, compiled to one governed SQL statement."""
        return _unused(ctx, inp)

    def train_xgboost(ctx: SkillContext, inp: TrainIn) -> TrainOut:
        """Train one xgboost model."""
        return _unused(ctx, inp)

    def tune(ctx: SkillContext, inp: TuneIn) -> TuneOut:
        """Tune xgboost hyperparameters with Ray Tune."""
        return _unused(ctx, inp)

    def evaluate(ctx: SkillContext, inp: EvaluateIn) -> EvaluateOut:
        """Holdout and cross-validated metrics."""
        return _unused(ctx, inp)

    def explain(ctx: SkillContext, inp: ExplainIn) -> ExplainOut:
        """SHAP drivers."""
        return _unused(ctx, inp)

    def residuals(ctx: SkillContext, inp: ResidualsIn) -> ResidualsOut:
        """Worst error slices."""
        return _unused(ctx, inp)

    def report(ctx: SkillContext, inp: ReportIn) -> ReportOut:
        """HTML report."""
        return _unused(ctx, inp)

    def score(ctx: SkillContext, inp: ScoreIn) -> ScoreOut:
        """Score new rows with a trained model."""
        return _unused(ctx, inp)

    skill("features", reads=_features_reads, registry=reg)(features)
    skill("train_xgboost", cost=lambda i: i.num_rounds, registry=reg)(train_xgboost)
    skill("tune", uses_ray=True, cost=lambda i: i.num_trials * i.max_rounds, registry=reg)(tune)
    for fn in (evaluate, explain, residuals, report) + ((score,) if with_score else ()):
        skill(registry=reg)(fn)
    return reg


@pytest.fixture(scope="session")
def new_standin_registry() -> Any:
    """`standin_registry` itself, for tests that change a registry of their own (importing it from `conftest`
    would depend on which conftest module Python already holds)."""
    return standin_registry


@pytest.fixture(scope="session")
def registry() -> Registry:
    return standin_registry()


@pytest.fixture(scope="session")
def score_registry() -> Registry:
    return standin_registry(with_score=True)


# ---------------------------------------------------------------------------------------------------------------------
# A small governed warehouse: customers (entity, label at as_of), billing (monthly history), tickets (no time
# column), leads (new rows to score), hr_secrets (denied to analysts); ssn denied, email masked, rows filtered.

POLICIES = {
    "roles": ["analyst", "admin"],
    "tables": {
        "customers": {"allow": ["analyst", "admin"], "deny_columns": {"ssn": ["analyst"]},
                      "mask_columns": {"email": {"roles": ["analyst"], "using": "'***'"}},
                      "row_filters": [{"roles": ["analyst"], "using": "region = :region"}]},
        "billing": {"allow": ["analyst", "admin"],
                    "row_filters": [{"roles": ["analyst"], "using": "region = :region"}]},
        "tickets": {"allow": ["analyst", "admin"]},
        "new_customers": {"allow": ["analyst", "admin"], "deny_columns": {"ssn": ["analyst"]}},
        "hr_secrets": {"allow": ["admin"]},
    },
}


def _tables() -> dict[str, pa.Table]:
    n = 40
    ids = list(range(1, n + 1))
    regions = ["north" if i % 2 else "south" for i in ids]
    customers = pa.table({
        "customer_id": pa.array(ids, pa.int64()), "name": [f"c{i}" for i in ids],
        "email": [f"c{i}@x.org" for i in ids], "ssn": [f"000-00-{i:04d}" for i in ids], "region": regions,
        "as_of": pa.array([dt.date(2024, 1, 1)] * n, pa.date32()),
        "tenure": pa.array([i % 24 for i in ids], pa.int64()),
        "contract": ["monthly" if i % 3 else "yearly" for i in ids],
        "monthly_charges": pa.array([20.0 + i for i in ids]),
        "total_charges": pa.array([(20.0 + i) * (i % 24) for i in ids]),
        "senior_citizen": pa.array([i % 5 == 0 for i in ids]), "churn": ["Yes" if i % 4 == 0 else "No" for i in ids],
        "churn_reason": [("price" if i % 4 == 0 else None) for i in ids],
    })
    months = [dt.date(2023, m, 1) for m in range(1, 13)]
    billing = pa.table({
        "customer_id": pa.array([i for i in ids for _ in months], pa.int64()),
        "region": [r for r in regions for _ in months], "month": pa.array(months * n, pa.date32()),
        "amount": pa.array([20.0 + i + m.month for i in ids for m in months]),
        "late_payment": pa.array([int((i + m.month) % 7 == 0) for i in ids for m in months], pa.int32()),
    })
    tickets = pa.table({"ticket_id": pa.array(range(1, 21), pa.int64()),
                        "customer_id": pa.array([i % n + 1 for i in range(20)], pa.int64()),
                        "severity": pa.array([i % 3 for i in range(20)], pa.int64())})
    new_customers = customers.drop_columns(["churn", "churn_reason"]).slice(0, 5)
    hr = pa.table({"employee_id": pa.array([1, 2], pa.int64()), "salary": [1.0, 2.0]})
    return {"customers": customers, "billing": billing, "tickets": tickets, "new_customers": new_customers,
            "hr_secrets": hr}


@pytest.fixture(scope="session")
def governance_mod() -> Any:
    import governance

    return governance


def make_engine(governance_mod: Any, audit: Any = None) -> Any:
    """A real governed DuckDB engine over the small warehouse above."""
    eng = governance_mod.Engine(governance_mod.policies_from_dict(POLICIES), audit=audit, threads=1)
    for name, table in _tables().items():
        eng.register(name, table)
    return eng


@pytest.fixture(scope="session")
def engine(governance_mod: Any) -> Any:
    return make_engine(governance_mod)


@pytest.fixture()
def audited_engine(governance_mod: Any, tmp_path: Any) -> Any:
    """A fresh engine whose audit log is a JSON-lines file of this test only."""
    return make_engine(governance_mod, audit=tmp_path / "audit.jsonl")


@pytest.fixture(scope="session")
def analyst(governance_mod: Any) -> Any:
    return governance_mod.Principal(user="ann", roles=["analyst"], attributes={"region": "north"})


@pytest.fixture(scope="session")
def admin(governance_mod: Any) -> Any:
    return governance_mod.Principal(user="root", roles=["admin"])


@pytest.fixture(scope="session")
def catalog(engine: Any, analyst: Any) -> dict[str, dict[str, str]]:
    """What the analyst may see: no ssn, no hr_secrets."""
    return engine.catalog(analyst)
