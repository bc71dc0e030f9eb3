"""Print a governed query in the warehouse's dialect, or refuse it (fail closed).

Queries and policy snippets are written in DuckDB SQL; a warehouse that speaks another dialect gets the governed tree
transpiled by sqlglot. Three things make that safe rather than best effort:

- sqlglot is told to raise on anything the target cannot express (`ErrorLevel.RAISE`), instead of warning and
  printing something else;
- a function sqlglot does not know (`exp.Anonymous`, a DuckDB-only name on the allowlist) is passed through verbatim
  by the generator, so only names that mean the same in the target (`PORTABLE_NAMES`) may cross;
- typed functions with no faithful counterpart in the target (`UNSUPPORTED`) are refused by name, and the few that
  need an argument fixed (`_FIXUPS`, e.g. PostgreSQL hashes bytes, not text) are rewritten before printing.

Anything refused here is a `PolicyViolation` of kind "dialect" naming the construct and the dialect.
"""
from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

from governance.errors import PolicyViolation
from governance.functions import function_name

# DuckDB functions sqlglot parses as anonymous that exist with the same meaning in the target dialect.
PORTABLE_NAMES: dict[str, frozenset[str]] = {
    "postgres": frozenset("age date_part gcd lcm now octet_length transaction_timestamp regexp_split_to_array "
                          "isfinite".split()),
    "snowflake": frozenset("date_part".split()),
    "databricks": frozenset("date_part now octet_length".split()),
    "bigquery": frozenset(),
    "trino": frozenset("date_part now".split()),
}
# Typed functions the target lacks (sqlglot would print a name the database does not have, or a different meaning).
UNSUPPORTED: dict[str, tuple[type[exp.Expr], ...]] = {
    "postgres": tuple(getattr(exp, n) for n in "SHA ArgMax ArgMin Levenshtein JarowinklerSimilarity Soundex".split()
                      if hasattr(exp, n)),
}


def _pg_hash_bytes(node: exp.Expr) -> exp.Expr:
    """PostgreSQL's sha224/256/384/512 take bytea: hash the UTF-8 bytes of the text, as DuckDB does."""
    if isinstance(node, exp.SHA2):
        node.set("this", exp.Anonymous(this="convert_to", expressions=[node.this, exp.Literal.string("UTF8")]))
    return node


_FIXUPS: dict[str, Callable[[exp.Expr], exp.Expr]] = {"postgres": _pg_hash_bytes}


def _refuse(message: str, write: str) -> PolicyViolation:
    return PolicyViolation(message, kind="dialect", dialect=write,
                           hint=f"Rewrite the query with functions the {write} warehouse has too (standard SQL "
                                "functions transpile; DuckDB-only ones do not).")


def _check_functions(expression: exp.Expr, read: str, write: str) -> None:
    portable = PORTABLE_NAMES.get(write, frozenset())
    unsupported = UNSUPPORTED.get(write, ())
    for func in expression.find_all(exp.Func):
        name = function_name(func)
        if isinstance(func, exp.Anonymous) and name not in portable:
            raise _refuse(f"function {name!r} of the {read} dialect has no known {write} counterpart", write)
        if unsupported and isinstance(func, unsupported):
            raise _refuse(f"function {name!r} cannot be run by the {write} warehouse", write)


def render(expression: exp.Expr, read: str, write: str) -> str:
    """The SQL text of a governed tree in dialect `write` (it was parsed as `read`); raises PolicyViolation for
    anything the target cannot express faithfully."""
    if write == read:
        return expression.sql(dialect=write, comments=False)
    _check_functions(expression, read, write)
    fixup = _FIXUPS.get(write)
    if fixup is not None:
        expression = expression.transform(fixup, copy=False)
    try:
        return expression.sql(dialect=write, comments=False, unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as err:
        raise _refuse(f"the query cannot be expressed in the {write} dialect: {str(err).splitlines()[0]}",
                      write) from None
