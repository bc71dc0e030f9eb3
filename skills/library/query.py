"""`query`: governed SQL in, a Parquet table artifact out. The SQL analysis it relies on is in `skills.sql`.

A small result is read in one piece and written as one Parquet file. A large one (more rows than
`settings.rows_per_shard`, with Ray up) never passes through the process that runs the step: Ray tasks each read one
shard of the governed result straight from the warehouse (`governance.Shard`: disjoint parts by a hash of the entity
key, computed in the warehouse) and write it as one Parquet part of the artifact `<run>/<step>/table/`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from sqlglot import exp

from governance import AgentmlError
from skills.context import RuntimeSettings, SkillContext
from skills.errors import SkillError
from skills.registry import skill
from skills.sql import DIALECT, Reads, cap_rows, merge_reads, parse_sql, sql_reads
from skills.types import TableArtifact

if TYPE_CHECKING:
    from governance import AuditRecord, Engine, Principal, Shard
    from skills.artifacts import ArtifactStore

__all__ = ["DIALECT", "QueryInput", "QueryOutput", "Reads", "merge_reads", "query", "query_reads", "save_table",
           "sql_reads"]


class QueryInput(BaseModel):
    """A read-only SQL query over the warehouse, as the principal sees it."""

    model_config = ConfigDict(extra="forbid")
    sql: str = Field(description="one SELECT statement (DuckDB dialect); governance rewrites it")
    key: str | None = Field(default=None, description="entity key column of the result, if any")


class QueryOutput(BaseModel):
    """The governed result, saved as Parquet."""

    model_config = ConfigDict(extra="forbid")
    table: TableArtifact
    sql: str
    rows: int


def query_reads(inp: QueryInput) -> Reads:
    """`reads=` hook for the planner."""
    return sql_reads(inp.sql)


def _check_key(columns: list[str], key: str | None, skill_name: str) -> None:
    if key is not None and key not in columns:
        raise SkillError(f"key column {key!r} is not in the result", skill=skill_name,
                         hint=f"select it, or pass one of: {', '.join(columns)}")


def save_table(ctx: SkillContext, table: pa.Table, name: str, key: str | None, skill_name: str) -> TableArtifact:
    """Write a governed result as Parquet under this step's key; check the entity key column is there."""
    _check_key(table.column_names, key, skill_name)
    uri = ctx.artifacts.put_table(ctx.key(name), table)
    return TableArtifact(uri=uri, rows=table.num_rows, columns=table.column_names, key=key)


# ----------------------------------------------------------------------------------------------------- shards


@dataclass(frozen=True)
class ShardRead:
    """What one shard task wrote: its rows and columns (the rows themselves stay in the artifact store), and the
    audit records of its governed query, for the driver's audit log."""

    index: int
    rows: int
    columns: list[str]
    audit: list[AuditRecord]


def read_shard(engine: Engine, principal: Principal, sql: str, shard: Shard, artifacts: ArtifactStore,
               key: str) -> ShardRead:
    """One Ray task: read `shard` of the governed result of `sql` and write it as the Parquet part `key`. The task's
    copy of the engine audits into memory and hands the records back: the driver's log may be in memory, or a file
    on another node."""
    from governance import AuditLog

    engine.audit = AuditLog()
    try:
        table = engine.query(sql, principal, shard=shard)
    except AgentmlError as exc:
        raise ShardFailed(exc, engine.audit.records(limit=None)) from None
    artifacts.put_table(key, table)
    return ShardRead(shard.index, table.num_rows, table.column_names, engine.audit.records(limit=None))


class ShardFailed(Exception):
    """A shard's governed query failed: its error and audit records, back to the driver."""

    def __init__(self, error: AgentmlError, audit: list[AuditRecord]) -> None:
        super().__init__(error.message)
        self.error, self.audit = error, audit

    def __reduce__(self) -> tuple[Any, ...]:  # Ray pickles it back to the driver
        return (ShardFailed, (self.error, self.audit))


def count_rows(ctx: SkillContext, sql: str) -> int:
    """Rows of the governed result of `sql`, counted in the warehouse (one governed, audited query)."""
    counted = exp.select(exp.Count(this=exp.Star()).as_("n")).from_(parse_sql(sql).subquery("q"))
    return int(ctx.sql(counted.sql(dialect=DIALECT)).column(0)[0].as_py())


def shard_count(rows: int, settings: RuntimeSettings) -> int:
    """How many shards to read `rows` rows in: about `rows_per_shard` each, at most `max_read_shards`."""
    return max(1, min(math.ceil(rows / settings.rows_per_shard), settings.max_read_shards))


def _keep_audit(ctx: SkillContext, records: list[AuditRecord]) -> None:
    """A shard task's audit records, into the driver's audit log."""
    for record in records:
        ctx.engine.audit.add(record)


def read_sharded(ctx: SkillContext, sql: str, key: str | None, shards: int, rows: int, name: str,
                 skill_name: str) -> TableArtifact:
    """Ray tasks read the governed result in `shards` parts into `<step>/<name>/part-NNNNN.parquet`."""
    import ray

    from governance import Shard

    task = ray.remote(num_cpus=1, max_retries=2)(read_shard)
    engine = ray.put(ctx.engine)
    pending = [task.remote(engine, ctx.principal, sql, Shard(i, shards, key), ctx.artifacts,
                           ctx.key(f"{name}/part-{i:05d}.parquet")) for i in range(shards)]
    done: list[ShardRead] = []
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            done.append(ray.get(ready[0]))
            _keep_audit(ctx, done[-1].audit)
            read = sum(d.rows for d in done)
            ctx.progress(f"read {len(done)}/{shards} shards ({read} rows)", done=read, total=rows, unit="rows")
    except ray.exceptions.RayTaskError as exc:  # the shard's own error (a policy refusal, a query error), not Ray's
        cause = exc.cause
        if isinstance(cause, ShardFailed):
            _keep_audit(ctx, cause.audit)
            raise cause.error from None
        raise SkillError(f"reading a shard of the governed result failed ({type(cause).__name__})",
                         skill=skill_name, hint="see the step's log; the step can be retried") from exc
    finally:
        for ref in pending:  # one shard failed: the others stop too
            ray.cancel(ref)
    columns = done[0].columns
    _check_key(columns, key, skill_name)
    return TableArtifact(uri=ctx.artifacts.uri(ctx.key(name)), rows=sum(d.rows for d in done), columns=columns,
                         key=key)


def save_governed(ctx: SkillContext, sql: str, *, name: str, key: str | None, skill_name: str) -> TableArtifact:
    """The governed result of `sql` saved as this step's table `name`: one Parquet file (`<name>.parquet`), or, when
    Ray is up and the result has more than `settings.rows_per_shard` rows, Parquet parts under `<name>/` written by
    Ray tasks that each read one shard. `settings.max_rows` caps the result (and so reads it in one piece)."""
    if ctx.settings.max_rows is not None:
        sql = cap_rows(parse_sql(sql, skill_name=skill_name), ctx.settings.max_rows).sql(dialect=DIALECT)
    elif ctx.settings.compute == "ray":
        ctx.progress("counting the rows of the governed result", done=0, unit="rows")
        rows = count_rows(ctx, sql)
        shards = shard_count(rows, ctx.settings)
        if shards > 1:
            ctx.progress(f"reading {rows} rows in {shards} shards", done=0, total=rows, unit="rows")
            return read_sharded(ctx, sql, key, shards, rows, name, skill_name)
    table = ctx.sql(sql)
    return save_table(ctx, table, f"{name}.parquet", key, skill_name)


@skill("query", reads=query_reads, tags=("data",))
def query(ctx: SkillContext, inp: QueryInput) -> QueryOutput:
    """Run one read-only SQL SELECT on the warehouse through governance (row filters, column masks and denials of
    the principal apply) and save the result as a table for later steps. Use `key` to name the entity id column."""
    ctx.progress("running governed query", done=0, unit="rows")
    artifact = save_governed(ctx, inp.sql, name="table", key=inp.key, skill_name="query")
    ctx.progress(f"read {artifact.rows} rows, {len(artifact.columns)} columns", done=artifact.rows,
                 total=artifact.rows, unit="rows")
    return QueryOutput(table=artifact, sql=inp.sql, rows=artifact.rows)
