"""enforce(): parse one query, run the fixed tuple of governance rules, and print the governed SQL."""
from __future__ import annotations

from collections.abc import Mapping

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

from governance.errors import PolicyViolation
from governance.policies import Policies
from governance.principal import Principal
from governance.rules import RULES
from governance.schema import GovernedSchema
from governance.transpile import render

DIALECTS = ("duckdb", "snowflake", "postgres", "bigquery", "trino", "databricks")


def _without_comments(sql: str, dialect: str) -> str:
    """The query's tokens, verbatim, joined by single spaces: comments and odd whitespace gone."""
    return " ".join(sql[t.start:t.end + 1] for t in Dialect.get_or_raise(dialect).tokenize(sql))


def _parse(sql: str, dialect: str) -> list[exp.Expr]:
    try:
        return [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except sqlglot.errors.ParseError:
        # sqlglot reads `ORDER /* c */ BY` as two words where databases see ORDER BY: retry without comments.
        return [s for s in sqlglot.parse(_without_comments(sql, dialect), read=dialect) if s is not None]


def parse_query(sql: str, dialect: str = "duckdb") -> exp.Expr:
    """Parse exactly one statement; a parenthesized query is unwrapped. Raises PolicyViolation otherwise."""
    try:
        statements = _parse(sql, dialect)
    except sqlglot.errors.SqlglotError:
        raise PolicyViolation("the query could not be parsed", kind="syntax",
                              hint=f"Check the SQL syntax ({dialect} dialect).") from None
    if len(statements) != 1:
        raise PolicyViolation(f"exactly one statement is allowed, got {len(statements)}", kind="statement",
                              hint="Send a single SELECT statement without extra ';'-separated statements.")
    statement = statements[0]
    while isinstance(statement, exp.Subquery) and not statement.alias:
        statement = statement.this
    return statement


def govern(expression: exp.Expr, principal: Principal, policies: Policies,
           schema: GovernedSchema) -> exp.Expr:
    """Run every rule over a parsed query; returns the governed expression (the input is modified)."""
    for rule in RULES:
        expression = rule(expression, policies=policies, principal=principal, schema=schema)
    return expression


def enforce(sql: str, principal: Principal, policies: Policies, schema: Mapping[str, Mapping[str, str]],
            dialect: str = "duckdb", *, write: str | None = None, catalog: str | None = None,
            db: str | None = None, source_db: str | None = None) -> str:
    """Rewrite `sql` so it reads only what `principal` may see, or raise PolicyViolation.

    `dialect` is the query's (and its names' case rules'); `write`, when given, the dialect the governed SQL is
    printed in (a warehouse that speaks another one: see governance/transpile.py, which refuses what does not
    transpile faithfully). `schema` maps each catalog table to {column: type}. Base tables are emitted as
    `catalog.db.table` when `catalog`/`db` are given (DuckDB defaults to db `main`, PostgreSQL to `public`).
    `source_db`: the schema the governance wrappers read from when it is not the one queries name (the engine's raw
    schema).
    """
    for name in (dialect, write or dialect):
        if name not in DIALECTS:
            raise PolicyViolation(f"unsupported dialect {name!r}", kind="dialect", hint=f"Use one of {DIALECTS}.")
    governed_schema = GovernedSchema(schema, policies, dialect, catalog=catalog, db=db, source_db=source_db)
    expression = govern(parse_query(sql, dialect), principal, policies, governed_schema)
    return render(expression, dialect, write or dialect)
