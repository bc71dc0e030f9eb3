"""Training data: features, task, categories and deterministic splits.

Splits (`holdout_split`, `fold_ids`, `HashSplit`) are pure functions of their arguments: shuffled with a seed,
stratified for classification (`HashSplit`, for tables streamed in batches, is not stratified). `prepare` fixes
everything a model needs from an in-memory table once; `boosting.stream.prepare_stream` does the same for a large
table without reading its rows into the driver. Both give a `TrainingData`; `saved_model` writes its split
convention into the booster so `evaluate` finds the same validation rows.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from skills.errors import SkillError
from skills.frame import (
    Frame,
    build_frame,
    check_target_nulls,
    default_features,
    encode_target,
    infer_categories,
    infer_task,
    level_counts,
    target_classes,
)
from skills.types import Task

if TYPE_CHECKING:
    import xgboost as xgb

VALID = "valid"  # the validation split: a `Prepared.part`, a Ray Train dataset and xgboost's eval set name
PARTS = ("train", VALID)


def _strata(y: np.ndarray, task: Task) -> list[np.ndarray]:
    """Row indices per class (classification), classes in the order of their first row, or all rows in one group
    (regression). The order does not depend on how the classes are coded, so naming another level positive keeps
    every split and fold: a flipped model is judged on the same rows."""
    if task == "classification":
        levels, first = np.unique(y, return_index=True)
        return [np.flatnonzero(y == level) for level in levels[np.argsort(first)]]
    return [np.arange(len(y))]


def holdout_split(y: np.ndarray, task: Task, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows), sorted; stratified for classification; a pure function of its arguments."""
    rng = np.random.default_rng(seed)
    valid = [rng.permutation(rows)[: round(valid_fraction * len(rows))] for rows in _strata(y, task)]
    mask = np.zeros(len(y), dtype=bool)
    mask[np.concatenate(valid)] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def fold_ids(y: np.ndarray, task: Task, folds: int, seed: int) -> np.ndarray:
    """Fold number (0..folds-1) of each row: shuffled with `seed`, stratified for classification."""
    smallest = min(len(rows) for rows in _strata(y, task))
    if folds < 2 or smallest < folds:
        raise SkillError(f"{folds}-fold cross-validation needs at least {folds} rows of each class, got {smallest}",
                         hint="use fewer folds or more rows")
    rng = np.random.default_rng(seed)
    out = np.empty(len(y), dtype=np.int64)
    offset = 0
    for rows in _strata(y, task):
        out[rng.permutation(rows)] = (np.arange(len(rows)) + offset) % folds
        offset += len(rows)  # continue the round robin so small classes do not all start in fold 0
    return out


def _mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves every output bit (uint64 arithmetic wraps)."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


@dataclass(frozen=True)
class HashSplit:
    """A row's split from the row alone: a seeded 64-bit hash of its entity key (or, without a key, of its values
    in `columns`) mapped to [0, 1); validation when below `valid_fraction`. Each batch of a streamed table splits
    on its own, identically on every run and worker, and `valid_fraction` of the rows are validation rows in
    expectation (not exactly, and not stratified by class: on the large tables that stream, the class shares of
    both parts differ from the table's by sampling noise only). Rows with equal keys land in the same part."""

    valid_fraction: float
    seed: int
    key: str | None = None
    columns: tuple[str, ...] = ()

    @property
    def hashed(self) -> list[str]:
        """The columns the hash reads."""
        return [self.key] if self.key else list(self.columns)

    def is_valid(self, table: pa.Table) -> np.ndarray:
        """True for the validation rows of `table` (which must hold the `hashed` columns)."""
        import pandas as pd

        frame = table.select(self.hashed).to_pandas()
        h = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)  # stable across processes
        salt = int.from_bytes(hashlib.blake2b(str(self.seed).encode(), digest_size=8).digest(), "little")
        with np.errstate(over="ignore"):
            u = (_mix64(h ^ np.uint64(salt)) >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return u < self.valid_fraction

    def info(self) -> dict[str, Any]:
        """The split convention as stored in a booster (see `from_info`)."""
        return {"rule": "hash", "valid_fraction": self.valid_fraction, "seed": self.seed, "key": self.key,
                "columns": list(self.columns)}

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> HashSplit:
        """The split a booster's `agentml_split` attribute describes (written by `info`)."""
        return cls(float(info["valid_fraction"]), int(info["seed"]), info.get("key"), tuple(info.get("columns", ())))


def subset(frame: Frame, rows: np.ndarray) -> Frame:
    """The rows `rows` (indices or mask) of a design matrix."""
    return replace(frame, X=frame.X[rows], y=None if frame.y is None else frame.y[rows])


def check_target(columns: Sequence[str], target: str) -> None:
    """A SkillError unless `target` is one of `columns`."""
    if target not in columns:
        raise SkillError(f"target column {target!r} is not in the table", hint=f"pick one of: {', '.join(columns)}")


def resolve_features(columns: Sequence[str], target: str, features: Sequence[str] | None, exclude: Sequence[str],
                     defaults: Callable[[], list[str]]) -> list[str]:
    """The given features minus excluded ones, or `defaults()` (every usable column, see
    `skills.frame.default_features`)."""
    if features:
        missing = [f for f in features if f not in columns]
        if missing:
            raise SkillError(f"feature columns not in the table: {', '.join(missing)}",
                             hint=f"pick from: {', '.join(columns)}")
    chosen = list(dict.fromkeys(f for f in features if f not in exclude and f != target)) if features else defaults()
    if not chosen:
        raise SkillError("no usable feature columns", hint="name numeric or categorical columns in `features`")
    return chosen


def single_class() -> SkillError:
    """The error for a classification target with one class (in the table or in one of its splits)."""
    return SkillError("the target has a single class in the training or validation rows",
                      hint="pick a target with both outcomes present, or use more rows")


class TrainingData(Protocol):
    """What training, tuning and scoring need from a table, wherever its rows are: in this process (`Prepared`) or
    streamed from the artifact store in batches (`boosting.stream.StreamPrepared`, which holds no rows)."""

    task: Task
    target: str
    features: list[str]
    categories: dict[str, list[str]]
    classes: list[str]  # classification: the target's classes in label order (`frame.target_classes`), else []

    @property
    def seed(self) -> int:
        """The split's seed (also the models' seed)."""
        ...

    @property
    def encoded(self) -> bool:
        """True when `datasets()` hold encoded features and the label (`stream.LABEL`), False for raw columns."""
        ...

    def datasets(self) -> dict[str, Any]:
        """The train and validation rows as Ray Datasets, keyed by `PARTS`, for Ray Train workers."""
        ...

    def dmatrices(self, params: Mapping[str, Any]) -> tuple[xgb.DMatrix, xgb.DMatrix]:
        """(train, validation) DMatrix built in this process (in-process training, single-worker Tune trials) for
        xgboost `params` (threads, bins)."""
        ...

    def valid_predictions(self, booster: xgb.Booster) -> tuple[np.ndarray, np.ndarray]:
        """(labels, predictions) of the validation rows, for the model's metrics."""
        ...

    def split_info(self) -> dict[str, Any]:
        """The split convention, stored in the booster so evaluation finds the same validation rows."""
        ...


@dataclass
class Prepared:
    """A training table in memory, cut down to features + target, with its task, categories and validation split."""

    table: pa.Table
    task: Task
    target: str
    features: list[str]
    categories: dict[str, list[str]]
    classes: list[str]
    train_rows: np.ndarray
    valid_rows: np.ndarray
    valid_fraction: float
    seed: int
    encoded = False

    def part(self, which: str) -> pa.Table:
        """The raw rows of the training ("train") or validation ("valid") split."""
        return self.table.take(self.train_rows if which == "train" else self.valid_rows)

    def frame(self, which: str) -> Frame:
        """The design matrix of one split, encoded with this model's categories."""
        return build_frame(self.part(which), self.features, self.target, self.task, self.categories, self.classes)

    def datasets(self) -> dict[str, Any]:
        """The raw rows of each split as Ray Datasets (workers encode them with the model's categories through
        `build_frame`, so every shard encodes identically)."""
        import ray.data

        return {part: ray.data.from_arrow(self.part(part)) for part in PARTS}

    def dmatrices(self, params: Mapping[str, Any]) -> tuple[xgb.DMatrix, xgb.DMatrix]:
        nthread = int(params.get("nthread", 0)) or None
        dtrain, dvalid = (self.frame(part).dmatrix(nthread=nthread) for part in PARTS)
        return dtrain, dvalid

    def valid_predictions(self, booster: xgb.Booster) -> tuple[np.ndarray, np.ndarray]:
        valid = self.frame(VALID)
        return valid.labels, booster.predict(valid.dmatrix())

    def split_info(self) -> dict[str, Any]:
        """The split convention, stored in the booster so evaluation finds the same validation rows."""
        return {"valid_fraction": self.valid_fraction, "seed": self.seed, "rows": self.table.num_rows}


def prepare(table: pa.Table, target: str, task: Task | None, features: Sequence[str] | None,
            exclude: Sequence[str], valid_fraction: float, seed: int, positive: str | None = None) -> Prepared:
    """Check the target, pick features, infer the task, fix the classes (`positive` the level that counts as
    positive) and categories and split train/validation."""
    check_target(table.column_names, target)
    chosen = resolve_features(table.column_names, target, features, exclude,
                              lambda: default_features(table, target, exclude))
    task = task or infer_task(table, target)
    table = table.select([*chosen, target])
    classes = table_classes(table.column(target), task, positive)
    y = encode_target(table.column(target), task, classes)
    train, valid = holdout_split(y, task, valid_fraction, seed)
    _check_split(y, task, train, valid)
    categories = infer_categories(table, chosen)
    return Prepared(table, task, target, chosen, categories, classes, train, valid, valid_fraction, seed)


def table_classes(col: pa.ChunkedArray | pa.Array, task: Task, positive: str | None = None) -> list[str]:
    """The classes of a whole target column in memory (see `classes_for`)."""
    return classes_for(task, level_counts(col), col.null_count, positive)


def classes_for(task: Task, counts: Mapping[str, int], nulls: int, positive: str | None = None,
                truncated: bool = False) -> list[str]:
    """A target's classes from its level counts (`frame.target_classes`, with its clear errors for targets that
    cannot be learned); [] for regression, where missing values are an error and so is a `positive` level."""
    if task == "classification":
        return target_classes(counts, nulls, positive, truncated)
    check_target_nulls(nulls, sum(counts.values()) + nulls)
    if positive is not None:
        raise SkillError(f"a positive level ({positive!r}) only applies to classification",
                         hint="drop `positive`, or ask for a classification")
    return []


def _check_split(y: np.ndarray, task: Task, train: np.ndarray, valid: np.ndarray) -> None:
    if len(train) == 0 or len(valid) == 0:
        raise SkillError(f"{len(y)} rows are too few for a train/validation split",
                         hint="use more rows or a valid_fraction between 0.1 and 0.5")
    if task == "classification" and (len(np.unique(y[train])) < 2 or len(np.unique(y[valid])) < 2):
        raise single_class()
