r"""Benchmark: the same XGBoost training on CPU `hist` vs CUDA `hist`, with xgboost alone (no Ray, no agentml).

Synthetic data (default 1M rows x 50 float features, binary target), 100 rounds, the same params and validation set
on both devices; CPU uses every core of the machine. Prints both times, both validation AUCs (they should agree to
~1e-3) and, last, `RESULT gpu_speedup=<cpu_s / gpu_s>`. Needs only numpy and xgboost.

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

    python bench/gpu_check.py [--rows 1000000] [--features 50] [--rounds 100]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import xgboost as xgb


def synthetic(rows: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float features and a binary target from a noisy linear + interaction signal."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    logit = X @ rng.normal(size=features) / np.sqrt(features) + X[:, 0] * X[:, 1]
    return X, (logit + rng.logistic(size=rows) > 0).astype(np.float32)


def timed_train(device: str, dtrain: xgb.DMatrix, dvalid: xgb.DMatrix, rounds: int) -> tuple[float, float]:
    """(seconds, final validation AUC) of `rounds` hist rounds on `device`."""
    params = {"objective": "binary:logistic", "eval_metric": "auc", "tree_method": "hist", "max_depth": 6,
              "eta": 0.1, "device": device, "nthread": os.cpu_count() or 1, "seed": 0}
    log: dict = {}
    start = time.perf_counter()
    xgb.train(params, dtrain, num_boost_round=rounds, evals=[(dvalid, "valid")], evals_result=log,
              verbose_eval=False)
    return time.perf_counter() - start, float(log["valid"]["auc"][-1])


def cuda_available() -> bool:
    """True when xgboost really trains on a CUDA device here (without one it warns and falls back to the CPU)."""
    import json
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        booster = xgb.train({"device": "cuda", "tree_method": "hist"},
                            xgb.DMatrix(np.zeros((4, 1)), label=np.zeros(4)), 1)
    return json.loads(booster.save_config())["learner"]["generic_param"]["device"].startswith("cuda")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()

    if not cuda_available():
        print("no CUDA device (or an xgboost build without CUDA) here: nothing to compare")
        print("RESULT gpu_speedup=nan")
        return
    X, y = synthetic(args.rows, args.features)
    cut = int(0.8 * args.rows)
    dtrain = xgb.DMatrix(X[:cut], label=y[:cut])
    dvalid = xgb.DMatrix(X[cut:], label=y[cut:])
    timed_train("cuda", dtrain, dvalid, 2)  # CUDA context and kernels loaded before timing
    gpu_s, gpu_auc = timed_train("cuda", dtrain, dvalid, args.rounds)
    cpu_s, cpu_auc = timed_train("cpu", dtrain, dvalid, args.rounds)
    print(f"xgboost {xgb.__version__}, {args.rows} rows x {args.features} features, {args.rounds} rounds")
    print(f"CPU hist ({os.cpu_count()} threads): {cpu_s:.2f} s, validation AUC {cpu_auc:.4f}")
    print(f"CUDA hist: {gpu_s:.2f} s, validation AUC {gpu_auc:.4f}")
    print(f"RESULT gpu_speedup={cpu_s / gpu_s:.2f}")


if __name__ == "__main__":
    main()
