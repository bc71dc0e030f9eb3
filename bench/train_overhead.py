"""Benchmark: the `train_xgboost` step on Ray Train vs plain `xgboost.train` on identical data.

1M rows x 50 float features (synthetic, binary target), 100 rounds, 2 threads on both sides (nthread=2; the Ray
worker gets 2 CPUs), no early stopping, the same validation rows evaluated every round on both sides. The cluster is
warmed first (one tiny Ray training step), then:

- start_s: the fixed cost of a Ray training step, measured as a tiny step (2000 rows, 1 round) on the warm cluster:
  controller and worker actors, dataset hand-over, checkpoint, teardown. It does not grow with data or rounds.
- ray_s: the full train_xgboost step on Ray (reads the Parquet table artifact, splits, ships the rows as Ray Datasets,
  trains on the worker, checkpoints every 10 rounds, scores the validation rows, saves the model).
- plain_s: DMatrix + xgboost.train in this process on the same train/validation arrays.

Plain and Ray runs alternate `--repeats` times and the fastest of each counts (the machine may be shared).
train_ratio = (ray_s - start_s) / plain_s, the variable cost of training on Ray per unit of plain training (goal
<= 1.5); the end-to-end ratio ray_s / plain_s is printed too. Last line: `RESULT train_ratio=<x> start_s=<x>`.

    .venv/bin/python bench/train_overhead.py [--rows 1000000] [--features 50] [--rounds 100] [--repeats 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import xgboost as xgb

from governance import Engine, Policies, Principal
from skills import ArtifactStore, RuntimeSettings, SkillContext, TableArtifact
from skills.library.boosting.compute import Compute
from skills.library.boosting.data import VALID, prepare
from skills.library.boosting.params import model_params, xgb_params
from skills.library.train_xgboost import TrainInput, train_xgboost

THREADS = 2
BENCH = Principal(user="bench", roles=["local"])


def synthetic(rows: int, features: int, seed: int = 0) -> pa.Table:
    """Float features and a binary target from a noisy linear + interaction signal."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    w = rng.normal(size=features)
    logit = X @ w / np.sqrt(features) + X[:, 0] * X[:, 1]
    y = (logit + rng.logistic(size=rows) > 0).astype(np.int8)
    columns = {f"f{j:02d}": X[:, j] for j in range(features)}
    return pa.table({**columns, "label": y})


def ray_step(store: ArtifactStore, table: TableArtifact, rounds: int, step: str) -> float:
    """Seconds for one train_xgboost step on Ray (1 worker, 2 CPUs)."""
    settings = RuntimeSettings(compute="ray", num_workers=1, cpus_per_worker=THREADS, use_gpu=False)
    ctx = SkillContext(principal=BENCH, engine=Engine(Policies.allow_all([])), artifacts=store, settings=settings,
                       run_id="bench", step_id=step)
    start = time.perf_counter()
    train_xgboost(ctx, TrainInput(table=table, target="label", task="classification", num_rounds=rounds,
                                  early_stopping_rounds=0))
    return time.perf_counter() - start


def plain_train(data: pa.Table, rounds: int) -> float:
    """Seconds for DMatrix + xgboost.train on the same split, params and eval set, nthread=2."""
    prep = prepare(data, "label", "classification", None, (), 0.2, seed=0)
    train, valid = prep.frame("train"), prep.frame(VALID)
    compute = Compute(cpus_per_worker=THREADS)
    params = xgb_params(model_params("classification", 0), "classification", compute)
    start = time.perf_counter()
    dtrain, dvalid = train.dmatrix(nthread=THREADS), valid.dmatrix(nthread=THREADS)
    xgb.train(params, dtrain, num_boost_round=rounds, evals=[(dvalid, "valid")], verbose_eval=False)
    return time.perf_counter() - start


def put(store: ArtifactStore, name: str, data: pa.Table) -> TableArtifact:
    return TableArtifact(uri=store.put_table(f"tables/{name}.parquet", data), rows=data.num_rows,
                         columns=data.column_names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import ray

    ray.init(address="local", num_cpus=THREADS, include_dashboard=True, log_to_driver=False, configure_logging=False)
    workdir = tempfile.TemporaryDirectory(prefix="agentml-bench-")  # ~0.5 GB of Parquet and checkpoints
    store = ArtifactStore(Path(workdir.name))
    data = synthetic(args.rows, args.features)
    big, tiny = put(store, "big", data), put(store, "tiny", synthetic(2000, args.features, seed=1))

    ray_step(store, tiny, 1, "warmup")  # worker processes and imports: a warm cluster from here on
    start_s = min(ray_step(store, tiny, 1, f"start{i}") for i in range(2))
    plain, on_ray = [], []
    for i in range(args.repeats):  # alternate, keep the best of each: robust to other load on a shared machine
        plain.append(plain_train(data, args.rounds))
        on_ray.append(ray_step(store, big, args.rounds, f"big{i}"))
        print(f"repeat {i + 1}: plain {plain[-1]:.1f} s, Ray {on_ray[-1]:.1f} s", flush=True)
    ray.shutdown()
    workdir.cleanup()
    plain_s, ray_s = min(plain), min(on_ray)

    train_ratio = (ray_s - start_s) / plain_s
    print(f"data: {args.rows} rows x {args.features} features, {args.rounds} rounds, nthread={THREADS}")
    print(f"plain xgboost.train: {plain_s:.1f} s")
    print(f"train_xgboost on Ray: {ray_s:.1f} s (fixed start cost {start_s:.1f} s)")
    print(f"end-to-end ratio: {ray_s / plain_s:.2f}x; without the fixed start cost: {train_ratio:.2f}x")
    print(f"RESULT train_ratio={train_ratio:.3f} start_s={start_s:.2f}")


if __name__ == "__main__":
    main()
