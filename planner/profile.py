"""A profile of every column of one table, as the principal sees it, computed through governed SQL.

Two governed, audited queries per plan and no whole-table read: one aggregate query (rows, non-null count, distinct
count, min and max of every column, computed in the warehouse), and one sample of at most `SAMPLE_ROWS` rows (a
governed shard of the rows, split by a hash the warehouse computes, so the same rows come back every time). From the
sample: the share of text values that parse as dates or numbers or look like emails or phone numbers, the top levels
of low-cardinality columns and of the target, and the single-column scores of `planner.leakage`.

Masks apply before anything is counted (a masked column profiles as its mask) and denied columns are not in the
catalog, so a profile shows nothing the principal may not see. Which columns the policies mask for the principal is
read from the policies (`masked`): such a column is PII to the planner whatever its values.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from planner.catalog import Kind, column_kind, lookup

if TYPE_CHECKING:
    from governance import Engine, Principal

SAMPLE_ROWS = 20_000
TOP_LEVELS = 10
LOW_CARDINALITY = 20  # columns with at most this many distinct values get their top levels profiled
NEAR_CONSTANT = 0.99  # the top level's share of the rows above which a column is near-constant

_DATE = re.compile(
    r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?"
    r"|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"
    r"|\d{1,2}[ -](jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*[ -,]+\d{2,4}"
    r"|(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]* \d{1,2},? \d{4})\s*$", re.IGNORECASE)
_NUMBER = re.compile(r"^\s*[-+]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?([eE][-+]?\d+)?\s*%?\s*$")
_EMAIL = re.compile(r"^\s*[^@\s]+@[^@\s]+\.[A-Za-z]{2,}\s*$")
_PHONE = re.compile(r"^\s*(\+\d{1,3}[\s.-]?)?(\(\d{2,4}\)[\s.-]?)?\d{2,4}([\s.-]\d{2,4}){1,3}\s*$")


@dataclass(frozen=True)
class Level:
    """One value of a column (as text; None for missing) and its share of the sampled rows."""

    value: str | None
    share: float


@dataclass(frozen=True)
class ColumnProfile:
    """What the data says about one column. Shares of text patterns are over the sample's non-null values (None for
    non-text columns); `top` is filled for low-cardinality columns and the target."""

    name: str
    type: str
    rows: int
    non_null: int
    distinct: int
    min: str | None = None
    max: str | None = None
    masked: bool = False
    date_share: float | None = None
    number_share: float | None = None
    email_share: float | None = None
    phone_share: float | None = None
    top: tuple[Level, ...] = ()

    @property
    def kind(self) -> Kind:
        return column_kind(self.type)

    @property
    def null_rate(self) -> float:
        return 1.0 - self.non_null / self.rows if self.rows else 0.0

    @property
    def uniqueness(self) -> float:
        """Distinct values per non-null value: 1.0 for an identifier."""
        return self.distinct / self.non_null if self.non_null else 0.0

    @property
    def constant(self) -> bool:
        """At most one value (missing values aside)."""
        return self.distinct <= 1

    @property
    def near_constant(self) -> bool:
        return self.constant or (bool(self.top) and self.top[0].share >= NEAR_CONSTANT)

    def number(self, which: str) -> float | None:
        """`min` or `max` as a number (numeric columns), else None."""
        text = getattr(self, which)
        try:
            value = float(text) if text is not None else None
        except ValueError:
            return None
        return value if value is not None and math.isfinite(value) else None


@dataclass
class TableProfile:
    """Every visible column of `table` profiled, and the governed sample the shares and scores come from."""

    table: str
    rows: int
    columns: dict[str, ColumnProfile]
    sample: pa.Table = field(repr=False)

    def levels(self, column: str) -> list[str]:
        """The column's top levels, most frequent first (missing values left out)."""
        return [lv.value for lv in self.columns[column].top if lv.value is not None]


def _ident(name: str) -> exp.Column:
    return exp.column(exp.to_identifier(name, quoted=True))


def aggregate_sql(table: str, columns: Mapping[str, str]) -> str:
    """One DuckDB SELECT computing rows, and per column non-null count, distinct count, min and max (as text)."""
    select: list[exp.Expr] = [exp.Count(this=exp.Star()).as_("n")]
    for i, (name, type_) in enumerate(columns.items()):
        col = _ident(name)
        select += [exp.Count(this=col).as_(f"c{i}_non_null"),
                   exp.Count(this=exp.Distinct(expressions=[col])).as_(f"c{i}_distinct")]
        if column_kind(type_) in ("integer", "float", "temporal", "text"):
            select += [exp.cast(exp.Min(this=col), "VARCHAR").as_(f"c{i}_min"),
                       exp.cast(exp.Max(this=col), "VARCHAR").as_(f"c{i}_max")]
    return exp.select(*select).from_(exp.Table(this=exp.to_identifier(table))).sql(dialect="duckdb")


def sample_sql(table: str) -> str:
    return exp.select("*").from_(exp.Table(this=exp.to_identifier(table))).sql(dialect="duckdb")


def masked_columns(engine: Engine, principal: Principal, table: str) -> set[str]:
    """Lower-case names of the columns of `table` the policies mask for `principal`."""
    from governance.rights import table_rights

    name = lookup(engine.policies.tables, table)
    return set(table_rights(engine.policies.tables[name], principal).masks) if name is not None else set()


def governed_sample(engine: Engine, principal: Principal, table: str, rows: int,
                    size: int = SAMPLE_ROWS) -> pa.Table:
    """At most about `size` of the principal's rows of `table`: all of them when few, else one hash shard."""
    from governance import GovernanceError, Shard

    sql = sample_sql(table)
    if rows <= size:
        return engine.query(sql, principal)
    try:
        return engine.query(sql, principal, shard=Shard(0, math.ceil(rows / size)))
    except GovernanceError:  # a warehouse without a hash to shard on: the first rows it returns
        limited = exp.select("*").from_(exp.Table(this=exp.to_identifier(table))).limit(size)
        return engine.query(limited.sql(dialect="duckdb"), principal)


def _shares(col: pa.ChunkedArray) -> dict[str, float]:
    """Share of the non-null text values that parse as dates, as numbers, look like emails, like phone numbers."""
    counts = pc.value_counts(pc.cast(col, pa.string()).drop_null()).to_pylist()
    total = sum(c["counts"] for c in counts)
    out = {}
    for name, test in (("date_share", _DATE.match), ("number_share", _is_number), ("email_share", _EMAIL.match),
                       ("phone_share", _is_phone)):
        hits = sum(c["counts"] for c in counts if c["values"].strip() and test(c["values"]))
        out[name] = hits / total if total else 0.0
    return out


def _is_number(text: str) -> bool:
    return bool(_NUMBER.match(text)) and any(ch.isdigit() for ch in text)


def _is_phone(text: str) -> bool:
    """Digits in groups (`+44 20 7946 0958`, `(555) 123-4567`), 7 to 15 of them, and not a plain number."""
    return bool(_PHONE.match(text)) and 7 <= sum(ch.isdigit() for ch in text) <= 15 and not _is_number(text) \
        and not _DATE.match(text)


def _top(col: pa.ChunkedArray) -> tuple[Level, ...]:
    """The most frequent values of a sampled column (missing values as None), with their shares of the sample."""
    if not len(col):
        return ()
    counts = pc.value_counts(pc.cast(col, pa.string())).to_pylist()
    ranked = sorted(counts, key=lambda c: (-c["counts"], str(c["values"])))[:TOP_LEVELS]
    return tuple(Level(c["values"], c["counts"] / len(col)) for c in ranked)


def profile_table(engine: Engine, principal: Principal, table: str, columns: Mapping[str, str], *,
                  target: str | None = None, sample_size: int = SAMPLE_ROWS) -> TableProfile:
    """Profile every column of `table` (`columns`: the catalog's, as the principal sees them) in two governed
    queries. `target`'s top levels are profiled whatever its cardinality."""
    row = engine.query(aggregate_sql(table, columns), principal).to_pylist()[0]
    rows = int(row["n"])
    sample = governed_sample(engine, principal, table, rows, sample_size)
    masked = masked_columns(engine, principal, table)
    out = {}
    for i, (name, type_) in enumerate(columns.items()):
        distinct = int(row[f"c{i}_distinct"])
        col = sample.column(name) if name in sample.column_names else None
        extra: dict[str, object] = {}
        if col is not None and column_kind(type_) == "text":
            extra.update(_shares(col))
        if col is not None and (distinct <= LOW_CARDINALITY or name == target):
            extra["top"] = _top(col)
        out[name] = ColumnProfile(name=name, type=type_, rows=rows, non_null=int(row[f"c{i}_non_null"]),
                                  distinct=distinct, min=row.get(f"c{i}_min"), max=row.get(f"c{i}_max"),
                                  masked=name.lower() in masked, **extra)  # type: ignore[arg-type]
    return TableProfile(table, rows, out, sample)
