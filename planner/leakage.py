"""How well one column alone predicts the target, on the governed sample: a near-perfect score means leakage.

Classification: the AUC of the column as a score (numeric columns by rank, missing values lowest) and of its levels'
target rates (categories, missing as a level of its own, and numeric columns cut into quantile bins), each level's
rate learnt on the other half of the sample so that an identifier scores 0.5, not 1.0. A target of more than two
levels scores the mean of its one-vs-rest AUCs. Regression: the absolute rank correlation of the column, or of its
levels' target means learnt the same way, with the target. A column whose score reaches `LEAKAGE_SCORE` records the
outcome rather than predicting it.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.stats import rankdata

LEAKAGE_SCORE = 0.98
MIN_ROWS = 50        # fewer sampled rows than this (or than MIN_CLASS of a class) and no score is computed
MIN_CLASS = 10
BINS = 32
_SEED = 0


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Rank AUC (Mann-Whitney) of `score` for the boolean `positive`, ties averaged; 0.5 when one class is absent."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return 0.5
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _numeric(col: pa.ChunkedArray) -> np.ndarray | None:
    """A numeric (or boolean) column as float64, missing values as -inf (ranked lowest); None for other types."""
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type)
            or pa.types.is_boolean(col.type)):
        return None
    values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    return np.where(np.isnan(values), -np.inf, values)


def _levels(col: pa.ChunkedArray, numeric: np.ndarray | None) -> np.ndarray:
    """Integer level codes: quantile bins for numeric columns, else the values as text; missing is a level."""
    if numeric is not None:
        finite = numeric[np.isfinite(numeric)]
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, BINS + 1))) if len(finite) else np.array([0.0])
        codes = np.searchsorted(edges, numeric, side="right")
        return np.where(np.isfinite(numeric), codes, -1)
    text = pc.cast(col, pa.string()).to_pylist()
    _, codes = np.unique(np.array(["\x00null" if v is None else v for v in text], dtype=object).astype(str),
                         return_inverse=True)
    return codes


def _out_of_fold_means(levels: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each row's level mean of `y`, learnt on the other half of the rows (the overall mean for unseen levels)."""
    half = np.random.default_rng(_SEED).permutation(len(y)) % 2 == 0
    out = np.empty(len(y))
    for fold in (half, ~half):
        train = ~fold
        prior = float(y[train].mean()) if train.any() else 0.0
        codes, inverse = np.unique(levels[train], return_inverse=True)
        sums = np.bincount(inverse, weights=y[train], minlength=len(codes))
        means = sums / np.bincount(inverse, minlength=len(codes))
        at = np.searchsorted(codes, levels[fold])
        seen = (at < len(codes)) & (codes[np.minimum(at, len(codes) - 1)] == levels[fold])
        out[fold] = np.where(seen, means[np.minimum(at, len(codes) - 1)], prior)
    return out


def _binary_score(numeric: np.ndarray | None, levels: np.ndarray, positive: np.ndarray) -> float:
    scores = [auc(_out_of_fold_means(levels, positive.astype(float)), positive)]
    if numeric is not None:
        scores.append(auc(numeric, positive))
    return max(max(s, 1.0 - s) for s in scores)


def _rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return abs(float(np.corrcoef(rx, ry)[0, 1]))


def single_column_score(col: pa.ChunkedArray, target: pa.ChunkedArray, classification: bool) -> float | None:
    """The column's score alone (AUC for a classification target, |rank correlation| for a regression), on rows
    with a target; None when the sample is too small to tell."""
    keep = target.is_valid()
    col, target = col.filter(keep), target.filter(keep)
    if len(target) < MIN_ROWS:
        return None
    numeric = _numeric(col)
    levels = _levels(col, numeric)
    if not classification:
        y = pc.cast(target, pa.float64()).to_numpy(zero_copy_only=False)
        fitted = [_out_of_fold_means(levels, y)] + ([numeric] if numeric is not None else [])
        return max(_rank_correlation(f, y) for f in fitted)
    classes, y_codes = np.unique(np.array(pc.cast(target, pa.string()).to_pylist(), dtype=str), return_inverse=True)
    counts = np.bincount(y_codes)
    if len(classes) < 2 or counts.min() < MIN_CLASS:
        return None
    pairs = [0] if len(classes) == 2 else range(len(classes))
    return float(np.mean([_binary_score(numeric, levels, y_codes == k) for k in pairs]))
