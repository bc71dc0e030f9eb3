"""Production scoring for every caller (`agentml score`, `POST /v1/runs/{id}/score`): a registered model
(`service.model_versions`) applied to the rows of a table the principal may read.

`score_model` checks what it can before anything runs (the run and its model exist, the table has the columns the
model needs, governance accepts the query as this principal), then runs a one-step plan with the `score` skill
through the executor, as the principal: the scoring run is recorded in the run store like any other run, its reads
are audited, and its scores are a Parquet artifact of that run.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from sqlglot import exp
from sqlglot.errors import SqlglotError

from governance import AgentmlError, Category, PolicyViolation
from service.model_versions import ModelVersion, get_version
from skills.plan import Plan, Step

if TYPE_CHECKING:
    from executor import RunResult
    from service.session import SessionEnv

SCORE_STEP = "score"


class ScoreError(AgentmlError):
    """A scoring request that cannot be served as asked (bad table, columns, WHERE clause)."""

    code = "bad_score_request"


class ScoreFailed(AgentmlError):
    """The scoring run started but failed."""

    category: ClassVar[Category] = "run_failed"
    code = "score_failed"


class ScoreRequest(BaseModel):
    """Which rows to score: a table the principal may read, optionally filtered and limited."""

    model_config = ConfigDict(extra="forbid")
    table: str | None = Field(default=None, max_length=200, description="table to score (default: the table the "
                              "model was trained on)")
    where: str | None = Field(default=None, max_length=2000, description="SQL condition on the table's rows")
    limit: int | None = Field(default=None, ge=1, le=100_000_000, description="score at most this many rows")


class ScoreResult(BaseModel):
    """What a scoring run produced."""

    model_config = ConfigDict(extra="forbid")
    run_id: str = Field(description="the scoring run (in the run store, like any run)")
    model_run_id: str = Field(description="the run whose model scored the rows")
    model_name: str
    model_version: int
    table: str
    rows: int
    scores: str = Field(description="artifact URI of the scores (Parquet)")
    preview: list[dict[str, Any]] = Field(default_factory=list, description="the first rows: id, score, "
                                          "prediction, reasons")


def _table_name(version: ModelVersion, request: ScoreRequest) -> str:
    table = request.table or version.data.table
    if not table:
        raise ScoreError("the model's training rows come from a query over several tables, so there is no default "
                         "table to score", hint="name the table to score (--table / `table`)")
    return table


def _catalog_columns(catalog: Mapping[str, Mapping[str, str]], table: str) -> dict[str, str]:
    found = next((cols for name, cols in catalog.items() if name.lower() == table.lower()), None)
    if found is None:  # a missing and a denied table get the same refusal
        raise PolicyViolation(f"table {table!r} does not exist or you may not read it",
                              hint="score a table of the catalog you can see (agentml catalog)")
    return dict(found)


def needed_columns(version: ModelVersion) -> list[str]:
    """Columns the table to score must have: the model's features that no feature spec computes, and every base
    column a spec reads."""
    computed = {str(s.get("name")) for s in version.data.specs}
    operands = [str(s[k]) for s in version.data.specs if "table" not in s
                for k in ("left", "right", "column", "value") if s.get(k)]
    return list(dict.fromkeys([*(f for f in version.features if f not in computed),
                               *(o for o in operands if o not in computed)]))


def check_columns(version: ModelVersion, table: str, columns: Mapping[str, str]) -> None:
    """A ScoreError naming every column the model needs that the table (as the principal sees it) lacks."""
    have = {c.lower() for c in columns}
    missing = [c for c in needed_columns(version) if c.lower() not in have]
    if missing:
        raise ScoreError(f"table {table!r} lacks column(s) the model needs: {', '.join(missing)}",
                         hint=f"score a table with the columns the model was trained on (model {version.name} "
                              f"v{version.version} reads {', '.join(needed_columns(version))})", missing=missing)


def scoring_sql(table: str, where: str | None, limit: int | None) -> str:
    """`SELECT * FROM "table" [WHERE where] [LIMIT limit]`, built as a tree (the table name quoted)."""
    query = exp.select("*").from_(exp.to_table(exp.to_identifier(table, quoted=True).sql(dialect="duckdb")))
    if where:
        try:
            condition = exp.condition(where, dialect="duckdb")
        except SqlglotError as exc:
            raise ScoreError(f"the WHERE condition does not parse: {str(exc).splitlines()[0]}",
                             hint="write one SQL condition, e.g. tenure < 12 AND contract = 'Month-to-month'") from None
        query = query.where(condition)
    if limit:
        query = query.limit(limit)
    return query.sql(dialect="duckdb")


def score_plan(version: ModelVersion, sql: str) -> Plan:
    """The one-step plan that scores the rows of `sql` with `version`'s model and feature specs."""
    data = version.data
    inputs: dict[str, Any] = {"model": version.model, "sql": sql, "key": data.key}
    if data.specs:
        inputs.update(specs=data.specs, cutoff=data.cutoff)
    return Plan(goal=f"score with model {version.name} v{version.version} (run {version.run_id})",
                steps=[Step(id=SCORE_STEP, skill="score", inputs=inputs, description="score rows with their "
                            "top reasons")],
                metadata={"scoring": {"model_run_id": version.run_id, "name": version.name,
                                      "version": version.version}})


def _raise_failure(run: RunResult) -> None:
    step = run.steps.get(SCORE_STEP)
    message = step.error if step is not None and step.error else run.error or f"the scoring run {run.status}"
    hint = step.hint if step is not None else None
    if step is not None and step.error_type == "PolicyViolation":
        raise PolicyViolation(message, hint=hint)
    raise ScoreFailed(f"scoring run {run.id} {run.status}: {message}", hint=hint, run_id=run.id)


def score_model(env: SessionEnv, model_run_id: str, request: ScoreRequest,
                catalog: Mapping[str, Mapping[str, str]] | None = None) -> ScoreResult:
    """Score the rows `request` names with the model run `model_run_id` registered, as `env.principal`."""
    env.store.get_run(model_run_id)  # RunNotFound first: an unknown run is not a run without a model
    version = get_version(env.artifacts, model_run_id)
    table = _table_name(version, request)
    catalog = env.engine.catalog(env.principal) if catalog is None else catalog
    check_columns(version, table, _catalog_columns(catalog, table))
    sql = scoring_sql(table, request.where, request.limit)
    env.engine.rewrite(sql, env.principal)  # governance refuses a denied column before a run is recorded
    run = env.run(score_plan(version, sql))
    if run.status != "succeeded":
        _raise_failure(run)
    out = run.steps[SCORE_STEP].outputs or {}
    return ScoreResult(run_id=run.id, model_run_id=model_run_id, model_name=version.name,
                       model_version=version.version, table=table, rows=int(out.get("rows", 0)),
                       scores=out["scores"]["uri"], preview=list(out.get("preview") or []))
