"""`residuals`: where does the model fail? Per-row error, then the slices (category levels, quantile bins of numbers)
with the highest mean error, with counts and lift (slice error / overall error).

Slices are computed over the model's features and, by default, every other usable column of the table too: a bad
slice on a column the model does not use is exactly the hint the OODA loop looks for.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from skills.context import SkillContext
from skills.errors import SkillError
from skills.frame import default_features
from skills.library.boosting.saved_model import load_booster, model_frame, predict
from skills.registry import skill
from skills.types import ModelArtifact, TableArtifact, Task

ErrorKind = Literal["logloss", "abs", "squared"]
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
    error: Literal["auto", "logloss", "abs", "squared"] = Field(
        default="auto", description="auto: log loss for classification, squared error for regression")


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
    """Per-row error: log loss (probabilities), |pred - y| or (pred - y)^2."""
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


def resolve_error(kind: str, task: Task) -> ErrorKind:
    """`auto` -> log loss for classification, squared error for regression (log loss needs probabilities)."""
    if kind == "auto":
        return "logloss" if task == "classification" else "squared"
    if kind == "logloss" and task != "classification":
        raise SkillError("log loss needs a classification model", skill="residuals", hint='use error="squared"')
    return kind  # type: ignore[return-value]


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.4g}"


Codes = tuple[np.ndarray, list[str]]  # per-row slice index, and the name of each slice


def _numeric_codes(values: np.ndarray, bins: int) -> Codes:
    """Quantile bins "[low, high)" (the last one closed); a column with few distinct values: one slice per value.
    Missing values get the last code."""
    ok = ~np.isnan(values)
    distinct = np.unique(values[ok])
    if len(distinct) <= bins:
        names = [_fmt(v) for v in distinct]
        codes = np.searchsorted(distinct, values)
    else:
        edges = np.unique(np.quantile(values[ok], np.linspace(0, 1, bins + 1)))
        names = [f"[{_fmt(lo)}, {_fmt(hi)}{']' if i == len(edges) - 2 else ')'}"
                 for i, (lo, hi) in enumerate(itertools.pairwise(edges))]
        codes = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    return np.where(ok, codes, len(names)), [*names, MISSING]


def slice_codes(column: pa.ChunkedArray, bins: int) -> Codes:
    """Each row's slice: its level (strings, booleans, dates) or its quantile bin (numbers); nulls: "(missing)"."""
    type_ = column.type
    if pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_):
        values = pc.fill_null(pc.cast(column, pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        return _numeric_codes(values, bins)
    encoded = pc.dictionary_encode(pc.fill_null(pc.cast(column, pa.string()), MISSING)).combine_chunks()
    return encoded.indices.to_numpy(zero_copy_only=False), [str(v) for v in encoded.dictionary.to_pylist()]


def column_slices(name: str, codes: Codes, errors: np.ndarray, overall: float, min_count: int,
                  in_model: bool) -> list[Slice]:
    """Mean error, count and lift of every slice of one column with at least `min_count` rows."""
    index, names = codes
    counts = np.bincount(index, minlength=len(names))
    sums = np.bincount(index, weights=errors, minlength=len(names))
    out = []
    for level, count, total in zip(names, counts, sums, strict=True):
        if count < min_count or count == len(errors):  # the whole table is not a slice
            continue
        mean = float(total / count)
        out.append(Slice(column=name, slice=level, count=int(count), error=mean,
                         lift=mean / overall if overall > 0 else 0.0, in_model=in_model))
    return out


def _slice_columns(table: pa.Table, model: ModelArtifact, key: str | None, columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        return default_features(table, model.target, exclude=[key] if key else [])
    unknown = [c for c in columns if c not in table.column_names]
    if unknown:
        raise SkillError(f"column(s) not in the table: {', '.join(unknown)}", skill="residuals",
                         hint=f"pick from: {', '.join(table.column_names)}")
    return [c for c in columns if c != model.target]


@skill("residuals", tags=("analysis",))
def residuals(ctx: SkillContext, inp: ResidualsInput) -> ResidualsOutput:
    """Find where a trained model fails: per-row error (log loss for classification, squared error for regression),
    then the slices of rows (category levels and quantile bins of numeric columns, including columns the model does
    not use) with the highest mean error, with their size and lift over the overall error."""
    table = ctx.artifacts.get_table(inp.table.uri)
    frame = model_frame(table, inp.model, "residuals", with_target=True)
    kind = resolve_error(inp.error, inp.model.task)
    pred = predict(load_booster(ctx.artifacts, inp.model.uri, "residuals"), frame, inp.model)
    if inp.model.task == "classification":
        pred = probabilities(pred)
    assert frame.y is not None  # model_frame(with_target=True) always encodes the target
    errors = row_errors(frame.y, pred, kind)
    overall = float(errors.mean()) if len(errors) else 0.0
    ctx.progress(f"scored {table.num_rows} rows, mean {kind} {overall:.4f}", done=table.num_rows,
                 total=table.num_rows, unit="rows")
    found: list[Slice] = []
    names = _slice_columns(table, inp.model, inp.table.key, inp.columns)
    for i, name in enumerate(names, 1):
        codes = slice_codes(table.column(name), inp.bins)
        found += column_slices(name, codes, errors, overall, inp.min_count, name in inp.model.features)
        ctx.progress(f"sliced {name}", done=i, total=len(names), unit="columns")
    found.sort(key=lambda s: (-s.error, -s.count, s.column, s.slice))
    return ResidualsOutput(slices=found[: inp.top_k], overall_error=overall, error_name=kind, rows=table.num_rows)
