"""`query`: governed SQL in, a Parquet table artifact out. The SQL analysis it relies on is in `skills.sql`."""
from __future__ import annotations

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from skills.context import SkillContext
from skills.errors import SkillError
from skills.registry import skill
from skills.sql import DIALECT, Reads, cap_rows, merge_reads, parse_sql, sql_reads
from skills.types import TableArtifact

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


def save_table(ctx: SkillContext, table: pa.Table, name: str, key: str | None, skill_name: str) -> TableArtifact:
    """Write a governed result as Parquet under this step's key; check the entity key column is there."""
    if key is not None and key not in table.column_names:
        raise SkillError(f"key column {key!r} is not in the result", skill=skill_name,
                         hint=f"select it, or pass one of: {', '.join(table.column_names)}")
    uri = ctx.artifacts.put_table(ctx.key(name), table)
    return TableArtifact(uri=uri, rows=table.num_rows, columns=table.column_names, key=key)


@skill("query", reads=query_reads, tags=("data",))
def query(ctx: SkillContext, inp: QueryInput) -> QueryOutput:
    """Run one read-only SQL SELECT on the warehouse through governance (row filters, column masks and denials of
    the principal apply) and save the result as a table for later steps. Use `key` to name the entity id column."""
    sql = cap_rows(parse_sql(inp.sql), ctx.settings.max_rows).sql(dialect=DIALECT) \
        if ctx.settings.max_rows is not None else inp.sql
    ctx.progress("running governed query", done=0, unit="rows")
    table = ctx.sql(sql)
    artifact = save_table(ctx, table, "table.parquet", inp.key, "query")
    ctx.progress(f"read {table.num_rows} rows, {table.num_columns} columns", done=table.num_rows,
                 total=table.num_rows, unit="rows")
    return QueryOutput(table=artifact, sql=inp.sql, rows=table.num_rows)
