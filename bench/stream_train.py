"""Benchmark: the driver's peak memory of `train_xgboost` on Ray Train, in-memory vs streamed preparation.

One synthetic table (default 1M rows x 20 columns: 18 float features, 2 string features, a yes/no target and an id
key), written as a directory of Parquet parts as the query skill writes large results. Each mode runs in its own
fresh driver process (its own local Ray with `--cpus` CPUs, 1 training worker): `memory` reads the table into the
driver (`stream_rows` above the row count), `stream` streams it (`stream_rows=0`). Reported per mode: the driver's
peak RSS (`ru_maxrss` of that process, Ray's worker processes not included), the step's wall time and the
validation AUC. Last line: `RESULT memory_rss_mb=<x> stream_rss_mb=<x>`.

    .venv/bin/python bench/stream_train.py [--rows 1000000] [--rounds 20] [--cpus 2]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

PARTS = 4


def synthetic(rows: int, seed: int) -> pa.Table:
    """18 float and 2 string features, an id key and a yes/no target from a noisy linear signal."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 18)).astype(np.float32)
    city = rng.choice([f"city{i}" for i in range(40)], size=rows)
    plan = rng.choice(["basic", "plus", "pro"], size=rows)
    logit = X[:, :6].sum(axis=1) / 2 + (plan == "pro") - (city == "city3") + rng.logistic(size=rows)
    columns = {f"f{j:02d}": X[:, j] for j in range(18)}
    ids = np.arange(seed * rows, (seed + 1) * rows)
    return pa.table({"id": ids, **columns, "city": city, "plan": plan, "churn": np.where(logit > 0, "yes", "no")})


def write_table(root: Path, rows: int) -> dict[str, object]:
    from skills import ArtifactStore, TableArtifact

    store = ArtifactStore(root)
    for part in range(PARTS):
        store.put_table(f"bench/query/table/part-{part:05d}.parquet", synthetic(rows // PARTS, part))
    table = TableArtifact(uri=store.uri("bench/query/table"), rows=rows // PARTS * PARTS,
                          columns=synthetic(1, 0).column_names, key="id")
    return table.model_dump()


def run_mode(root: str, table: dict[str, object], stream_rows: int, rounds: int, cpus: int) -> dict[str, float]:
    """In this (fresh) process: start Ray, run one train_xgboost step, report peak RSS, time and AUC."""
    import ray

    from governance import Engine, Policies, Principal
    from skills import ArtifactStore, RuntimeSettings, SkillContext, TableArtifact
    from skills.library.train_xgboost import TrainInput, train_xgboost

    ray.init(num_cpus=cpus, include_dashboard=True, log_to_driver=False, configure_logging=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    settings = RuntimeSettings(compute="ray", num_workers=1, cpus_per_worker=1, use_gpu=False,
                               stream_rows=stream_rows)
    ctx = SkillContext(principal=Principal(user="bench", roles=["local"]), engine=Engine(Policies.allow_all([])),
                       artifacts=ArtifactStore(root), settings=settings, run_id="bench", step_id=f"s{stream_rows}")
    start = time.perf_counter()
    out = train_xgboost(ctx, TrainInput(table=TableArtifact.model_validate(table), target="churn", exclude=["id"],
                                        num_rounds=rounds, early_stopping_rounds=0))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ray.shutdown()
    return {"rss_mb": peak / 1024, "rss_before_mb": before / 1024, "seconds": seconds, "auc": out.metrics["auc"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--mode", help=argparse.SUPPRESS)  # internal: run one mode in this process
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        stream_rows = 0 if args.mode == "stream" else 10 * args.rows
        print(json.dumps(run_mode(args.root, json.loads(args.table), stream_rows, args.rounds, args.cpus)))
        return
    with tempfile.TemporaryDirectory(prefix="agentml-stream-bench-") as tmp:
        table = write_table(Path(tmp), args.rows)
        results = {}
        for mode in ("memory", "stream"):
            cmd = [sys.executable, __file__, "--mode", mode, "--root", tmp, "--table", json.dumps(table),
                   "--rows", str(args.rows), "--rounds", str(args.rounds), "--cpus", str(args.cpus)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            r = results[mode]
            print(f"{mode:6s} driver peak RSS {r['rss_mb']:8.0f} MB (after ray.init {r['rss_before_mb']:.0f} MB)  "
                  f"{r['seconds']:7.1f} s  AUC {r['auc']:.4f}", flush=True)
    print(f"RESULT memory_rss_mb={results['memory']['rss_mb']:.0f} stream_rss_mb={results['stream']['rss_mb']:.0f}")


if __name__ == "__main__":
    main()
