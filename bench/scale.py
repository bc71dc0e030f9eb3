"""Benchmark: how agentml's memory and time grow with the table, and training per round next to plain xgboost.

For each N (default 100k, 1M, 5M rows) x 20 float features (generated, binary target; one Parquet file as the
warehouse), a fresh driver process runs one plan through the executor on a fresh local Ray (`--cpus` CPUs):
`query` (SELECT * through governance) -> `train_xgboost` (`--rounds` rounds, 1 worker, `--threads` threads, no early
stopping). Measured side by side in one run:

- driver_peak_mb: the driver process's peak RSS (VmHWM from /proc), minus nothing: imports and Ray included.
- worker_peak_mb: the largest peak RSS of any Ray worker process (polled from /proc every 0.2 s).
- store_peak_mb: the object store's peak use (polled from Ray's memory summary, best effort).
- total_s: the plan's wall time; train_s: the train step's; step_round_ms: train_s / rounds (everything the step
  does: Ray Train's worker group, reading the table, building the DMatrix, checkpoints, saving the model).
- boost_round_ms: the boosting rounds alone on the Ray Train worker (the model's `boost_seconds` / rounds: from the
  first round to the last, checkpoint reports included; startup and data loading excluded).
- plain_round_ms: `xgboost.train` per round on the same rows (80% of them, as the step trains on), same threads, in
  this process; ratio = boost_round_ms / plain_round_ms, step_ratio = step_round_ms / plain_round_ms.

The last lines are one `RESULT` line per N plus `RESULT driver_flat=<peak at max N / peak at min N>`.

    .venv/bin/python bench/scale.py [--rows 100000,1000000,5000000] [--rounds 50] [--threads 2] [--cpus 2]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FEATURES = 20
CHUNK = 500_000


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    """N rows x 20 float features and a binary label, written in chunks (the bench never holds the whole table)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=FEATURES)
    writer = None
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        X = rng.normal(size=(n, FEATURES)).astype(np.float32)
        logit = X @ w / np.sqrt(FEATURES) + X[:, 0] * X[:, 1]
        y = (logit + rng.logistic(size=n) > 0).astype(np.int8)
        chunk = pa.table({"id": np.arange(start, start + n, dtype=np.int64),
                          **{f"f{j:02d}": X[:, j] for j in range(FEATURES)}, "label": y})
        writer = writer or pq.ParquetWriter(path, chunk.schema)
        writer.write_table(chunk)
    assert writer is not None
    writer.close()


# ------------------------------------------------------------------------------------------------ the driver


def driver(warehouse: str, artifacts: str, rounds: int, threads: int, cpus: int) -> None:
    """The measured process: one plan on a fresh local Ray; prints its timings as JSON on the last line."""
    import ray

    from executor import run_plan
    from governance import Engine, Policies, Principal
    from skills import ArtifactStore, Plan, RuntimeSettings, load_registry

    gcs = ray.init(num_cpus=cpus, include_dashboard=True, log_to_driver=False,
                   configure_logging=False).address_info["gcs_address"]
    engine = Engine.from_warehouse(warehouse, Policies.allow_all([]))
    engine.policies = Policies.allow_all(engine.tables, roles=["local"])
    plan = Plan.model_validate({"goal": "scale", "steps": [
        {"id": "query", "skill": "query", "inputs": {"sql": "SELECT * FROM data", "key": "id"}},
        {"id": "train", "skill": "train_xgboost", "inputs": {
            "table": {"$ref": "query.table"}, "target": "label", "task": "classification", "exclude": ["id"],
            "num_rounds": rounds, "early_stopping_rounds": 0, "params": {"nthread": threads}}}]})
    settings = RuntimeSettings(num_workers=1, cpus_per_worker=threads, use_gpu=False)
    store_peak, stop = [0.0], threading.Event()

    def poll_store() -> None:  # the object store's use, from this driver's own cluster
        from ray._private.internal_api import memory_summary

        while not stop.wait(1.0):
            with contextlib.suppress(Exception):
                match = re.search(r"Plasma memory usage (\d+) MiB", memory_summary(address=gcs, stats_only=True))
                store_peak[0] = max(store_peak[0], float(match.group(1)) if match else 0.0)

    watcher = threading.Thread(target=poll_store, daemon=True)
    watcher.start()
    start = time.perf_counter()
    result = run_plan(plan, Principal(user="bench", roles=["local"]), engine=engine,
                      artifacts=ArtifactStore(artifacts), settings=settings, registry=load_registry())
    total = time.perf_counter() - start
    stop.set()
    result.raise_for_status()
    model = (result.steps["train"].outputs or {})["model"]
    print(json.dumps({"total_s": total, "train_s": result.steps["train"].duration_s,
                      "boost_s": model.get("boost_seconds"),
                      "query_s": result.steps["query"].duration_s, "store_peak_mb": store_peak[0] or None}))
    ray.shutdown()


# ------------------------------------------------------------------------------------------------ measuring


def _peak_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else None


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Ray's raylet and workers are grandchildren of the driver that started Ray)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _ray_workers() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::"):
                pids.append(int(entry.name))
    return pids


def measure(warehouse: Path, rows: int, rounds: int, threads: int, cpus: int) -> dict[str, float | None]:
    with tempfile.TemporaryDirectory(prefix="agentml-scale-") as tmp:
        proc = subprocess.Popen([sys.executable, __file__, "--driver", str(warehouse), tmp, str(rounds),
                                 str(threads), str(cpus)], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "RAY_ADDRESS": ""})
        workers: dict[int, float] = {}
        driver_peak: list[float] = [0.0]
        stop = threading.Event()

        def poll() -> None:  # Ray workers of this run: children of the raylet the driver started
            mine = set(_descendants(proc.pid))
            while not stop.is_set():
                mine |= set(_descendants(proc.pid))
                for pid in (p for p in _ray_workers() if p in mine):
                    workers[pid] = max(workers.get(pid, 0.0), _peak_mb(pid) or 0.0)
                driver_peak[0] = max(driver_peak[0], _peak_mb(proc.pid) or 0.0)
                stop.wait(0.2)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        out, _ = proc.communicate()
        stop.set()
        watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"the driver failed at {rows} rows (exit {proc.returncode})")
    timings = json.loads(out.strip().splitlines()[-1])
    return {"driver_peak_mb": driver_peak[0], "worker_peak_mb": max(workers.values(), default=None), **timings}


def plain_round_ms(warehouse: Path, rounds: int, threads: int) -> float:
    """xgboost.train per round on 80% of the rows, `threads` threads, in this process."""
    import xgboost as xgb

    table = pq.read_table(warehouse)
    X = np.column_stack([table.column(f"f{j:02d}").to_numpy() for j in range(FEATURES)])
    y = table.column("label").to_numpy()
    cut = int(len(y) * 0.8)
    dtrain, dvalid = xgb.DMatrix(X[:cut], y[:cut], nthread=threads), xgb.DMatrix(X[cut:], y[cut:], nthread=threads)
    params = {"objective": "binary:logistic", "eval_metric": "auc", "tree_method": "hist", "nthread": threads}
    start = time.perf_counter()
    xgb.train(params, dtrain, rounds, evals=[(dvalid, "valid")], verbose_eval=False)
    return (time.perf_counter() - start) / rounds * 1000


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--driver":
        folder, artifacts, rounds, threads, cpus = sys.argv[2:7]
        driver(folder, artifacts, int(rounds), int(threads), int(cpus))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="100000,1000000,5000000")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    results = {}
    print(f"{'rows':>10} {'driver MB':>10} {'worker MB':>10} {'store MB':>9} {'total s':>8} {'train s':>8} "
          f"{'step ms/r':>9} {'boost ms/r':>10} {'plain ms/r':>10} {'ratio':>6} {'step ratio':>10}")
    for rows in (int(r) for r in args.rows.split(",")):
        with tempfile.TemporaryDirectory(prefix="agentml-wh-") as wh:
            warehouse = Path(wh) / "data.parquet"
            write_table(warehouse, rows)
            got = measure(Path(wh), rows, args.rounds, args.threads, args.cpus)
            plain = plain_round_ms(warehouse, args.rounds, args.threads)
        step_ms = (got["train_s"] or 0.0) / args.rounds * 1000
        boost_ms = (got["boost_s"] or 0.0) / args.rounds * 1000
        results[rows] = {**got, "step_round_ms": step_ms, "boost_round_ms": boost_ms, "plain_round_ms": plain,
                         "ratio": boost_ms / plain, "step_ratio": step_ms / plain}
        r = results[rows]
        print(f"{rows:>10} {r['driver_peak_mb']:>10.0f} {r['worker_peak_mb'] or 0:>10.0f} "
              f"{r['store_peak_mb'] or 0:>9.0f} {r['total_s']:>8.1f} {r['train_s']:>8.1f} {step_ms:>9.1f} "
              f"{boost_ms:>10.1f} {plain:>10.1f} {r['ratio']:>6.2f} {r['step_ratio']:>10.2f}", flush=True)
    for rows, r in results.items():
        print(f"RESULT rows={rows} " + " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                                 for k, v in r.items()))
    sizes = sorted(results)
    print(f"RESULT driver_flat={results[sizes[-1]]['driver_peak_mb'] / results[sizes[0]]['driver_peak_mb']:.2f}")


if __name__ == "__main__":
    main()
