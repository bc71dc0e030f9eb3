r"""Benchmark: the same XGBoost training on CPU `hist` vs CUDA `hist`, through agentml's real training path.

The real path (default, needs Ray and agentml): `skills.library.boosting.ray_train.fit_ray`, i.e. Ray Train's
XGBoostTrainer on a Ray Dataset, with the `Compute` that `scaling_for` gives for `use_gpu=true` on this cluster (one
worker with a GPU, xgboost `device=cuda`) and for `use_gpu=false` (one worker with every CPU), on the same synthetic
data (default 1M rows x 50 float features, binary target), 100 rounds, the same params and validation rows. Worker
start-up (~8 s) is in both times, so each leg also runs 1 round first and the speed-up net of it is printed too.
`--xgboost-only` compares xgboost.train alone (no Ray, no agentml: what a bare image can run); without Ray or
agentml importable the script says so and does that.

Prints both times, both validation AUCs (they should agree to ~1e-3) and, last, `RESULT gpu_speedup=<cpu_s/gpu_s>`.
Without a CUDA device it prints a "no GPU" line and `RESULT gpu_speedup=nan` and exits 0; `--cpu-anyway` then still
runs the CPU leg of the chosen path (to check the script on a machine without a GPU).

Running it on a lent GPU machine (its image has no xgboost or Ray)
-------------------------------------------------------------------
xgboost's Linux wheel carries CUDA and weighs ~130 MB, over the 64 MiB one device call may carry (working tree
included). Carry the installed package in two xz-compressed chunks (~95 MiB in all, ~48 MiB each) and reassemble it
there. The package is pure Python + one self-contained `libxgboost.so` (CUDA statically linked; NCCL is only loaded
for multi-GPU training), so it runs on any Python 3 there with numpy and scipy.

1. Here, once (the lead: `.git/info/exclude` keeps both folders out of git and makes the device copy keep them):

       printf '/.gpuwheel/\n/.gpukeep/\n' >> .git/info/exclude && mkdir -p .gpuwheel
       (cd .venv/lib/python3.11/site-packages && tar cf - xgboost xgboost-3.2.0.dist-info) | xz -T2 -6 \
           > .gpuwheel/xgb.tar.xz                        # ~99 MB
       split -n 2 .gpuwheel/xgb.tar.xz .gpuwheel/xgb.tar.xz.part- && rm .gpuwheel/xgb.tar.xz
                                                         # -> part-aa, part-ab, ~48 MiB each

   (Wheel instead of the installed tree: `pip download --no-deps xgboost==3.2.0 -d .gpuwheel`, then
   `split -b 60M` gives three chunks: a zip does not shrink under xz.)

2. First device call: carry one chunk and park it in the repo copy there (ignored files stay while it is warm):

       run(command="mkdir -p .gpukeep && cp .gpuwheel/xgb.tar.xz.part-aa .gpukeep/ && ls -l .gpukeep",
           carry=[".gpuwheel/xgb.tar.xz.part-aa"], timeout_s=120)

3. Second call, right after (the machine must still be warm): carry the other chunk, reassemble, install, run:

       run(command="cat .gpukeep/xgb.tar.xz.part-aa .gpuwheel/xgb.tar.xz.part-ab | xz -d | tar x -C .gpukeep "
                   "&& PYTHONPATH=.gpukeep python3 bench/gpu_check.py",
           carry=[".gpuwheel/xgb.tar.xz.part-ab"], timeout_s=400)

   If the image lacks numpy or scipy, carry their wheels the same way (numpy ~16 MB, scipy ~36 MB) and put them on
   PYTHONPATH by unzipping them into `.gpukeep`. Give the machine back afterwards.

    python bench/gpu_check.py [--rows 1000000] [--features 50] [--rounds 100] [--xgboost-only] [--cpu-anyway]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # agentml from this checkout


def synthetic(rows: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float features and a binary target from a noisy linear + interaction signal."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    logit = X @ rng.normal(size=features) / np.sqrt(features) + X[:, 0] * X[:, 1]
    return X, (logit + rng.logistic(size=rows) > 0).astype(np.float32)


def cuda_available() -> bool:
    """True when xgboost really trains on a CUDA device here (without one it warns and falls back to the CPU)."""
    import json
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        booster = xgb.train({"device": "cuda", "tree_method": "hist"},
                            xgb.DMatrix(np.zeros((4, 1)), label=np.zeros(4)), 1)
    return json.loads(booster.save_config())["learner"]["generic_param"]["device"].startswith("cuda")


# ------------------------------------------------------------------------------------------ xgboost alone


def xgb_params(device: str) -> dict[str, Any]:
    return {"objective": "binary:logistic", "eval_metric": "auc", "tree_method": "hist", "max_depth": 6,
            "eta": 0.1, "device": device, "nthread": os.cpu_count() or 1, "seed": 0}


def timed_train(device: str, dtrain: xgb.DMatrix, dvalid: xgb.DMatrix, rounds: int) -> tuple[float, float]:
    """(seconds, final validation AUC) of `rounds` hist rounds on `device`."""
    log: dict = {}
    start = time.perf_counter()
    xgb.train(xgb_params(device), dtrain, num_boost_round=rounds, evals=[(dvalid, "valid")], evals_result=log,
              verbose_eval=False)
    return time.perf_counter() - start, float(log["valid"]["auc"][-1])


def xgboost_only(X: np.ndarray, y: np.ndarray, rounds: int, devices: list[str]) -> dict[str, tuple[float, float]]:
    cut = int(0.8 * len(y))
    dtrain, dvalid = xgb.DMatrix(X[:cut], label=y[:cut]), xgb.DMatrix(X[cut:], label=y[cut:])
    if "cuda" in devices:
        timed_train("cuda", dtrain, dvalid, 2)  # CUDA context and kernels loaded before timing
    return {device: timed_train(device, dtrain, dvalid, rounds) for device in devices}


# ------------------------------------------------------------------------------------------ agentml's path


def ray_path_available() -> str | None:
    """None when Ray and agentml's training path import here, else why not."""
    try:
        import ray.train.xgboost  # noqa: F401

        import skills.library.boosting.ray_train  # noqa: F401
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def ray_train(X: np.ndarray, y: np.ndarray, rounds: int, devices: list[str]) -> dict[str, tuple[float, float]]:
    """Each device: (seconds of fit_ray for `rounds`, validation AUC), and the same for 1 round under
    "<device>-startup". Compute comes from agentml's own decision (`scaling_for`) on this Ray cluster."""
    import pyarrow as pa
    import ray

    from service.settings import configure_process
    from skills.artifacts import ArtifactStore
    from skills.context import RuntimeSettings
    from skills.library.boosting.compute import scaling_for
    from skills.library.boosting.data import prepare
    from skills.library.boosting.loop import report_every
    from skills.library.boosting.params import model_params
    from skills.library.boosting.params import xgb_params as run_params
    from skills.library.boosting.ray_train import BoostJob, fit_ray

    configure_process()
    cpus = os.cpu_count() or 1
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    print(f"Ray cluster: {ray.cluster_resources()}")
    table = pa.table({**{f"f{i}": X[:, i] for i in range(X.shape[1])}, "y": y.astype(np.int64)})
    prep = prepare(table, "y", "classification", None, (), 0.2, seed=0)
    out: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as storage:
        for device in devices:
            settings = RuntimeSettings(compute="ray", use_gpu=device == "cuda", cpus_per_worker=cpus - 1 or 1)
            compute = scaling_for(ray.cluster_resources(), settings)
            params = run_params(model_params("classification", 0, {"max_depth": 6}), "classification", compute)
            assert params["device"] == device, (params, compute)
            for n, key in ((1, f"{device}-startup"), (rounds, device)):
                job = BoostJob(params, "classification", "y", prep.features, prep.categories, n, patience=0,
                               every=report_every(n))  # fit_ray reads the booster from its checkpoint
                start = time.perf_counter()
                fit = fit_ray(prep, job, compute, ArtifactStore(storage).storage_for(key))
                out[key] = (time.perf_counter() - start, float(fit.history["auc"][-1]))
            print(f"  {device}: {compute}")
    ray.shutdown()
    return out


def _leg(path: str, X: np.ndarray, y: np.ndarray, rounds: int, devices: list[str]) -> dict[str, tuple[float, float]]:
    return xgboost_only(X, y, rounds, devices) if path == "xgboost" else ray_train(X, y, rounds, devices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--xgboost-only", action="store_true", help="xgboost.train alone, no Ray, no agentml")
    parser.add_argument("--cpu-anyway", action="store_true", help="without a GPU, still run the CPU leg")
    args = parser.parse_args()

    path = "xgboost" if args.xgboost_only else "ray"
    missing = None if args.xgboost_only else ray_path_available()
    if missing:
        print(f"agentml's Ray Train path cannot run here ({missing}): comparing xgboost.train alone instead")
        path = "xgboost"
    gpu = cuda_available()
    if not gpu:
        print("no GPU: no CUDA device here (or an xgboost build without CUDA), so no speed-up to measure")
        if not args.cpu_anyway:
            print("RESULT gpu_speedup=nan")
            return
    X, y = synthetic(args.rows, args.features)
    label = "Ray Train XGBoostTrainer on a Ray Dataset (agentml fit_ray)" if path == "ray" else "xgboost.train"
    print(f"xgboost {xgb.__version__}, {label}, {args.rows} rows x {args.features} features, {args.rounds} rounds")
    times = _leg(path, X, y, args.rounds, ["cuda", "cpu"] if gpu else ["cpu"])
    cpu_s, cpu_auc = times["cpu"]
    print(f"CPU hist ({os.cpu_count()} threads): {cpu_s:.2f} s, validation AUC {cpu_auc:.4f}")
    if not gpu:
        print("RESULT gpu_speedup=nan")
        return
    gpu_s, gpu_auc = times["cuda"]
    print(f"CUDA hist: {gpu_s:.2f} s, validation AUC {gpu_auc:.4f}")
    if path == "ray":
        net = (cpu_s - times["cpu-startup"][0]) / max(gpu_s - times["cuda-startup"][0], 1e-9)
        print(f"speed-up net of a 1-round run (worker start-up, data loading): {net:.2f}")
    print(f"RESULT gpu_speedup={cpu_s / gpu_s:.2f}")


if __name__ == "__main__":
    main()
