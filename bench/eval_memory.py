"""Benchmark: the driver's peak memory and wall time of `evaluate` with folds in this process vs folds as Ray tasks.

For each row count: a synthetic table (`--features` float columns, a binary target) and a model trained on it
(`--rounds` rounds) are written to an artifact store once; then each mode runs `evaluate` (holdout + `--folds`-fold
cross-validation) in a fresh child process, so the peaks do not mix:

- local: `settings.compute="local"`, the driver reads the table's columns and trains every fold itself.
- ray: a local Ray cluster (`--cpus` CPUs) is started first (not timed), `settings.compute="ray"`: the holdout and
  each fold are Ray tasks that read their columns themselves; the driver gets metrics back.

peak_mb: the child's peak RSS (Linux VmHWM, reset through /proc/self/clear_refs right before `evaluate`, after xgboost
is imported and, on Ray, a worker started) minus its RSS at that moment: what `evaluate` added to the driver. Ray
workers' memory is not the driver's and is not counted.
Last line per mode: `RESULT rows=<n> mode=<m> peak_mb=<x> wall_s=<x> auc=<x>` (the CV AUCs must agree).

    PYTHONPATH=. .venv/bin/python bench/eval_memory.py [--rows 200000,1000000] [--features 20] [--rounds 50] [--folds 5]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from governance import Engine, Policies, Principal
from skills import ArtifactStore, RuntimeSettings, SkillContext, TableArtifact

BENCH = Principal(user="bench", roles=["local"])
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep (a shared 2-core machine)


def _context(root: str, compute: str, cpus: int = 1) -> SkillContext:
    return SkillContext(principal=BENCH, engine=Engine(Policies.allow_all([], roles=["local"])),
                        artifacts=ArtifactStore(root), settings=RuntimeSettings(compute=compute, cpus_per_worker=cpus))


def _kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def make_inputs(root: str, rows: int, features: int, rounds: int) -> tuple[dict, dict]:
    """Write the table and train the model (in this, the parent, process); return both artifacts as JSON."""
    from skills.library.train_xgboost import TrainInput, train_xgboost

    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    logit = X[:, : min(5, features)].sum(axis=1) + rng.normal(0, 1.0, rows)
    columns = {f"x{j}": X[:, j] for j in range(features)}
    table = pa.table({**columns, "y": (logit > 0).astype(np.int8)})
    ctx = _context(root, "local")
    uri = ctx.artifacts.put_table(f"bench/{rows}.parquet", table)
    art = TableArtifact(uri=uri, rows=rows, columns=table.column_names)
    model = train_xgboost(ctx, TrainInput(table=art, target="y", num_rounds=rounds, early_stopping_rounds=0)).model
    return art.model_dump(), model.model_dump()


def _warm() -> None:
    import scipy.stats  # noqa: F401
    import xgboost  # noqa: F401

    import skills.library.boosting.loop
    import skills.library.boosting.metrics
    import skills.library.boosting.saved_model  # noqa: F401


def child(root: str, mode: str, folds: int, cpus: int, inputs: str) -> None:
    """Run evaluate once in this fresh process and print one RESULT line."""
    from skills import ModelArtifact
    from skills.library.evaluate import EvaluateInput, evaluate

    spec = json.loads(inputs)
    table, model = TableArtifact(**spec["table"]), ModelArtifact(**spec["model"])
    if mode == "ray":
        import ray

        for attempt in range(3):  # a busy machine can miss Ray's fixed 30 s raylet start window
            try:
                ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
                break
            except Exception:
                ray.shutdown()
                if attempt == 2:
                    raise
        ray.get(ray.remote(_warm).remote())  # a worker is up and has imported what a fold needs
    _warm()  # the driver has imported it too: import memory is not evaluate's
    ctx = _context(root, mode)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _kb("VmRSS")
    start = time.perf_counter()
    out = evaluate(ctx, EvaluateInput(model=model, table=table, folds=folds))
    wall = time.perf_counter() - start
    peak_mb = (_kb("VmHWM") - before) / 1024
    print(f"RESULT rows={table.rows} mode={mode} peak_mb={peak_mb:.1f} wall_s={wall:.1f} "
          f"auc={out.cv_metrics['auc']:.9f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="200000,1000000")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--child", nargs=5, metavar=("ROOT", "MODE", "FOLDS", "CPUS", "INPUTS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, mode, folds, cpus, inputs = args.child
        child(root, mode, int(folds), int(cpus), inputs)
        return
    import skills

    print(f"skills from {Path(skills.__file__).parent} (set PYTHONPATH to the checkout to measure)", flush=True)
    with tempfile.TemporaryDirectory(prefix="agentml-evalmem-") as root:
        for rows in (int(r) for r in args.rows.split(",")):
            table, model = make_inputs(root, rows, args.features, args.rounds)
            inputs = json.dumps({"table": table, "model": model})
            for mode in ("local", "ray"):
                cmd = [sys.executable, __file__, "--child", root, mode, str(args.folds), str(args.cpus), inputs]
                result = subprocess.run(cmd, capture_output=True, text=True, check=False)
                lines = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT")]
                print(lines[-1] if lines else f"rows={rows} mode={mode} failed:\n{result.stderr[-2000:]}",
                      flush=True)


if __name__ == "__main__":
    main()
