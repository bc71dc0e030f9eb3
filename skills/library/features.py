"""`features`: declarative feature specs compiled to ONE governed SQL statement.

The base query becomes a CTE; each feature is an expression over its rows: a correlated subquery over a related table
for time-based features (window, lag, trend), arithmetic, CASE or a window function over base columns for the others
(ratios and products, category frequencies, missing-value flags, bins, date parts, group aggregates). Base-column
features need no key: without one the rows keep the base query's order (a row number taken in the CTE).
The statement is built from sqlglot expressions (identifiers quoted, user values as literal nodes, never string
formatting) and run with `ctx.sql`, so governance rewrites every table reference: row filters apply and a feature
built on a masked column is computed from the masked values (masks apply before aggregates).

Time-based features only ever read rows strictly before each row's cutoff (an ISO date, or a base column holding the
label time); `check_leakage` refuses specs that could read at or after it, before anything runs.

There is no target encoding: the rows are built once and then split into folds by later steps, so a level's mean
target computed here would carry the held-out rows' labels into the training rows' features (and new rows to score
have no target to encode from).
"""
from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field
from sqlglot import exp

from skills.context import SkillContext
from skills.errors import SkillError
from skills.feature_specs import (
    ArithmeticSpec,
    BaseSpec,
    BinSpec,
    DatePartSpec,
    EncodeSpec,
    FeatureSpec,
    GroupSpec,
    LagSpec,
    MissingSpec,
    RelatedSpec,
    TrendSpec,
    WindowSpec,
)
from skills.library.query import save_governed
from skills.registry import skill
from skills.sql import DIALECT, Reads, merge_reads, parse_sql, sql_reads
from skills.types import TableArtifact

BASE = "__base"  # CTE holding the base query
ROW = "__b"      # alias of the base row a feature is computed for
REL = "__r"      # alias of the related table inside a correlated subquery
ROW_NUMBER = "__row"  # the base query's row order, kept when there is no key to order by
MAX_ONE_HOT_LEVELS = 20
MAX_FITTED_LEVELS = 1000  # levels a fitted frequency/group encoding keeps (the most frequent); others: 0 / null
_NUMERIC = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|"
                      r"FLOAT|REAL|DOUBLE|DECIMAL|NUMERIC|INT\d*|FLOAT\d*)", re.IGNORECASE)
_TEMPORAL = re.compile(r"^(DATE|TIMESTAMP)", re.IGNORECASE)
_EXTRACT_PARTS = {"year": "YEAR", "quarter": "QUARTER", "month": "MONTH", "day": "DAY", "dayofweek": "DOW",
                  "dayofyear": "DOY", "hour": "HOUR"}  # EXTRACT names DuckDB and PostgreSQL share


class FeaturesInput(BaseModel):
    """Base rows (one per entity and cutoff) plus the features to add to them."""

    model_config = ConfigDict(extra="forbid")
    base_sql: str = Field(description="SELECT giving the base rows; its columns are kept")
    key: str | None = Field(default=None, description="entity key column of the base query, matched to each related "
                            "table's `key`; needed only by features over related tables")
    specs: list[FeatureSpec] = Field(min_length=1)
    cutoff: str | None = Field(default=None, description="ISO date, or a base column with each row's label time")


class FeaturesOutput(BaseModel):
    """The base rows with the feature columns added, and the names of those columns."""

    model_config = ConfigDict(extra="forbid")
    table: TableArtifact
    features: list[str]
    fitted: list[FeatureSpec] = Field(default_factory=list, description="the input specs with what they learnt "
                                      "from these rows (one-hot levels, quantile edges, level shares, group "
                                      "aggregates): computing them over other rows (scoring) gives what the model saw")


# ---------------------------------------------------------------------------------------------- leakage and names


def _fail(problems: Sequence[str], hint: str, **fields: object) -> None:
    if problems:
        raise SkillError("; ".join(problems), skill="features", hint=hint, problems=list(problems), **fields)


def leakage_problems(specs: Sequence[FeatureSpec], cutoff: str | None) -> list[str]:
    """Every spec that could read related rows at or after the label cutoff, with how to fix it."""
    problems = []
    for spec in specs:
        if not isinstance(spec, RelatedSpec):
            continue
        if cutoff is None:
            problems.append(f"feature {spec.name!r} ({spec.kind} over {spec.table}) has no cutoff, so it could read "
                            "rows from after the label time: pass `cutoff` (an ISO date or a base column)")
        if isinstance(spec, WindowSpec) and spec.offset_days < 0:
            problems.append(f"feature {spec.name!r} has offset_days={spec.offset_days}, which reads rows up to "
                            f"{-spec.offset_days} days after the cutoff: use offset_days >= 0")
        if isinstance(spec, LagSpec) and spec.periods < 1:
            problems.append(f"feature {spec.name!r} has periods={spec.periods}, which reads the row at or after the "
                            "cutoff: use periods >= 1 (1 = the last row before the cutoff)")
    return problems


def check_leakage(specs: Sequence[FeatureSpec], cutoff: str | None) -> None:
    """Raise a SkillError naming every spec that could leak future rows into a feature."""
    _fail(leakage_problems(specs, cutoff), "time-based features must only read rows strictly before the cutoff",
          kind="leakage")


def _suggest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=2)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _lookup(columns: Mapping[str, str], name: str) -> str | None:
    """Type of column `name`, matched case-insensitively as DuckDB does."""
    return next((t for c, t in columns.items() if c.lower() == name.lower()), None)


def _related_problems(spec: RelatedSpec, catalog: Mapping[str, Mapping[str, str]]) -> list[str]:
    table = next((cols for t, cols in catalog.items() if t.lower() == spec.table.lower()), None)
    if table is None:
        return [f"feature {spec.name!r}: table {spec.table!r} is not in the catalog you can see"
                f"{_suggest(spec.table, list(catalog))}"]
    problems = [f"feature {spec.name!r}: column {col!r} is not in table {spec.table!r} as you can see it"
                f"{_suggest(col, list(table))}" for col in (spec.key, spec.time, spec.column)
                if _lookup(table, col) is None]
    time_type = _lookup(table, spec.time)
    if time_type is not None and not _TEMPORAL.match(time_type):
        problems.append(f"feature {spec.name!r}: time column {spec.time!r} is {time_type}, not a DATE or TIMESTAMP")
    value_type = _lookup(table, spec.column)
    numeric_needed = isinstance(spec, TrendSpec) or (isinstance(spec, WindowSpec) and spec.agg in
                                                      ("avg", "sum", "stddev"))
    if numeric_needed and value_type is not None and not _NUMERIC.match(value_type):
        problems.append(f"feature {spec.name!r}: column {spec.column!r} is {value_type}, not numeric")
    return problems


def _base_problems(spec: BaseSpec, base: Mapping[str, str], earlier: set[str]) -> list[str]:
    problems = [f"feature {spec.name!r}: {name!r} is neither a column of the base query nor an earlier feature"
                f"{_suggest(name, [*base, *earlier])}" for name in spec.operands()
                if _lookup(base, name) is None and name not in earlier]
    kind = _lookup(base, spec.column) if isinstance(spec, DatePartSpec | BinSpec) else None
    if isinstance(spec, DatePartSpec) and kind is not None and (_NUMERIC.match(kind) or kind.startswith("BOOL")):
        problems.append(f"feature {spec.name!r}: column {spec.column!r} is {kind}, not a date, timestamp or text")
    if isinstance(spec, BinSpec) and kind is not None and not _NUMERIC.match(kind):
        problems.append(f"feature {spec.name!r}: column {spec.column!r} is {kind}, not numeric, so it has no bins")
    if isinstance(spec, BinSpec) and spec.quantiles is not None and _lookup(base, spec.column) is None:
        problems.append(f"feature {spec.name!r}: quantile bins need a column of the base query, not a feature "
                        f"({spec.column!r}); give fixed `edges` instead")
    return problems


def check_names(specs: Sequence[FeatureSpec], key: str | None, cutoff: str | None, base: Mapping[str, str],
                catalog: Mapping[str, Mapping[str, str]]) -> None:
    """Raise one SkillError naming every unknown table/column a spec refers to (as the principal sees them)."""
    problems = [] if key is None or _lookup(base, key) else [f"key {key!r} is not a column of the base query"
                                                             f"{_suggest(key, list(base))}"]
    if key is None:
        problems += [f"feature {spec.name!r} ({spec.kind} over {spec.table}) needs the base query's entity key to "
                     "match related rows: pass `key` (an id column of the base query)"
                     for spec in specs if isinstance(spec, RelatedSpec)]
    if cutoff is not None and _lookup(base, cutoff) is None and _iso_literal(cutoff) is None:
        problems.append(f"cutoff {cutoff!r} is neither an ISO date (2024-01-31) nor a column of the base query")
    earlier: set[str] = set()
    for spec in specs:
        problems += _related_problems(spec, catalog) if isinstance(spec, RelatedSpec) else \
            _base_problems(spec, base, earlier)
        earlier.add(spec.name)
    _fail(problems, "use tables and columns from the catalog you can see (agentml catalog), and base-query columns",
          kind="unknown_name")


# ------------------------------------------------------------------------------------------------------- compiling


def _iso_literal(value: str) -> exp.Expr | None:
    """CAST('<iso>' AS DATE|TIMESTAMP) for an ISO date/datetime string, else None."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    kind = "DATE" if parsed.time() == dt.time() and len(value) <= 10 else "TIMESTAMP"
    return exp.cast(exp.Literal.string(value), kind)


def _col(name: str, table: str) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def _table(name: str, alias: str) -> exp.Table:
    return exp.Table(this=exp.to_identifier(name, quoted=True), alias=exp.TableAlias(this=exp.to_identifier(
        alias, quoted=True)))


def _days_before(moment: exp.Expr, days: int) -> exp.Expr:
    if days == 0:
        return moment.copy()
    return exp.Sub(this=moment.copy(), expression=exp.Interval(this=exp.Literal.number(days),
                                                               unit=exp.Var(this="DAY")))


@dataclass
class _Compiler:
    """Builds one expression per feature; `features` keeps them so arithmetic can reuse earlier features."""

    key: str | None
    cutoff: exp.Expr | None
    levels: Mapping[str, list[str]]
    edges: Mapping[str, list[float]] = field(default_factory=dict)
    temporal: frozenset[str] = frozenset()  # lower-cased base columns of a DATE/TIMESTAMP type
    features: dict[str, exp.Expr] = field(default_factory=dict)

    def related(self, spec: RelatedSpec, value: exp.Expr, since: exp.Expr | None,
                until: exp.Expr) -> exp.Select:
        """SELECT value FROM table AS __r WHERE __r.key = __b.key AND since <= __r.time < until."""
        time = _col(spec.time, REL)
        assert self.key is not None  # guaranteed by check_names
        where = exp.and_(_col(spec.key, REL).eq(_col(self.key, ROW)), exp.LT(this=time, expression=until))
        if since is not None:
            where = exp.and_(where, exp.GTE(this=time.copy(), expression=since))
        return exp.select(value).from_(_table(spec.table, REL)).where(where)

    def window(self, spec: WindowSpec) -> exp.Expr:
        aggs: dict[str, type[exp.AggFunc]] = {"avg": exp.Avg, "sum": exp.Sum, "min": exp.Min, "max": exp.Max,
                                              "count": exp.Count, "stddev": exp.Stddev}
        assert self.cutoff is not None  # guaranteed by check_leakage
        until = _days_before(self.cutoff, spec.offset_days)
        since = None if spec.window_days is None else _days_before(self.cutoff, spec.offset_days + spec.window_days)
        return self.related(spec, aggs[spec.agg](this=_col(spec.column, REL)), since, until).subquery()

    def lag(self, spec: LagSpec) -> exp.Expr:
        assert self.cutoff is not None
        query = self.related(spec, _col(spec.column, REL), None, self.cutoff.copy())
        query = query.order_by(exp.Ordered(this=_col(spec.time, REL), desc=True)).limit(1)
        return query.offset(spec.periods - 1).subquery() if spec.periods > 1 else query.subquery()

    def trend(self, spec: TrendSpec) -> exp.Expr:
        assert self.cutoff is not None
        start = _days_before(self.cutoff, spec.window_days)
        recent = exp.GTE(this=_col(spec.time, REL), expression=start)
        value = _col(spec.column, REL)
        diff = exp.Sub(this=exp.Avg(this=exp.case().when(recent, value)),
                       expression=exp.Avg(this=exp.case().when(exp.not_(recent.copy()), value.copy())))
        return self.related(spec, diff, None, self.cutoff.copy()).subquery()

    def operand(self, name: str) -> exp.Expr:
        return self.features[name].copy() if name in self.features else _col(name, ROW)

    def arithmetic(self, spec: ArithmeticSpec) -> exp.Expr:
        left, right = exp.cast(self.operand(spec.left), "DOUBLE"), self.operand(spec.right)
        if spec.kind == "ratio":
            return exp.Div(this=left, expression=exp.Nullif(this=right, expression=exp.Literal.number(0)))
        ops = {"difference": exp.Sub, "sum": exp.Add, "product": exp.Mul}
        return exp.Paren(this=ops[spec.kind](this=left, expression=right))

    def frequency(self, spec: EncodeSpec) -> exp.Expr:
        if spec.shares is not None:  # fitted: the shares of the training rows
            return self.lookup(spec.column, spec.shares, spec.null_share, exp.Literal.number(0))
        same = exp.Window(this=exp.Count(this=exp.Star()), partition_by=[self.operand(spec.column)])
        return exp.Div(this=exp.cast(same, "DOUBLE"), expression=exp.Window(this=exp.Count(this=exp.Star())))

    def lookup(self, column: str, values: Mapping[str, float | None], null: float | None,
               other: exp.Expr) -> exp.Expr:
        """CASE WHEN x IS NULL THEN <null> WHEN CAST(x AS VARCHAR) = 'level' THEN value ... ELSE <other> END."""
        value = exp.cast(self.operand(column), "VARCHAR")
        case = exp.case().when(exp.Is(this=value.copy(), expression=exp.Null()), _maybe_number(null))
        for level, number in values.items():
            case = case.when(value.copy().eq(exp.Literal.string(level)), _maybe_number(number))
        return exp.cast(case.else_(other), "DOUBLE")

    def one_hot(self, spec: EncodeSpec) -> dict[str, exp.Expr]:
        value = exp.cast(self.operand(spec.column), "VARCHAR")
        names = level_names(spec.name, spec.levels if spec.levels is not None else self.levels.get(spec.name, []))
        return {name: exp.case().when(value.copy().eq(exp.Literal.string(level)), exp.Literal.number(1))
                .else_(exp.Literal.number(0)) for level, name in names.items()}

    def missing(self, spec: MissingSpec) -> exp.Expr:
        null = exp.Is(this=self.operand(spec.column), expression=exp.Null())
        return exp.case().when(null, exp.Literal.number(1)).else_(exp.Literal.number(0))

    def bin(self, spec: BinSpec) -> exp.Expr:
        """CASE WHEN x IS NULL THEN NULL WHEN x < e1 THEN 0 WHEN x < e2 THEN 1 ... ELSE k END."""
        value = exp.cast(self.operand(spec.column), "DOUBLE")
        fitted = spec.quantile_edges if spec.quantile_edges is not None else self.edges.get(spec.name, [])
        edges = sorted(set(spec.edges if spec.edges is not None else fitted))
        case = exp.case().when(exp.Is(this=value.copy(), expression=exp.Null()), exp.Null())
        for i, edge in enumerate(edges):
            case = case.when(exp.LT(this=value.copy(), expression=_number(edge)), exp.Literal.number(i))
        return case.else_(exp.Literal.number(len(edges)))

    def date_part(self, spec: DatePartSpec) -> exp.Expr:
        """EXTRACT(part FROM x): a DATE/TIMESTAMP column cast as it is, text parsed with TRY_CAST (junk -> null)."""
        value = self.operand(spec.column)
        typed = spec.column.lower() in self.temporal and spec.column not in self.features
        moment = exp.cast(value, "TIMESTAMP") if typed else exp.TryCast(this=value, to=exp.DataType.build("TIMESTAMP"))
        return exp.Extract(this=exp.Var(this=_EXTRACT_PARTS[spec.part]), expression=moment)

    def group(self, spec: GroupSpec) -> exp.Expr:
        aggs: dict[str, type[exp.AggFunc]] = {"avg": exp.Avg, "min": exp.Min, "max": exp.Max, "stddev": exp.Stddev}
        if spec.groups is not None:  # fitted: the aggregates of the training rows
            return self.lookup(spec.column, spec.groups, spec.null_group, exp.Null())
        value = exp.cast(self.operand(spec.value), "DOUBLE")
        return exp.Window(this=aggs[spec.agg](this=value), partition_by=[self.operand(spec.column)])

    def add(self, spec: FeatureSpec) -> None:
        if isinstance(spec, EncodeSpec) and spec.method == "one_hot":
            self.features.update(self.one_hot(spec))
            return
        builders = {"window": self.window, "lag": self.lag, "trend": self.trend, "encode": self.frequency,
                    "missing": self.missing, "bin": self.bin, "date_part": self.date_part, "group": self.group}
        build = builders.get(spec.kind, self.arithmetic)
        self.features[spec.name] = build(spec)  # type: ignore[operator]


def _maybe_number(value: float | None) -> exp.Expr:
    return exp.Null() if value is None or value != value else _number(value)  # NaN (a lone stddev) -> null


def _number(value: float) -> exp.Expr:
    """A numeric literal node (negative numbers as a negation, as sqlglot parses them)."""
    literal = exp.Literal.number(abs(value))
    return exp.Neg(this=literal) if value < 0 else literal


def level_names(prefix: str, levels: Sequence[str]) -> dict[str, str]:
    """Level -> column name `<prefix>_<slug>`, unique even when two levels slug alike."""
    out: dict[str, str] = {}
    for level in levels:
        slug = re.sub(r"[^0-9A-Za-z]+", "_", level).strip("_").lower() or "blank"
        name, n = f"{prefix}_{slug}", 2
        while name in out.values():
            name, n = f"{prefix}_{slug}_{n}", n + 1
        out[level] = name
    return out


def _cutoff_expression(cutoff: str | None, base_columns: Sequence[str]) -> exp.Expr | None:
    if cutoff is None:
        return None
    column = next((c for c in base_columns if c.lower() == cutoff.lower()), None)
    literal = _col(column, ROW) if column is not None else _iso_literal(cutoff)
    if literal is None:
        _fail([f"cutoff {cutoff!r} is neither an ISO date (2024-01-31) nor a column of the base query"],
              "pass an ISO date or the name of a base column with each row's label time", kind="unknown_name")
    return literal


@dataclass
class CompiledFeatures:
    """The one governed statement and the names of the feature columns it adds."""

    expression: exp.Select
    features: list[str]

    def sql(self) -> str:
        return self.expression.sql(dialect=DIALECT)


def compile_features(base_sql: str, key: str | None, specs: Sequence[FeatureSpec], cutoff: str | None,
                     base_columns: Sequence[str], levels: Mapping[str, list[str]] | None = None,
                     edges: Mapping[str, list[float]] | None = None,
                     temporal: Sequence[str] = ()) -> CompiledFeatures:
    """WITH __base AS (<base_sql>) SELECT <base columns>, <features> FROM __base AS __b ORDER BY <key>.

    `levels` gives the one-hot levels per encode spec name, `edges` the computed edges of quantile bins, `temporal`
    the base columns of a DATE/TIMESTAMP type. Without a key the CTE numbers the base rows and the result keeps their
    order. Checks leakage and name clashes; the caller checks that tables and columns exist (`check_names`)."""
    check_leakage(specs, cutoff)
    compiler = _Compiler(key=key, cutoff=_cutoff_expression(cutoff, base_columns), levels=levels or {},
                         edges=edges or {}, temporal=frozenset(c.lower() for c in temporal))
    for spec in specs:
        compiler.add(spec)
    _check_clashes(list(compiler.features), base_columns)
    select = exp.select(*[_col(c, ROW) for c in base_columns],
                        *[e.as_(n, quoted=True) for n, e in compiler.features.items()])
    base = parse_sql(base_sql, skill_name="features")
    if key is None:
        base = exp.select(exp.Star(), exp.Window(this=exp.RowNumber()).as_(ROW_NUMBER, quoted=True)).from_(
            base.subquery("__q"))
    select = select.from_(_table(BASE, ROW)).with_(exp.to_identifier(BASE, quoted=True), as_=base)
    # a stable row order (window functions shuffle rows): later steps split and sample rows by position
    order = [_col(key or ROW_NUMBER, ROW)] + ([compiler.cutoff.copy()] if isinstance(compiler.cutoff, exp.Column)
                                              else [])
    select = select.order_by(*order)
    return CompiledFeatures(expression=select, features=list(compiler.features))


def _check_clashes(features: Sequence[str], base_columns: Sequence[str]) -> None:
    taken = {c.lower() for c in base_columns} | {ROW_NUMBER}
    problems = [f"feature {name!r} clashes with a base column of the same name" for name in features
                if name.lower() in taken]
    seen: set[str] = set()
    for name in features:
        if name.lower() in seen:
            problems.append(f"feature name {name!r} is used twice")
        seen.add(name.lower())
    _fail(problems, "give every feature a unique name that is not a base column", kind="name_clash")


# ---------------------------------------------------------------------------------------------------------- skill


def _base_schema(ctx: SkillContext, base_sql: str) -> dict[str, str]:
    """Column -> type of the base query as the principal sees it (a governed LIMIT 0 probe)."""
    probe = exp.select("*").from_(parse_sql(base_sql, skill_name="features").subquery(ROW)).limit(0)
    schema = ctx.sql(probe.sql(dialect=DIALECT)).schema
    return {f.name: str(f.type).upper() for f in schema}


def _one_hot_levels(ctx: SkillContext, base_sql: str, specs: Sequence[FeatureSpec]) -> dict[str, list[str]]:
    """Most frequent levels (governed) of every one-hot encoded column, by spec name."""
    out = {}
    for spec in specs:
        if not (isinstance(spec, EncodeSpec) and spec.method == "one_hot" and spec.levels is None):
            continue
        value = exp.cast(_col(spec.column, ROW), "VARCHAR")
        query = (exp.select(value.as_("level")).from_(parse_sql(base_sql, skill_name="features").subquery(ROW))
                 .where(exp.not_(exp.Is(this=value.copy(), expression=exp.Null())))
                 .group_by(exp.Literal.number(1)).order_by("COUNT(*) DESC", "1").limit(MAX_ONE_HOT_LEVELS))
        out[spec.name] = [str(v) for v in ctx.sql(query.sql(dialect=DIALECT)).column("level").to_pylist()]
    return out


def _quantile_edges(ctx: SkillContext, base_sql: str, specs: Sequence[FeatureSpec]) -> dict[str, list[float]]:
    """Inner quantile edges (governed) of every column binned by `quantiles`, by spec name: the smallest value at
    or above each 1/q-th of the non-null rows in order (portable SQL: a row number, no quantile function)."""
    out = {}
    for spec in specs:
        if not (isinstance(spec, BinSpec) and spec.quantiles is not None and spec.quantile_edges is None):
            continue
        value = exp.cast(_col(spec.column, ROW), "DOUBLE")
        ranked = (exp.select(value.as_("v"), exp.Window(this=exp.RowNumber(), order=exp.Order(
                      expressions=[exp.Ordered(this=value.copy())])).as_("rn"),
                             exp.Window(this=exp.Count(this=exp.Star())).as_("n"))
                  .from_(parse_sql(base_sql, skill_name="features").subquery(ROW))
                  .where(exp.not_(exp.Is(this=value.copy(), expression=exp.Null()))))
        picks = [exp.Min(this=exp.case().when(
            exp.GTE(this=exp.column("rn"), expression=exp.Mul(this=exp.column("n"), expression=exp.Literal.number(
                round(k / spec.quantiles, 6)))), exp.column("v"))).as_(f"q{k}") for k in range(1, spec.quantiles)]
        row = ctx.sql(exp.select(*picks).from_(ranked.subquery("__ranked")).sql(dialect=DIALECT)).to_pylist()
        out[spec.name] = sorted({float(v) for v in (row[0] if row else {}).values() if v is not None})
    return out


def features_reads(inp: FeaturesInput) -> Reads:
    """`reads=` hook: the base query's reads plus each related table's key, time and value columns."""
    related: Reads = {spec.table.lower(): {spec.key.lower(), spec.time.lower(), spec.column.lower()}
                      for spec in inp.specs if isinstance(spec, RelatedSpec)}
    parts = [sql_reads(inp.base_sql)] + [{t: c} for t, c in related.items()]
    return merge_reads(*parts)


@skill("features", reads=features_reads, tags=("data",))
def features(ctx: SkillContext, inp: FeaturesInput) -> FeaturesOutput:
    """Add engineered features to the rows of `base_sql`, computed in one governed SQL statement: rolling-window
    aggregates (avg/sum/min/max/count/stddev over the last N days before `cutoff`), lags (value k rows before the
    cutoff) and trends over a related table joined on `key`; ratios/differences/sums/products of columns; frequency
    or one-hot category encodings; missing-value flags; bins (fixed edges or quantiles); date parts; a numeric
    column's mean/min/max/stddev per category level. Features over the base columns alone need no `key`. Refuses
    any feature that could read rows at or after the cutoff (leakage)."""
    check_leakage(inp.specs, inp.cutoff)
    base = _base_schema(ctx, inp.base_sql)
    check_names(inp.specs, inp.key, inp.cutoff, base, ctx.engine.catalog(ctx.principal))
    key = _lookup_name(base, inp.key) if inp.key is not None else None
    levels, edges = _one_hot_levels(ctx, inp.base_sql, inp.specs), _quantile_edges(ctx, inp.base_sql, inp.specs)
    compiled = compile_features(inp.base_sql, key, inp.specs, inp.cutoff, list(base), levels, edges,
                                [c for c, t in base.items() if _TEMPORAL.match(t)])
    ctx.progress(f"computing {len(compiled.features)} features in one governed query", done=0, unit="rows")
    statement = compiled.expression.sql(dialect=DIALECT)
    artifact = save_governed(ctx, statement, name="features", key=key, skill_name="features")
    ctx.progress(f"read {artifact.rows} rows with {len(compiled.features)} features", done=artifact.rows,
                 total=artifact.rows, unit="rows")
    base_names = {c.lower() for c in base}

    def source(spec: EncodeSpec | GroupSpec) -> str:  # the base rows, or the features' rows when it reads features
        return inp.base_sql if all(o.lower() in base_names for o in spec.operands()) else statement

    fitted = [_fit(ctx, spec, levels, edges, source) for spec in inp.specs]
    return FeaturesOutput(table=artifact, features=compiled.features, fitted=fitted)


def _fit(ctx: SkillContext, spec: FeatureSpec, levels: Mapping[str, list[str]], edges: Mapping[str, list[float]],
         source: Callable[[EncodeSpec | GroupSpec], str]) -> FeatureSpec:
    """`spec` with what it learnt from the rows of `source(spec)` (governed), so that other rows get the same
    mapping."""
    if isinstance(spec, EncodeSpec) and spec.method == "one_hot" and spec.levels is None:
        return spec.model_copy(update={"levels": levels.get(spec.name, [])})
    if isinstance(spec, BinSpec) and spec.quantiles is not None and spec.quantile_edges is None:
        return spec.model_copy(update={"quantile_edges": edges.get(spec.name, [])})
    if isinstance(spec, EncodeSpec) and spec.method == "frequency" and spec.shares is None:
        counts, total = _per_level(ctx, source(spec), spec.column, exp.Count(this=exp.Star()))
        shares = {k: v / total for k, v in counts.items() if k is not None and v is not None} if total else {}
        null = counts.get(None)
        return spec.model_copy(update={"shares": shares, "null_share": null / total if total and null else None})
    if isinstance(spec, GroupSpec) and spec.groups is None:
        aggs: dict[str, type[exp.AggFunc]] = {"avg": exp.Avg, "min": exp.Min, "max": exp.Max, "stddev": exp.Stddev}
        value = aggs[spec.agg](this=exp.cast(_col(spec.value, ROW), "DOUBLE"))
        found, _ = _per_level(ctx, source(spec), spec.column, value)
        null = found.pop(None, None)
        return spec.model_copy(update={"groups": {k: v for k, v in found.items() if k is not None},
                                       "null_group": null})
    return spec


def _per_level(ctx: SkillContext, source: str, column: str,
               value: exp.Expr) -> tuple[dict[str | None, float | None], int]:
    """{level (text; None for null): value} for null and the MAX_FITTED_LEVELS most frequent levels of `column` in
    the rows of `source` (one governed query), and the number of rows."""
    level = exp.cast(_col(column, ROW), "VARCHAR")
    query = (exp.select(level.as_("level"), value.as_("value"), exp.Count(this=exp.Star()).as_("n"),
                        exp.Window(this=exp.Sum(this=exp.Count(this=exp.Star()))).as_("total"))
             .from_(parse_sql(source, skill_name="features").subquery(ROW)).group_by(exp.Literal.number(1))
             .order_by(exp.Ordered(this=exp.Is(this=level.copy(), expression=exp.Null()), desc=True),
                       exp.Ordered(this=exp.column("n"), desc=True), exp.Ordered(this=exp.Literal.number(1)))
             .limit(MAX_FITTED_LEVELS + 1))
    rows = ctx.sql(query.sql(dialect=DIALECT)).to_pylist()
    total = int(rows[0]["total"]) if rows else 0
    found: dict[str | None, float | None] = {}
    for row in rows:
        if row["level"] is None or len(found) < MAX_FITTED_LEVELS:
            found[row["level"]] = None if row["value"] is None else float(row["value"])
    return found, total


def _lookup_name(columns: Mapping[str, str], name: str) -> str:
    return next((c for c in columns if c.lower() == name.lower()), name)
