"""Training data: features, task, categories and deterministic splits.

Splits (`holdout_split`, `fold_ids`) are pure functions of their arguments: shuffled with a seed, stratified for
classification. `prepare` fixes everything a model needs from a table once; `saved_model` writes its split convention
into the booster so `evaluate` finds the same validation rows.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from skills.errors import SkillError
from skills.frame import Frame, build_frame, default_features, encode_target, infer_categories, infer_task
from skills.types import Task

VALID = "valid"  # the validation split: a `Prepared.part`, a Ray Train dataset and xgboost's eval set name


def _strata(y: np.ndarray, task: Task) -> list[np.ndarray]:
    """Row indices per class (classification) or all rows in one group (regression)."""
    if task == "classification":
        return [np.flatnonzero(y == level) for level in np.unique(y)]
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


def subset(frame: Frame, rows: np.ndarray) -> Frame:
    """The rows `rows` (indices or mask) of a design matrix."""
    return replace(frame, X=frame.X[rows], y=None if frame.y is None else frame.y[rows])


def _check_target(table: pa.Table, target: str) -> None:
    if target not in table.column_names:
        raise SkillError(f"target column {target!r} is not in the table",
                         hint=f"pick one of: {', '.join(table.column_names)}")


def resolve_features(table: pa.Table, target: str, features: Sequence[str] | None,
                     exclude: Sequence[str] = ()) -> list[str]:
    """The given features minus excluded ones, or every usable column (see `skills.frame.default_features`)."""
    if features:
        missing = [f for f in features if f not in table.column_names]
        if missing:
            raise SkillError(f"feature columns not in the table: {', '.join(missing)}",
                             hint=f"pick from: {', '.join(table.column_names)}")
    chosen = list(dict.fromkeys(f for f in features if f not in exclude and f != target)) if features else \
        default_features(table, target, exclude)
    if not chosen:
        raise SkillError("no usable feature columns", hint="name numeric or categorical columns in `features`")
    return chosen


@dataclass
class Prepared:
    """A training table cut down to features + target, with its task, categories and validation split."""

    table: pa.Table
    task: Task
    target: str
    features: list[str]
    categories: dict[str, list[str]]
    train_rows: np.ndarray
    valid_rows: np.ndarray
    valid_fraction: float
    seed: int

    def part(self, which: str) -> pa.Table:
        """The raw rows of the training ("train") or validation ("valid") split."""
        return self.table.take(self.train_rows if which == "train" else self.valid_rows)

    def frame(self, which: str) -> Frame:
        """The design matrix of one split, encoded with this model's categories."""
        return build_frame(self.part(which), self.features, self.target, self.task, self.categories)

    def split_info(self) -> dict[str, float | int]:
        """The split convention, stored in the booster so evaluation finds the same validation rows."""
        return {"valid_fraction": self.valid_fraction, "seed": self.seed, "rows": self.table.num_rows}


def prepare(table: pa.Table, target: str, task: Task | None, features: Sequence[str] | None,
            exclude: Sequence[str], valid_fraction: float, seed: int) -> Prepared:
    """Check the target, pick features, infer the task, fix categories and split train/validation."""
    _check_target(table, target)
    chosen = resolve_features(table, target, features, exclude)
    task = task or infer_task(table, target)
    table = table.select([*chosen, target])
    y = encode_target(table.column(target), task)
    train, valid = holdout_split(y, task, valid_fraction, seed)
    _check_split(y, task, train, valid)
    categories = infer_categories(table, chosen)
    return Prepared(table, task, target, chosen, categories, train, valid, valid_fraction, seed)


def _check_split(y: np.ndarray, task: Task, train: np.ndarray, valid: np.ndarray) -> None:
    if len(train) == 0 or len(valid) == 0:
        raise SkillError(f"{len(y)} rows are too few for a train/validation split",
                         hint="use more rows or a valid_fraction between 0.1 and 0.5")
    if task == "classification" and (len(np.unique(y[train])) < 2 or len(np.unique(y[valid])) < 2):
        raise SkillError("the target has a single class in the training or validation rows",
                         hint="pick a target with both outcomes present, or use more rows")
