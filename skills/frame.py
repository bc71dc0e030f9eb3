"""Arrow table -> numeric design matrix, the one place where columns become model inputs.

Numbers stay numbers (float32, nulls -> NaN). Strings and booleans become categorical codes over a fixed, sorted list of
levels that is stored in the ModelArtifact, so training, tuning shards, explanation and scoring encode identically;
xgboost sees them as native categorical features (feature type "c"). Unseen levels become missing.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
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


def _is_categorical(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_boolean(type_) \
        or pa.types.is_dictionary(type_)


def _is_usable(type_: pa.DataType) -> bool:
    return _is_categorical(type_) or pa.types.is_integer(type_) or pa.types.is_floating(type_) \
        or pa.types.is_decimal(type_)


def _as_strings(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(col, pa.string())


def infer_categories(table: pa.Table, features: Iterable[str]) -> dict[str, list[str]]:
    """Sorted levels of each categorical feature (strings/booleans), capped at MAX_LEVELS most frequent."""
    cats: dict[str, list[str]] = {}
    for name in features:
        col = table.column(name)
        if not _is_categorical(col.type):
            continue
        counts = pc.value_counts(_as_strings(col).drop_null()).to_pylist()
        counts.sort(key=lambda c: (-c["counts"], c["values"]))
        cats[name] = sorted(c["values"] for c in counts[:MAX_LEVELS])
    return cats


def default_features(table: pa.Table, target: str, exclude: Sequence[str] = ()) -> list[str]:
    """Every usable column except the target, excluded ones (keys, times) and near-unique strings (ids, names)."""
    out = []
    for field in table.schema:
        if field.name == target or field.name in exclude or not _is_usable(field.type):
            continue
        if _is_categorical(field.type) and not pa.types.is_boolean(field.type):
            distinct = pc.count_distinct(table.column(field.name)).as_py()
            if distinct > MAX_LEVELS or distinct > 0.5 * max(table.num_rows, 1):
                continue  # identifiers and free text carry no generalisable signal
        out.append(field.name)
    return out


def infer_task(table: pa.Table, target: str) -> Task:
    """Classification for strings/booleans/two-valued columns; regression otherwise."""
    col = table.column(target)
    if _is_categorical(col.type) or pc.count_distinct(col.drop_null()).as_py() <= 2:
        return "classification"
    return "regression"


def encode_target(col: pa.ChunkedArray, task: Task) -> np.ndarray:
    """Regression: float32. Classification: 1.0 for the positive level (yes/true/1/churn...), else 0.0."""
    if col.null_count:
        raise SkillError(f"the target has {col.null_count} missing values", hint="filter them out in the query")
    if task == "regression":
        return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float32)
    values = [str(v).strip().lower() for v in _as_strings(col).to_pylist()]
    levels = sorted(set(values))
    if len(levels) > 2:
        raise SkillError(
            f"classification needs a binary target, found {len(levels)} levels",
            hint="pick a yes/no column as target, or ask for a regression",
        )
    positive = next((lv for lv in levels if lv in _POSITIVE), levels[-1])
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
