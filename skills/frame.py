"""Arrow table -> numeric design matrix, the one place where columns become model inputs.

Numbers stay numbers (float32, nulls -> NaN). Strings and booleans become categorical codes over a fixed, sorted list of
levels that is stored in the ModelArtifact, so training, tuning shards, explanation and scoring encode identically;
xgboost sees them as native categorical features (feature type "c"). Unseen levels become missing.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skills.errors import SkillError
from skills.types import Task

_POSITIVE = {"1", "true", "t", "yes", "y", "churn", "churned", "positive", "pos"}
MAX_LEVELS = 256


@dataclass
class Frame:
    """Features as float32 matrix (+ label). `feature_types` uses xgboost's codes: "q" numeric, "c" categorical."""

    X: np.ndarray
    y: np.ndarray | None
    features: list[str]
    feature_types: list[str]
    categories: dict[str, list[str]]

    @property
    def labels(self) -> np.ndarray:
        """The label column; a frame built without a target has none (a bug in the caller, said plainly)."""
        if self.y is None:
            raise ValueError("this frame was built without a target column, so it has no labels")
        return self.y

    def dmatrix(self, **kwargs: object):  # noqa: ANN201 - xgboost is imported lazily
        import xgboost as xgb

        return xgb.DMatrix(
            self.X, label=self.y, feature_names=self.features, feature_types=self.feature_types,
            enable_categorical=True, **kwargs,
        )


def is_categorical(type_: pa.DataType) -> bool:
    """Strings, booleans and dictionaries: encoded as categorical codes."""
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_boolean(type_) \
        or pa.types.is_dictionary(type_)


def _is_usable(type_: pa.DataType) -> bool:
    return is_categorical(type_) or pa.types.is_integer(type_) or pa.types.is_floating(type_) \
        or pa.types.is_decimal(type_)


def _as_strings(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    return pc.cast(col, pa.string())


def level_counts(col: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    """How often each level (as a string) occurs in a categorical column, nulls left out."""
    return {c["values"]: c["counts"] for c in pc.value_counts(_as_strings(col).drop_null()).to_pylist()}


def top_levels(counts: Mapping[str, int]) -> list[str]:
    """The MAX_LEVELS most frequent levels (ties: alphabetical), sorted: a model's categories for one column."""
    ranked = sorted(counts.items(), key=lambda c: (-c[1], c[0]))
    return sorted(level for level, _ in ranked[:MAX_LEVELS])


def infer_categories(table: pa.Table, features: Iterable[str]) -> dict[str, list[str]]:
    """Sorted levels of each categorical feature (strings/booleans), capped at MAX_LEVELS most frequent."""
    return {name: top_levels(level_counts(table.column(name)))
            for name in features if is_categorical(table.column(name).type)}


def feature_candidates(schema: pa.Schema, target: str, exclude: Sequence[str] = ()) -> list[pa.Field]:
    """Columns that may be features: usable types, neither the target nor excluded."""
    return [f for f in schema if f.name != target and f.name not in exclude and _is_usable(f.type)]


def counts_levels(type_: pa.DataType) -> bool:
    """True for columns whose number of distinct values decides whether they are features (strings, not flags)."""
    return is_categorical(type_) and not pa.types.is_boolean(type_)


def identifier_like(distinct: float, rows: int) -> bool:
    """Too many levels to generalise from: identifiers and free text."""
    return distinct > MAX_LEVELS or distinct > 0.5 * max(rows, 1)


def default_features(table: pa.Table, target: str, exclude: Sequence[str] = ()) -> list[str]:
    """Every usable column except the target, excluded ones (keys, times) and near-unique strings (ids, names)."""
    return [f.name for f in feature_candidates(table.schema, target, exclude)
            if not (counts_levels(f.type)
                    and identifier_like(pc.count_distinct(table.column(f.name)).as_py(), table.num_rows))]


def infer_task(table: pa.Table, target: str) -> Task:
    """Classification for strings/booleans/two-valued columns; regression otherwise."""
    col = table.column(target)
    if is_categorical(col.type) or pc.count_distinct(col.drop_null()).as_py() <= 2:
        return "classification"
    return "regression"


def target_level(value: object) -> str:
    """A target value as the level `positive_level` compares: its string, stripped and lower-cased."""
    return str(value).strip().lower()


def positive_level(levels: Iterable[str]) -> str:
    """The positive class among a binary target's levels (`target_level`s): yes/true/1/churn..., else the last."""
    ordered = sorted(set(levels))
    if len(ordered) > 2:
        raise SkillError(
            f"classification needs a binary target, found {len(ordered)} levels",
            hint="pick a yes/no column as target, or ask for a regression",
        )
    return next((lv for lv in ordered if lv in _POSITIVE), ordered[-1])


def encode_target(col: pa.ChunkedArray | pa.Array, task: Task, positive: str | None = None) -> np.ndarray:
    """Regression: float32. Classification: 1.0 for the positive level (yes/true/1/churn...), else 0.0. Pass the
    `positive` level when `col` is one batch of a larger table (a batch may hold one class only)."""
    if col.null_count:
        raise SkillError(f"the target has {col.null_count} missing values", hint="filter them out in the query")
    if task == "regression":
        return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float32)
    values = [target_level(v) for v in _as_strings(col).to_pylist()]
    positive = positive_level(values) if positive is None else positive
    return np.fromiter((v == positive for v in values), dtype=np.float32, count=len(values))


def encode_features(table: pa.Table, features: Sequence[str], categories: dict[str, list[str]]) -> np.ndarray:
    """float32 matrix in the order of `features`; categorical columns as codes into `categories`."""
    missing = [f for f in features if f not in table.column_names]
    if missing:
        raise SkillError(f"columns not in the data: {', '.join(missing)}", hint="check the feature list and the query")
    X = np.empty((table.num_rows, len(features)), dtype=np.float32)
    for j, name in enumerate(features):
        col = table.column(name)
        if name in categories:
            idx = pc.index_in(_as_strings(col), value_set=pa.array(categories[name], pa.string()))
            X[:, j] = pc.fill_null(pc.cast(idx, pa.float32()), np.nan).to_numpy(zero_copy_only=False)
        else:
            X[:, j] = pc.fill_null(pc.cast(col, pa.float32()), np.nan).to_numpy(zero_copy_only=False)
    return X


def build_frame(
    table: pa.Table, features: Sequence[str], target: str | None, task: Task,
    categories: dict[str, list[str]] | None = None,
) -> Frame:
    """The design matrix for `features` (+ label). Pass the model's `categories` when scoring."""
    cats = infer_categories(table, features) if categories is None else categories
    X = encode_features(table, features, cats)
    y = encode_target(table.column(target), task) if target else None
    types = ["c" if f in cats else "q" for f in features]
    return Frame(X=X, y=y, features=list(features), feature_types=types, categories=cats)
