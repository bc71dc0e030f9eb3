"""Arrow table -> numeric design matrix, the one place where columns become model inputs.

Numbers stay numbers (float32, nulls -> NaN). Strings and booleans become categorical codes over a fixed, sorted list of
levels that is stored in the ModelArtifact, so training, tuning shards, explanation and scoring encode identically;
xgboost sees them as native categorical features (feature type "c"). Unseen levels become missing.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skills.errors import SkillError
from skills.types import Task

_POSITIVE = {"1", "true", "t", "yes", "y", "churn", "churned", "positive", "pos"}
MAX_LEVELS = 256
MAX_CLASSES = 50  # more classes than this: group them, or ask for a regression


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
    """The positive class among a binary target's two levels (`target_level`s): yes/true/1/churn..., else the last."""
    ordered = sorted(set(levels))
    return next((lv for lv in ordered if lv in _POSITIVE), ordered[-1])


def is_multiclass(classes: Sequence[str]) -> bool:
    """True for a classification model with more than two classes (softprob: one probability per class)."""
    return len(classes) > 2


def check_target_nulls(nulls: int, rows: int) -> None:
    """A SkillError when `nulls` of a target's `rows` are missing (a distinct one when all are)."""
    if nulls and nulls == rows:
        raise SkillError(f"the target has no values: all {rows} rows are missing",
                         hint="pick another target column, or check the query's joins and filters")
    if nulls:
        raise SkillError(f"the target has {nulls} missing values", hint="filter them out in the query")


def target_classes(counts: Mapping[str, int], nulls: int = 0, positive: str | None = None,
                   truncated: bool = False) -> list[str]:
    """A classification target's classes in label order, from its level counts (`level_counts`; `truncated` when
    only the most frequent levels were counted). Binary: [negative, positive], the positive level being `positive`
    (a `target_level`; on a target with more levels, that level against all others, "not <level>") or else
    yes/true/1/churn..., else the last. Three to MAX_CLASSES levels: multiclass, sorted. A clear SkillError for a
    target that cannot be learned: missing values, one class, an identifier, too many classes, an unknown
    `positive`."""
    merged: Counter[str] = Counter()
    for level, count in counts.items():
        merged[target_level(level)] += count
    rows = sum(merged.values()) + nulls
    check_target_nulls(nulls, rows)
    levels = sorted(merged)
    if positive is not None:
        wanted = target_level(positive)
        if wanted not in merged:
            shown = ", ".join(levels[:20]) + (", ..." if len(levels) > 20 else "")
            raise SkillError(f"the positive level {positive!r} is not a value of the target",
                             hint=f"pick one of its levels: {shown}")
    if len(levels) < 2:
        raise SkillError(f"the target has a single class ({levels[0]!r} in all {rows} rows): nothing to learn"
                         if levels else "the target has no rows",
                         hint="pick a target whose values differ, or widen the query's filters")
    if positive is not None:
        others = [lv for lv in levels if lv != wanted]
        return [others[0] if len(others) == 1 else f"not {wanted}", wanted]
    if len(levels) == 2 and not truncated:
        chosen = positive_level(levels)
        return [next(lv for lv in levels if lv != chosen), chosen]
    if len(levels) > 2 and (truncated or len(levels) > 0.5 * rows):
        raise SkillError(f"the target looks like an identifier: {len(levels)}{'+' if truncated else ''} distinct "
                         f"values in {rows} rows, so no class repeats enough to learn from",
                         hint="pick a target with repeated outcomes (a category or a number); if it is a number "
                              "to predict, ask for a regression")
    if len(levels) > MAX_CLASSES:
        raise SkillError(f"the target has {len(levels)} classes, more than the {MAX_CLASSES} a classifier here "
                         f"can learn",
                         hint="group rare classes in the query (CASE WHEN ... ELSE 'other'), name the one level "
                              "that counts as positive, or ask for a regression if the target is a number")
    return levels


def encode_target(col: pa.ChunkedArray | pa.Array, task: Task, classes: Sequence[str] | None = None) -> np.ndarray:
    """Regression: float32. Classification: the class index in `classes` (`target_classes`; inferred from `col`
    when omitted): binary 1.0 for the positive level, else 0.0; multiclass 0..K-1. Pass the model's `classes` when
    `col` is not the whole training target (a batch may hold one class only)."""
    check_target_nulls(col.null_count, len(col))
    if task == "regression":
        return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float32)
    values = [target_level(v) for v in _as_strings(col).to_pylist()]
    classes = list(classes) if classes else target_classes(Counter(values))
    if not is_multiclass(classes):
        return np.fromiter((v == classes[-1] for v in values), dtype=np.float32, count=len(values))
    index = {level: i for i, level in enumerate(classes)}
    unknown = sorted({v for v in values if v not in index})
    if unknown:
        raise SkillError(f"the target has level(s) the model never saw: {', '.join(unknown[:10])}",
                         hint=f"score rows of the model's classes only ({', '.join(classes)})")
    return np.fromiter((index[v] for v in values), dtype=np.float32, count=len(values))


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
    categories: dict[str, list[str]] | None = None, classes: Sequence[str] | None = None,
) -> Frame:
    """The design matrix for `features` (+ label). Pass the model's `categories` and `classes` when scoring."""
    cats = infer_categories(table, features) if categories is None else categories
    X = encode_features(table, features, cats)
    y = encode_target(table.column(target), task, classes) if target else None
    types = ["c" if f in cats else "q" for f in features]
    return Frame(X=X, y=y, features=list(features), feature_types=types, categories=cats)
