"""SQL analysis shared by skills and the planner: parse one read-only query, say which tables and columns it reads.

`sql_reads(sql)` parses SQL with sqlglot and says which tables and columns it names, so the planner can check a step
against the principal's catalog and preview it before anything runs. Governance is still what enforces access: this
is only for early, friendly errors. Not a skill: any layer above `skills` may use it.
"""
from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.scope import Scope, traverse_scope

from governance import duplicate_names
from skills.errors import SkillError

DIALECT = "duckdb"
Reads = dict[str, set[str] | None]



def parse_sql(sql: str, *, skill_name: str = "query") -> exp.Query:
    """One parsed SELECT (or set operation), or a SkillError that says what is wrong with the SQL."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except ParseError as exc:
        first = exc.errors[0]["description"] if exc.errors else "syntax error"
        raise SkillError(f"the SQL does not parse: {first}", skill=skill_name,
                         hint="write one SELECT statement in DuckDB syntax") from None
    if len(statements) != 1:
        raise SkillError(f"expected one SQL statement, found {len(statements)}", skill=skill_name,
                         hint="send a single SELECT statement")
    if not isinstance(statements[0], exp.Query):
        raise SkillError(f"expected a SELECT query, got {statements[0].key.upper()}", skill=skill_name,
                         hint="skills only read data: send one SELECT statement")
    return statements[0]


def cap_rows(expression: exp.Query, max_rows: int | None) -> exp.Query:
    """`expression` limited to `max_rows` rows (the runtime's safety cap), unchanged when there is no cap."""
    if max_rows is None:
        return expression
    if isinstance(expression, exp.Select) and not expression.args.get("limit"):
        return expression.limit(max_rows, copy=True)
    return exp.select("*").from_(expression.subquery("capped")).limit(max_rows)


def _star_tables(scope: Scope, tables: dict[str, str]) -> set[str]:
    """Tables whose every visible column is read: `SELECT *` (all of them) or `SELECT t.*` (not `count(*)`)."""
    select = scope.expression
    if not isinstance(select, exp.Select):
        return set()
    out: set[str] = set()
    for projection in select.expressions:
        if isinstance(projection, exp.Star):
            out |= set(tables.values())
        elif isinstance(projection, exp.Column) and projection.is_star and projection.table in tables:
            out.add(tables[projection.table])
    return out


def _table_sources(scope: Scope) -> dict[str, str]:
    """Alias -> table name for the base tables in this scope (CTEs and derived tables are scopes, not tables)."""
    return {alias: src.name for alias, (_, src) in scope.selected_sources.items()
            if isinstance(src, exp.Table) and isinstance(src.this, exp.Identifier)}


def _add_scope_reads(scope: Scope, reads: Reads) -> None:
    tables = _table_sources(scope)
    for table in tables.values():
        reads.setdefault(table, set())
    for table in _star_tables(scope, tables):
        reads[table] = None
    only = next(iter(tables.values())) if len(scope.selected_sources) == 1 and tables else None
    for column in scope.columns:
        # qualified: None for a CTE, derived table or outer (correlated) scope; unqualified: attributable only
        # when the scope reads exactly one source, and it is a table
        name = tables.get(column.table) if column.table else only
        columns = reads.get(name) if name is not None else None
        if columns is not None:
            columns.add(column.name)


def _duplicate_sources_error(duplicates: list[tuple[str, str]], skill_name: str = "query") -> SkillError:
    """The error for `governance.duplicate_names`' answer: such a query is ambiguous (which source `x.col` means
    depends on the engine), so governance refuses it and validation says so before anything runs."""
    what, name = duplicates[0]
    if what == "CTE":
        return SkillError(f"two CTEs of one WITH share the name {name!r}", skill=skill_name,
                          hint="give each CTE its own name")
    shown = f"share the name {name!r}" if name else "have no alias"
    return SkillError(f"two sources in one FROM {shown}", skill=skill_name,
                      hint="give each table, subquery and CTE its own alias")


def sql_reads(sql: str) -> Reads:
    """Tables and columns `sql` names: `{table: {columns}}`, `None` for "every column" (`SELECT *`).

    Unqualified columns in a scope that joins several sources cannot be attributed without a schema and are left
    out; governance still checks them when the query runs. Raises SkillError (never a sqlglot error) when the SQL
    cannot be analysed, e.g. when two sources of one scope share a name."""
    parsed = parse_sql(sql)
    duplicates = duplicate_names(parsed)
    if duplicates:
        raise _duplicate_sources_error(duplicates)
    reads: Reads = {}
    try:
        expression = normalize_identifiers(parsed, dialect=DIALECT)
        for scope in traverse_scope(expression):
            _add_scope_reads(scope, reads)
    except SqlglotError as exc:
        raise unanalysable(exc) from None
    return reads


def unanalysable(exc: SqlglotError) -> SkillError:
    """The error for SQL that sqlglot cannot analyse (scopes, aliases): what it said, and how to simplify."""
    return SkillError(f"the SQL cannot be analysed: {exc}", skill="query",
                      hint="simplify the query: one SELECT over catalog tables, each source with its own alias")


def merge_reads(*parts: Reads) -> Reads:
    """Union of several reads maps (`None`, every column, wins)."""
    out: Reads = {}
    for part in parts:
        for table, columns in part.items():
            if table in out and out[table] is None:
                continue
            out[table] = None if columns is None else (out.get(table) or set()) | columns
    return out
