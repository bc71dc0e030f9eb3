"""Run one query on both engines and compare: the same multiset of rows, or both DENIED.

Types are normalised before comparing (numbers to rounded floats, dates to ISO text) because DuckDB and
PostgreSQL legitimately differ in result types (`avg` is DOUBLE vs NUMERIC, `extract` BIGINT vs NUMERIC).
"""
from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import psycopg
import pyarrow as pa

Kind = Literal["rows", "denied", "error"]
Row = tuple[Any, ...]

# PostgreSQL's ways of saying "you may not see this": no privilege (tables, columns, statements), and a name that
# does not resolve because the principal's view hides the column or the table is absent.
PG_DENIED_STATES = {"42501", "42703", "42P01", "42712"}  # 42712: a source name used twice, refused as a whole
_HEADER = re.compile(r"^--\s*(?P<name>[\w-]+):\s*(?P<about>.*)$")


@dataclass(frozen=True)
class OracleQuery:
    """One corpus entry: a short name, what it probes, and the SQL (portable DuckDB/PostgreSQL subset)."""

    name: str
    about: str
    sql: str


@dataclass(frozen=True)
class Outcome:
    """What one engine answered: rows (a multiset of normalised tuples), DENIED, or some other error."""

    kind: Kind
    rows: Counter[Row] | None = None
    width: int = 0
    detail: str = ""

    def brief(self) -> str:
        """One line for diffs."""
        if self.kind == "rows":
            return f"{sum(self.rows.values())} rows x {self.width} columns"
        return f"{self.kind.upper()}: {self.detail}"


@dataclass(frozen=True)
class Comparison:
    """The two outcomes of one query for one principal."""

    query: OracleQuery
    user: str
    agentml: Outcome
    postgres: Outcome

    @property
    def agrees(self) -> bool:
        """Same multiset of rows and width, or both DENIED. Any other error on either side is a disagreement."""
        a, p = self.agentml, self.postgres
        if a.kind == "rows" and p.kind == "rows":
            return a.rows == p.rows and a.width == p.width
        return a.kind == p.kind == "denied"

    def diff(self, limit: int = 8) -> str:
        """A readable account of a disagreement: both outcomes and the rows only one side returned."""
        lines = [f"[{self.query.name}] user={self.user}: {self.query.about}", f"  SQL: {self.query.sql}",
                 f"  agentml : {self.agentml.brief()}", f"  postgres: {self.postgres.brief()}"]
        if self.agentml.kind == "rows" and self.postgres.kind == "rows":
            only_a = list((self.agentml.rows - self.postgres.rows).elements())
            only_p = list((self.postgres.rows - self.agentml.rows).elements())
            lines += [f"  only in agentml  ({len(only_a)}): {sorted(only_a, key=repr)[:limit]}",
                      f"  only in postgres ({len(only_p)}): {sorted(only_p, key=repr)[:limit]}"]
        return "\n".join(lines)


def load_queries(path: Path) -> list[OracleQuery]:
    """Parse the corpus: each entry starts with `-- name: what it probes`, followed by one SQL statement."""
    queries: list[OracleQuery] = []
    header: re.Match[str] | None = None
    body: list[str] = []
    for line in [*path.read_text().splitlines(), "-- end: end"]:
        match = _HEADER.match(line)
        if match is None:
            if not line.lstrip().startswith("--"):  # other comments are prose, never part of a statement
                body.append(line)
            continue
        text = " ".join(" ".join(body).split()).rstrip(";").strip()
        if header is not None and text:
            queries.append(OracleQuery(header["name"], header["about"], text))
        header, body = match, []
    return queries


def normalise(value: Any) -> Any:
    """A comparable, hashable form: numbers -> float rounded to 6 places, dates/timestamps -> ISO text."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float | Decimal):
        return round(float(value), 6) + 0.0  # + 0.0 folds -0.0 into 0.0
    if isinstance(value, dt.datetime):
        midnight = value.time() == dt.time(0) and value.utcoffset() in (None, dt.timedelta(0))
        return value.date().isoformat() if midnight else value.replace(tzinfo=None).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return repr(value)


def _counter(rows: Sequence[Sequence[Any]]) -> Counter[Row]:
    return Counter(tuple(normalise(v) for v in row) for row in rows)


def arrow_outcome(table: pa.Table) -> Outcome:
    """Rows of an Arrow result, by position (duplicate column names such as `c.id, o.id` are kept)."""
    columns = [column.to_pylist() for column in table.columns]
    rows = list(zip(*columns, strict=False)) if columns else []
    return Outcome("rows", _counter(rows), width=table.num_columns)


def run_agentml(query: Callable[[str], pa.Table], text: str, denied: type[Exception]) -> Outcome:
    """Run through the governed engine; `denied` is PolicyViolation."""
    try:
        return arrow_outcome(query(text))
    except denied as err:
        return Outcome("denied", detail=f"{type(err).__name__}: {err}")
    except Exception as err:  # noqa: BLE001 - any other failure is reported as a disagreement, not a crash
        return Outcome("error", detail=f"{type(err).__name__}: {err}")


def run_postgres(conn: psycopg.Connection, text: str) -> Outcome:
    """Run as the principal inside a transaction that is always rolled back (nothing a query does persists)."""
    try:
        with conn.transaction(force_rollback=True), conn.cursor() as cursor:
            cursor.execute(text)
            rows = cursor.fetchall() if cursor.description else []
            return Outcome("rows", _counter(rows), width=len(cursor.description or ()))
    except psycopg.Error as err:
        kind: Kind = "denied" if err.sqlstate in PG_DENIED_STATES else "error"
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return Outcome(kind, detail=f"{err.sqlstate} {first}")
