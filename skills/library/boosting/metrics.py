"""Metrics and curves of predictions against labels, without scikit-learn.

Classification: AUC, PR AUC (average precision), logloss, accuracy and F1 at a decision threshold (0.5 unless the
model chose one on its validation rows, `best_threshold`), ROC and precision-recall points; multiclass (one
probability column per class): macro one-vs-rest AUC, mlogloss, accuracy and macro F1 of the most probable class.
Regression: RMSE, MAE and R2.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from skills.types import Task


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged)."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision: precision at each distinct threshold weighted by
    the recall it adds (scikit-learn's `average_precision_score`)."""
    if not np.any(y == 1):
        return float("nan")
    tps, fps, _ = _ranked_counts(y, p)
    recall_gain = np.diff(np.r_[0.0, tps]) / tps[-1]
    return float(np.sum(recall_gain * tps / (tps + fps)))


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The decision threshold (predict 1 when p >= it) that maximises F1 on (y, p): midway between the lowest score
    predicted positive and the next lower score, so that it generalises beyond these rows. 0.5 without positives."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if not np.any(y == 1):
        return 0.5
    tps, fps, scores = _ranked_counts(y, p)
    best = int(np.argmax(2 * tps / (tps + fps + tps[-1])))
    below = scores[best + 1] if best + 1 < len(scores) else 0.0
    return float((scores[best] + below) / 2)


def _classification_scores(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    q = np.clip(p, 1e-15, 1 - 1e-15)
    label = p >= threshold
    tp = float(np.sum(label & (y == 1)))
    precision_recall = float(label.sum() + (y == 1).sum())
    return {
        "auc": auc(y, p),
        "pr_auc": average_precision(y, p),
        "logloss": float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))),
        "accuracy": float(np.mean(label == (y == 1))),
        "f1": 2 * tp / precision_recall if precision_recall else 0.0,
    }


def _multiclass_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Rows of class probabilities `p` (rows x classes) against class indices `y`."""
    classes = np.arange(p.shape[1])
    truth = y.astype(np.int64)
    label = np.argmax(p, axis=1)
    per_class = [auc((truth == k).astype(np.float64), p[:, k]) for k in classes]
    f1s = []
    for k in classes:
        tp, predicted, actual = np.sum((label == k) & (truth == k)), np.sum(label == k), np.sum(truth == k)
        if predicted + actual:
            f1s.append(2 * float(tp) / float(predicted + actual))
    p_true = np.clip(p[np.arange(len(truth)), truth], 1e-15, 1.0)
    present = [a for a in per_class if not np.isnan(a)]
    return {
        "auc": float(np.mean(present)) if present else float("nan"),
        "mlogloss": float(-np.mean(np.log(p_true))),
        "accuracy": float(np.mean(label == truth)),
        "f1": float(np.mean(f1s)) if f1s else 0.0,
    }


def _regression_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    err = p - y
    sst = float(np.sum((y - y.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": 1.0 - float(np.sum(err**2)) / sst if sst > 0 else 0.0,
    }


def score(task: Task, y: np.ndarray, pred: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    """Classification: auc, pr_auc, logloss, accuracy, f1 (at `threshold`, default 0.5); with one probability column
    per class (multiclass), macro auc, mlogloss, accuracy and macro f1. Regression: rmse, mae, r2."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if task == "regression":
        return _regression_scores(y, pred)
    if pred.ndim == 2:
        return _multiclass_scores(y, pred)
    return _classification_scores(y, pred, 0.5 if threshold is None else threshold)


def _thin(n: int, max_points: int) -> np.ndarray:
    """At most `max_points` evenly spaced indices of 0..n-1, first and last always kept."""
    return np.unique(np.linspace(0, n - 1, num=min(n, max_points)).round().astype(np.int64))


def _ranked_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives at each distinct threshold, highest score first."""
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order] == 1, p[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ps)), len(ps) - 1]
    tps = np.cumsum(ys)[last_of_tie].astype(np.float64)
    return tps, (last_of_tie + 1 - tps).astype(np.float64), ps[last_of_tie]


def roc_points(y: np.ndarray, p: np.ndarray, max_points: int = 101) -> dict[str, list[float]]:
    """ROC curve points {fpr, tpr, threshold}, from (0, 0) to (1, 1)."""
    tps, fps, thresholds = _ranked_counts(np.asarray(y), np.asarray(p))
    fpr = np.r_[0.0, fps / max(fps[-1], 1.0)]
    tpr = np.r_[0.0, tps / max(tps[-1], 1.0)]
    keep = _thin(len(fpr), max_points)
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(),
            "threshold": np.r_[np.inf, thresholds][keep].clip(max=1.0).tolist()}


def pr_points(y: np.ndarray, p: np.ndarray, max_points: int = 101) -> dict[str, list[float]]:
    """Precision-recall curve points {recall, precision}, recall rising from 0 to 1."""
    tps, fps, _ = _ranked_counts(np.asarray(y), np.asarray(p))
    precision = np.r_[1.0, tps / (tps + fps)]
    recall = np.r_[0.0, tps / max(tps[-1], 1.0)]
    keep = _thin(len(recall), max_points)
    return {"recall": recall[keep].tolist(), "precision": precision[keep].tolist()}

