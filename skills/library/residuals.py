"""`residuals`: where does the model fail? Per-row error, then the slices (category levels, quantile bins of numbers)
with the highest mean error, with counts and lift (slice error / overall error).

Slices are computed over the model's features and, by default, every other usable column of the table too: a bad
slice on a column the model does not use is exactly the hint the OODA loop looks for.

Rows are never held all at once: the slice columns and the numeric bin edges come from a seeded sample of at most
`SAMPLE_ROWS` rows (the whole table when smaller, so small tables get exactly the slices a full read gives); then
parts of the table (row groups) are scored a batch at a time, in this process or as Ray tasks when the executor
started Ray, and each returns aggregates only (rows, error sums per level, per bin and, while a numeric column has
few distinct values, per value), merged here. Counts, errors and lifts are exact on every row; on a table larger than
the sample only the choice of columns and inner bin edges comes from the sample (outer edges are the true min/max).
"""
from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from skills.context import SkillContext
from skills.errors import SkillError
from skills.frame import default_features, encode_target
from skills.library.boosting.saved_model import load_booster, model_frame, predict
from skills.library.boosting.tasks import SAMPLE_ROWS, StoredTable, ray_tasks, run_each
from skills.registry import skill
from skills.types import ModelArtifact, TableArtifact, Task

if TYPE_CHECKING:
    import xgboost as xgb

    from skills.artifacts import ArtifactStore

ErrorKind = Literal["logloss", "miss", "abs", "squared"]
MISSING = "(missing)"
_EPS = 1e-7


class ResidualsInput(BaseModel):
    """A trained model, rows with the true target, and how to slice them."""

    model_config = ConfigDict(extra="forbid")
    model: ModelArtifact
    table: TableArtifact
    columns: list[str] | None = Field(default=None, description="columns to slice by; default: every usable one")
    top_k: int = Field(default=10, ge=1)
    min_count: int = Field(default=30, ge=1, description="smallest slice worth reporting")
    bins: int = Field(default=5, ge=2, le=50, description="quantile bins per numeric column")
    error: Literal["auto", "logloss", "miss", "abs", "squared"] = Field(
        default="auto", description="auto: log loss for binary classification, miss (1 - probability of the true "
                                    "class) for multiclass, squared error for regression")


class Slice(BaseModel):
    """Rows where `column` is `slice` (a level, or a [low, high) range): how many, their mean error, and lift."""

    model_config = ConfigDict(extra="forbid")
    column: str
    slice: str
    count: int
    error: float
    lift: float
    in_model: bool = Field(description="whether the model uses the column as a feature")


class ResidualsOutput(BaseModel):
    """The worst slices (highest mean error first) and the mean error over all rows."""

    model_config = ConfigDict(extra="forbid")
    slices: list[Slice]
    overall_error: float
    error_name: str
    rows: int


def row_errors(y: np.ndarray, pred: np.ndarray, kind: ErrorKind) -> np.ndarray:
    """Per-row error: log loss (probabilities), miss (1 - probability of the true class), |pred - y| or
    (pred - y)^2. Multiclass `pred` (rows x classes, `y` the class index): log loss or miss of the true class."""
    if pred.ndim == 2:
        p_true = pred[np.arange(len(y)), y.astype(np.int64)].astype(np.float64)
        return -np.log(np.clip(p_true, _EPS, 1.0)) if kind == "logloss" else 1.0 - p_true
    if kind == "miss":
        return np.abs(pred.astype(np.float64) - y)
    if kind == "logloss":
        p = np.clip(pred, _EPS, 1 - _EPS)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))
    diff = pred.astype(np.float64) - y
    return np.abs(diff) if kind == "abs" else diff * diff


def probabilities(pred: np.ndarray) -> np.ndarray:
    """Classification outputs as probabilities (a margin-output objective gives log-odds outside [0, 1])."""
    if pred.size and (pred.min() < 0 or pred.max() > 1):
        return 1.0 / (1.0 + np.exp(-pred))
    return pred


def resolve_error(kind: str, task: Task, multiclass: bool = False) -> ErrorKind:
    """`auto` -> log loss for binary classification, miss (1 - p(true class)) for multiclass, squared error for
    regression (log loss and miss need probabilities; a multiclass model's errors are of the true class)."""
    if kind == "auto":
        return ("miss" if multiclass else "logloss") if task == "classification" else "squared"
    if kind in ("logloss", "miss") and task != "classification":
        what = "log loss" if kind == "logloss" else "the miss (1 - probability of the true class)"
        raise SkillError(f"{what} needs a classification model", skill="residuals", hint='use error="squared"')
    if multiclass and kind not in ("logloss", "miss"):
        raise SkillError(f"{kind} error needs one prediction per row; a multiclass model predicts one probability "
                         f"per class", skill="residuals", hint='use error="miss" or "logloss" (or "auto")')
    return kind  # type: ignore[return-value]


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.4g}"


Codes = tuple[np.ndarray, list[str]]  # per-row slice index, and the name of each slice


def _is_numeric(type_: pa.DataType) -> bool:
    return pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_)


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(pc.cast(column, pa.float64()), np.nan).to_numpy(zero_copy_only=False)


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray | None:
    """Distinct quantile edges of the non-missing values (None when there are none)."""
    ok = values[~np.isnan(values)]
    return np.unique(np.quantile(ok, np.linspace(0, 1, bins + 1))) if len(ok) else None


def _bin_codes(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, max(len(edges) - 2, 0))


def _bin_names(edges: np.ndarray) -> list[str]:
    if len(edges) < 2:
        return [f"[{_fmt(edges[0])}, {_fmt(edges[0])}]"]
    return [f"[{_fmt(lo)}, {_fmt(hi)}{']' if i == len(edges) - 2 else ')'}"
            for i, (lo, hi) in enumerate(itertools.pairwise(edges))]


def _numeric_codes(values: np.ndarray, bins: int) -> Codes:
    """Quantile bins "[low, high)" (the last one closed); a column with few distinct values: one slice per value.
    Missing values get the last code."""
    ok = ~np.isnan(values)
    distinct = np.unique(values[ok])
    if len(distinct) <= bins:
        names = [_fmt(v) for v in distinct]
        codes = np.searchsorted(distinct, values)
    else:
        edges = quantile_edges(values, bins)
        assert edges is not None  # more than `bins` distinct values
        names, codes = _bin_names(edges), _bin_codes(values, edges)
    return np.where(ok, codes, len(names)), [*names, MISSING]


def slice_codes(column: pa.ChunkedArray, bins: int) -> Codes:
    """Each row's slice: its level (strings, booleans, dates) or its quantile bin (numbers); nulls: "(missing)"."""
    if _is_numeric(column.type):
        return _numeric_codes(_floats(column), bins)
    encoded = pc.dictionary_encode(pc.fill_null(pc.cast(column, pa.string()), MISSING)).combine_chunks()
    return encoded.indices.to_numpy(zero_copy_only=False), [str(v) for v in encoded.dictionary.to_pylist()]


def slices_of(name: str, names: Sequence[str], counts: np.ndarray, sums: np.ndarray, rows: int, overall: float,
              min_count: int, in_model: bool) -> list[Slice]:
    """Mean error, count and lift of every slice of one column with at least `min_count` of its `rows` rows."""
    out = []
    for level, count, total in zip(names, counts, sums, strict=True):
        if count < min_count or count == rows:  # the whole table is not a slice
            continue
        mean = float(total / count)
        out.append(Slice(column=name, slice=level, count=int(count), error=mean,
                         lift=mean / overall if overall > 0 else 0.0, in_model=in_model))
    return out


def column_slices(name: str, codes: Codes, errors: np.ndarray, overall: float, min_count: int,
                  in_model: bool) -> list[Slice]:
    """Mean error, count and lift of every slice of one column with at least `min_count` rows."""
    index, names = codes
    counts = np.bincount(index, minlength=len(names))
    sums = np.bincount(index, weights=errors, minlength=len(names))
    return slices_of(name, names, counts, sums, len(errors), overall, min_count, in_model)


# ------------------------------------------------------------------------------------------------ aggregates


Sums = dict[Any, list[float]]  # slice key -> [count, error sum]


def _add(into: Sums, keys: Sequence[Any], counts: np.ndarray, sums: np.ndarray) -> None:
    for key, count, total in zip(keys, counts, sums, strict=True):
        if count:
            slot = into.setdefault(key, [0, 0.0])
            slot[0] += int(count)
            slot[1] += float(total)


def _merge(into: Sums, other: Sums) -> None:
    _add(into, list(other), np.array([v[0] for v in other.values()]), np.array([v[1] for v in other.values()]))


@dataclass
class Tally:
    """Counts and error sums of some rows: overall, per level of each column, per quantile bin (planned edges) and,
    while a numeric column has at most `bins` distinct values, per value. Small whatever the rows: aggregates only."""

    rows: int = 0
    error_sum: float = 0.0
    levels: dict[str, Sums] = field(default_factory=dict)  # categorical column -> level -> [count, sum]
    bins: dict[str, Sums] = field(default_factory=dict)  # numeric column -> bin index (-1: missing) -> [count, sum]
    values: dict[str, Sums | None] = field(default_factory=dict)  # numeric column -> value -> [count, sum], or None
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # numeric column -> (min, max)

    def merge(self, other: Tally, max_values: int) -> Tally:
        """Add `other` in (batches or tasks of the same plan)."""
        self.rows += other.rows
        self.error_sum += other.error_sum
        for name, sums in other.levels.items():
            _merge(self.levels.setdefault(name, {}), sums)
        for name, sums in other.bins.items():
            _merge(self.bins.setdefault(name, {}), sums)
        for name, vals in other.values.items():
            mine = self.values.setdefault(name, {})
            if mine is not None and vals is not None:
                _merge(mine, vals)
            if mine is None or vals is None or len(mine) > max_values:
                self.values[name] = None
        for name, (lo, hi) in other.ranges.items():
            old = self.ranges.get(name, (lo, hi))
            self.ranges[name] = (min(old[0], lo), max(old[1], hi))
        return self


@dataclass(frozen=True)
class SlicePlan:
    """What a batch task needs (picklable): the model, the error, the slice columns, numeric bin edges (from a
    sample; None: no value seen there) and the target's levels (every batch encodes labels the same way)."""

    store: ArtifactStore
    model: ModelArtifact
    kind: ErrorKind
    columns: list[str]
    edges: dict[str, np.ndarray | None]
    bins: int
    target_levels: list[str]

    @property
    def reads(self) -> list[str]:
        """The columns a batch reads."""
        return list(dict.fromkeys([*self.model.features, self.model.target, *self.columns]))


@dataclass
class Scorer:
    """A plan with its loaded booster and the table to stream (what one process or task loads once)."""

    plan: SlicePlan
    booster: xgb.Booster
    source: StoredTable


def load_scorer(plan: SlicePlan, source: StoredTable) -> Scorer:
    """Load the plan's booster (once per process or task)."""
    return Scorer(plan, load_booster(plan.store, plan.model.uri, "residuals"), source)


def labels_of(column: pa.ChunkedArray, task: Task, levels: Sequence[str],
              classes: Sequence[str] = ()) -> np.ndarray:
    """The encoded target of some rows: with the model's `classes` when it records them, else (an older model) with
    the positive class chosen from the whole table's `levels`: they are appended before encoding (and cut off
    after), so a batch holding one class encodes it as the whole table does."""
    if task == "regression" or classes:
        return encode_target(column, task, classes or None)
    extra = pa.chunked_array([pa.array(levels, pa.string())])
    return encode_target(pa.chunked_array([*pc.cast(column, pa.string()).chunks, *extra.chunks]), task)[: len(column)]


def batch_errors(scorer: Scorer, batch: pa.Table) -> np.ndarray:
    """Per-row errors of one batch."""
    model = scorer.plan.model
    frame = model_frame(batch, model, "residuals")
    pred = predict(scorer.booster, frame, model)
    if model.task == "classification":
        pred = probabilities(pred)
    return row_errors(labels_of(batch.column(model.target), model.task, scorer.plan.target_levels, model.classes),
                      pred, scorer.plan.kind)


def tally_batch(plan: SlicePlan, batch: pa.Table, errors: np.ndarray) -> Tally:
    """Aggregates of one batch's errors: overall, per level, per planned bin, per value while few."""
    out = Tally(rows=len(errors), error_sum=float(errors.astype(np.float64).sum()))
    for name in plan.columns:
        column = batch.column(name)
        if not _is_numeric(column.type):
            index, names = slice_codes(column, plan.bins)
            _add(out.levels.setdefault(name, {}), names, np.bincount(index, minlength=len(names)),
                 np.bincount(index, weights=errors, minlength=len(names)))
            continue
        values = _floats(column)
        ok = ~np.isnan(values)
        edges = plan.edges.get(name)
        codes = np.where(ok, _bin_codes(values, edges) if edges is not None else 0, -1)
        keys, index = np.unique(codes, return_inverse=True)
        _add(out.bins.setdefault(name, {}), keys.tolist(), np.bincount(index), np.bincount(index, weights=errors))
        distinct, index = np.unique(values[ok], return_inverse=True)
        few: Sums | None = {} if len(distinct) <= plan.bins else None
        out.values[name] = few
        if few is not None:
            _add(few, distinct.tolist(), np.bincount(index, minlength=len(distinct)),
                 np.bincount(index, weights=errors[ok], minlength=len(distinct)))
        if ok.any():
            out.ranges[name] = (float(values[ok].min()), float(values[ok].max()))
    return out


def tally_part(scorer: Scorer, part: range | None) -> Tally:
    """Aggregates of one part of the table (row groups), streamed a batch at a time."""
    total = Tally()
    for batch in scorer.source.batches(scorer.plan.reads, part):
        total.merge(tally_batch(scorer.plan, batch, batch_errors(scorer, batch)), scorer.plan.bins)
    return total


def _numeric_slices(tally: Tally, name: str, edges: np.ndarray | None) -> tuple[list[str], list[list[float]]]:
    """Slice names and [count, sum] of a numeric column: a slice per value when the whole table has at most `bins`
    distinct values, else the planned bins, named with the whole table's min and max as outer edges."""
    missing = tally.bins.get(name, {}).get(-1, [0, 0.0])
    values = tally.values.get(name)
    if values is not None:
        keys = sorted(values)
        return [*(_fmt(v) for v in keys), MISSING], [*(values[k] for k in keys), missing]
    lo, hi = tally.ranges[name]
    full = np.array([lo, hi]) if edges is None else np.array([lo, *edges[1:-1], hi]) if len(edges) > 1 else \
        np.array([lo, hi])
    names = _bin_names(full)
    sums = tally.bins[name]
    return [*names, MISSING], [*(sums.get(i, [0, 0.0]) for i in range(len(names))), missing]


def tally_slices(plan: SlicePlan, tally: Tally, overall: float, min_count: int) -> dict[str, list[Slice]]:
    """Every column's slices from the merged aggregates."""
    out = {}
    for name in plan.columns:
        if name in tally.levels:
            names, pairs = list(tally.levels[name]), list(tally.levels[name].values())
        else:
            names, pairs = _numeric_slices(tally, name, plan.edges.get(name))
        counts = np.array([p[0] for p in pairs], dtype=np.int64)
        sums = np.array([p[1] for p in pairs], dtype=np.float64)
        out[name] = slices_of(name, names, counts, sums, tally.rows, overall, min_count, name in plan.model.features)
    return out


# ---------------------------------------------------------------------------------------------------------- skill


def _slice_columns(schema: pa.Schema, sample: pa.Table, model: ModelArtifact, key: str | None,
                   columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        return default_features(sample, model.target, exclude=[key] if key else [])
    unknown = [c for c in columns if c not in schema.names]
    if unknown:
        raise SkillError(f"column(s) not in the table: {', '.join(unknown)}", skill="residuals",
                         hint=f"pick from: {', '.join(schema.names)}")
    return [c for c in columns if c != model.target]


def target_levels(source: StoredTable, target: str) -> list[str]:
    """Distinct values of the target (as strings), streamed a batch at a time."""
    seen: set[str] = set()
    for batch in source.batches([target]):
        seen.update(str(v) for v in pc.unique(pc.cast(batch.column(target), pa.string())).to_pylist() if v is not None)
    return sorted(seen)


def plan_slices(ctx: SkillContext, inp: ResidualsInput, source: StoredTable) -> SlicePlan:
    """Slice columns and numeric bin edges from a seeded sample of at most SAMPLE_ROWS rows (the whole table when it
    is smaller: then every choice is exactly the one a full read would make)."""
    schema, model = source.schema, inp.model
    missing = [c for c in [*model.features, model.target] if c not in schema.names]
    if missing:
        raise SkillError(f"the table lacks column(s) the model needs: {', '.join(missing)}", skill="residuals",
                         hint="pass the table the model was trained on (or one with the same columns)")
    candidates = [c for c in (inp.columns or schema.names) if c in schema.names]
    sample = source.sample(candidates, SAMPLE_ROWS, ctx.settings.seed)
    columns = _slice_columns(schema, sample, model, inp.table.key, inp.columns)
    edges = {c: quantile_edges(_floats(sample.column(c)), inp.bins) for c in columns
             if _is_numeric(schema.field(c).type)}
    levels = target_levels(source, model.target) if model.task == "classification" and not model.classes else []
    kind = resolve_error(inp.error, model.task, model.multiclass)
    return SlicePlan(ctx.artifacts, model, kind, columns, edges, inp.bins, levels)


@skill("residuals", tags=("analysis",))
def residuals(ctx: SkillContext, inp: ResidualsInput) -> ResidualsOutput:
    """Find where a trained model fails: per-row error (log loss for binary classification, 1 - probability of the
    true class for multiclass, squared error for regression),
    then the slices of rows (category levels and quantile bins of numeric columns, including columns the model does
    not use) with the highest mean error, with their size and lift over the overall error."""
    source, on = StoredTable(ctx.artifacts, inp.table.uri), ray_tasks(ctx)
    plan = plan_slices(ctx, inp, source)
    parts: list[range | None] = list(source.parts(on.concurrency * 2)) if on else [None]

    def part_done(i: int, part: Tally) -> None:
        ctx.progress(f"scored part {i + 1} of {len(parts)} ({part.rows} rows)", done=i + 1, total=len(parts),
                     unit="parts")

    tallies = run_each(tally_part, partial(load_scorer, plan, source), parts, on,
                       lambda i: f"residuals part {i + 1} of {len(parts)}", part_done)
    tally = functools.reduce(lambda a, b: a.merge(b, inp.bins), tallies, Tally())
    overall = tally.error_sum / tally.rows if tally.rows else 0.0
    ctx.progress(f"scored {tally.rows} rows, mean {plan.kind} {overall:.4f}", done=tally.rows, total=tally.rows,
                 unit="rows")
    found: list[Slice] = []
    for i, (name, slices) in enumerate(tally_slices(plan, tally, overall, inp.min_count).items(), 1):
        found += slices
        ctx.progress(f"sliced {name}", done=i, total=len(plan.columns), unit="columns")
    found.sort(key=lambda s: (-s.error, -s.count, s.column, s.slice))
    return ResidualsOutput(slices=found[: inp.top_k], overall_error=overall, error_name=plan.kind, rows=tally.rows)
