"""tune: hyperparameter search for XGBoost with Ray Tune, ASHA early termination and Bayesian (TPE) search.

Each trial is a function trainable that reports `ray.tune.report` every N boosting rounds with `rounds` as ASHA's time
attribute (`Tuner(trainer)` fails on Ray 2.60). Single-worker trials train xgboost directly on arrays shared through
the object store (`tune.with_parameters`), or on batches streamed from the artifact store for a large table
(`boosting.stream`: then only the reading plan is shared); multi-worker trials create and fit an XGBoostTrainer
inside the trial and forward its reports with `TuneReportCallback`; Tune reuses trial actors only for single-worker
trials (`Compute.reuse_actors`). Trials ask for a GPU each when GPUs are used (`Compute`).

Three ways a trial ends before `max_rounds`: ASHA stops it at a rung (it ranks in the bottom 2/3 there), it stops
improving for `early_stopping_rounds`, or a budget runs out: `num_trials`, `max_total_rounds` over all trials (a Tune
stopper) and `time_budget_s`. The best configuration is retrained once with the same early stopping (on Ray Train when
the plan runs on Ray) and saved.

Ray must be running: the executor starts it for every step of a skill with `uses_ray=True`, whatever the backend.
Skills never call `ray.init`, so without Ray this skill raises a SkillError that says so (`compute.require_ray`).
"""
from __future__ import annotations

import math
import uuid
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from skills.context import SkillContext
from skills.errors import SkillError
from skills.library.boosting.compute import cluster_compute, require_ray
from skills.library.boosting.params import metric_key, mode_of, model_params, primary_metric, xgb_params
from skills.library.train_xgboost import LearningData, fit_model, load_prepared
from skills.registry import skill
from skills.types import ModelArtifact

if TYPE_CHECKING:
    from skills.artifacts import Storage
    from skills.library.boosting.compute import Compute
    from skills.library.boosting.data import TrainingData
    from skills.library.boosting.ray_train import BoostJob

Search = Literal["optuna", "hyperopt", "random"]
Scheduler = Literal["asha", "fifo"]
REDUCTION_FACTOR = 3


class TuneInput(LearningData):
    """What to tune (as for train_xgboost) and the search budget."""

    num_trials: int = Field(12, ge=1, le=1000)
    max_rounds: int = Field(200, ge=2, le=100_000, description="boosting rounds per trial at most")
    search: Search = Field("optuna", description="optuna (TPE), hyperopt (TPE) or random")
    scheduler: Scheduler = Field("asha", description="asha stops weak trials early; fifo runs every trial fully")
    time_budget_s: float | None = Field(None, gt=0)
    seed: int | None = Field(None, description="default: settings.seed")
    max_total_rounds: int | None = Field(None, ge=1, description="boosting rounds over all trials at most")
    early_stopping_rounds: int = Field(20, ge=0, description="a trial stops after this many rounds without "
                                       "improvement (0: every trial runs max_rounds unless the scheduler stops it)")
    valid_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    num_workers: int | None = Field(None, ge=1, description="Ray Train workers per trial (default: settings)")


class TuneOutput(BaseModel):
    """The retrained best model, its hyperparameters, every trial and the boosting rounds spent."""

    model_config = ConfigDict(extra="forbid")
    model: ModelArtifact
    best_params: dict[str, Any]
    trials: list[dict[str, Any]]
    rounds_used: int = Field(description="boosting rounds of all trials plus the final retraining")


# ---------------------------------------------------------------------------------------------------------------------
# Search space, searcher, scheduler, budget
# ---------------------------------------------------------------------------------------------------------------------


def search_space() -> dict[str, Any]:
    """The hyperparameters searched: learning rate, tree shape, sampling and regularisation."""
    from ray import tune

    return {
        "eta": tune.loguniform(0.01, 0.3),
        "max_depth": tune.randint(2, 11),
        "min_child_weight": tune.loguniform(0.5, 20.0),
        "subsample": tune.uniform(0.5, 1.0),
        "colsample_bytree": tune.uniform(0.5, 1.0),
        "lambda": tune.loguniform(0.01, 10.0),
    }


def startup_trials(num_trials: int) -> int:
    """Random trials before TPE models the results: a third of the budget, 2 to 10."""
    return max(2, min(10, num_trials // 3))


def make_searcher(search: Search, seed: int, num_trials: int, max_concurrent: int) -> Any:
    """OptunaSearch (TPE), HyperOptSearch or seeded random sampling. Metric and mode come from TuneConfig.
    Random sampling gets `max_concurrent` itself: Tune's `max_concurrent_trials` does not limit a
    BasicVariantGenerator, and unlimited trials can take every CPU the Ray Data reads of a streamed table need."""
    if search == "optuna":
        import optuna
        from optuna.samplers import TPESampler
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not one INFO line per study on the user's terminal
        return OptunaSearch(sampler=TPESampler(seed=seed, n_startup_trials=startup_trials(num_trials),
                                               multivariate=True))
    if search == "hyperopt":
        from ray.tune.search.hyperopt import HyperOptSearch

        return HyperOptSearch(random_state_seed=seed, n_initial_points=startup_trials(num_trials))
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent)


def grace_period(max_rounds: int, every: int) -> int:
    """ASHA's first rung: a twentieth of the rounds, on a report boundary, at least one report. (On mlc_churn,
    12 trials x 200 rounds, a first rung at 10 rounds spent 15% fewer rounds than at 20 for the same best AUC.)"""
    return max(every, (max_rounds // 20) // every * every)


def make_scheduler(scheduler: Scheduler, max_rounds: int, every: int) -> Any:
    """ASHA over boosting rounds (rungs at grace * 3^k), or FIFO."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(time_attr="rounds", max_t=max_rounds, grace_period=grace_period(max_rounds, every),
                         reduction_factor=REDUCTION_FACTOR)


def _stopper_class() -> type:
    from ray.tune.stopper import Stopper

    class RoundsBudget(Stopper):
        """Stops the whole experiment once the trials together ran `limit` boosting rounds."""

        def __init__(self, limit: int | None) -> None:
            self.limit = limit
            self.used: dict[str, int] = {}

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            self.used[trial_id] = int(result.get("rounds", 0))
            return False

        def stop_all(self) -> bool:
            return self.limit is not None and sum(self.used.values()) >= self.limit

    return RoundsBudget


def _progress_callback(ctx: SkillContext, total: int) -> Any:
    from ray.tune import Callback

    class TrialProgress(Callback):
        """Trials done -> ctx.progress. Tune runs callbacks in the driver process but pickles its run config
        with the experiment state: the context (its progress sink may hold locks) is left out of the pickle."""

        def __init__(self, ctx: SkillContext | None, total: int) -> None:
            self.done, self.total, self.ctx = 0, total, ctx

        def __getstate__(self) -> dict[str, Any]:
            return {**self.__dict__, "ctx": None}

        def _count(self, trial: Any, status: str) -> None:
            self.done += 1
            if self.ctx is not None:
                self.ctx.progress(f"trial {self.done}/{self.total} {status}", done=self.done, total=self.total,
                                  unit="trials", trial_id=trial.trial_id)

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._count(trial, "done")

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._count(trial, "failed")

    return TrialProgress(ctx, total)


# ---------------------------------------------------------------------------------------------------------------------
# Trainables (module-level so that trial actors import them)
# ---------------------------------------------------------------------------------------------------------------------


def single_worker_trial(config: dict[str, Any], job: BoostJob, data: TrainingData) -> None:
    """One trial in this actor: xgboost.train on `data` (rows shared through the object store, or streamed from
    the artifact store), `ray.tune.report` every `job.every` rounds."""
    from ray import tune

    from skills.library.boosting.loop import Monitor, boost

    key = metric_key(job.task, job.classes)
    monitor = Monitor(primary_metric(job.task, job.classes), job.num_rounds, patience=job.patience, every=job.every,
                      sink=lambda event: tune.report(event.metrics(key)))
    params = {**job.params, **config}
    dtrain, dvalid = data.dmatrices(params)
    boost(params, dtrain, dvalid, monitor)


def multi_worker_trial(config: dict[str, Any], job: BoostJob, data: TrainingData, compute: Compute,
                       storage: Storage) -> None:
    """One trial driving an XGBoostTrainer; its workers' reports reach Tune through TuneReportCallback."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from skills.library.boosting.ray_train import make_trainer

    trainer = make_trainer(job.with_params(config), data.datasets(), compute, storage,
                           callbacks=[TuneReportCallback()])
    trainer.fit()


def make_trainable(prep: TrainingData, job: BoostJob, compute: Compute, storage: Storage) -> Any:
    """The trial function with its data in the object store (an in-memory table, or a streamed table's reading
    plan: no rows) and its resources (a GPU per trial on GPU clusters)."""
    from ray import tune

    if compute.num_workers > 1:
        fn = tune.with_parameters(multi_worker_trial, job=job, data=prep, compute=compute, storage=storage)
    else:
        fn = tune.with_parameters(single_worker_trial, job=job, data=prep)
    return tune.with_resources(fn, compute.trial_resources())


# ---------------------------------------------------------------------------------------------------------------------
# Running the search and reading the results
# ---------------------------------------------------------------------------------------------------------------------


def trial_job(prep: TrainingData, inp: TuneInput, compute: Compute) -> BoostJob:
    """The fixed part of every trial: task params, compute params, rounds, early stopping, reporting."""
    from skills.library.boosting.loop import report_every
    from skills.library.boosting.ray_train import BoostJob

    params = xgb_params(model_params(prep.task, prep.seed, classes=prep.classes), prep.task, compute)
    every = report_every(inp.max_rounds, reports=20)
    return BoostJob(params, prep.task, prep.target, prep.features, prep.categories, inp.max_rounds,
                    patience=inp.early_stopping_rounds, every=every, checkpoint=False, encoded=prep.encoded,
                    classes=tuple(prep.classes))


def run_search(ctx: SkillContext, prep: TrainingData, inp: TuneInput, compute: Compute, seed: int) -> Any:
    """Tuner.fit() with the searcher (seeded with `seed`), scheduler, budget and progress callback; returns the
    ResultGrid. Models use the split's seed (settings.seed), so only the search changes with `seed`."""
    from ray import tune

    job = trial_job(prep, inp, compute)
    storage = ctx.artifacts.storage_for(ctx.key("tune"))
    config = tune.TuneConfig(
        metric=metric_key(prep.task, prep.classes), mode=mode_of(primary_metric(prep.task, prep.classes)),
        num_samples=inp.num_trials,
        search_alg=make_searcher(inp.search, seed, inp.num_trials, compute.max_concurrent_trials),
        scheduler=make_scheduler(inp.scheduler, inp.max_rounds, job.every),
        max_concurrent_trials=compute.max_concurrent_trials, time_budget_s=inp.time_budget_s,
        reuse_actors=compute.reuse_actors)
    run = tune.RunConfig(name=f"tune-{uuid.uuid4().hex[:12]}", **storage.run_config(), verbose=0,
                         stop=_stopper_class()(inp.max_total_rounds),
                         callbacks=[_progress_callback(ctx, inp.num_trials)])
    tuner = tune.Tuner(make_trainable(prep, job, compute, storage), param_space=search_space(),
                       tune_config=config, run_config=run)
    return tuner.fit()


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def trial_summary(result: Any, key: str, max_rounds: int) -> dict[str, Any]:
    """{trial_id, params, rounds, metric (best validation value), history (metric per report), stopped_early}."""
    frame = result.metrics_dataframe
    reported = frame is not None and not frame.empty and "rounds" in frame
    rounds = int(frame["rounds"].max()) if reported else 0
    return {
        "trial_id": (result.metrics or {}).get("trial_id", ""),
        "params": {k: result.config[k] for k in sorted(result.config)},
        "rounds": rounds,
        "metric": _finite(frame[key].iloc[-1]) if reported and key in frame else None,
        "history": [float(v) for v in frame["last"]] if reported and "last" in frame else [],
        "stopped_early": rounds < max_rounds,
        **({"error": str(result.error).splitlines()[0][:300]} if result.error else {}),
    }


def best_trial(trials: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """The trial with the best metric (ties: the first)."""
    scored = [t for t in trials if t["metric"] is not None]
    if not scored:
        errors = "; ".join(sorted({t.get("error", "no metric reported") for t in trials}))[:500]
        raise SkillError(f"every tuning trial failed: {errors}", skill="tune",
                         hint="check the table, target and budget (time_budget_s, max_total_rounds)")
    pick = max if mode == "max" else min
    return pick(scored, key=lambda t: t["metric"])


def _cost(inp: TuneInput) -> int:
    search = inp.num_trials * inp.max_rounds
    return min(search, inp.max_total_rounds or search) + inp.max_rounds


@skill("tune", uses_ray=True, cost=_cost, tags=("model",))
def tune(ctx: SkillContext, inp: TuneInput) -> TuneOutput:
    """Search XGBoost hyperparameters (learning rate, depth, child weight, subsampling, L2) with Ray Tune: TPE
    (optuna, default) or hyperopt or random search, ASHA stopping weak trials early (rounds as the time unit) or
    FIFO, within a budget of trials, rounds per trial, total rounds and wall time. Returns every trial (params,
    rounds, validation metric, learning history, whether it was stopped early), the best params and the best model
    retrained with early stopping. Trials also stop after `early_stopping_rounds` without improvement. Needs Ray
    (the executor starts it)."""
    require_ray("tune")
    seed = ctx.settings.seed if inp.seed is None else inp.seed
    prep = load_prepared(ctx, inp.table, inp.target, inp.task, inp.features, inp.exclude, inp.valid_fraction,
                         inp.positive)
    compute = cluster_compute(ctx.settings, inp.num_workers)  # trials always run on the cluster
    compute = compute.streaming() if prep.encoded else compute
    grid = run_search(ctx, prep, inp, compute, seed)
    key = metric_key(prep.task, prep.classes)
    trials = [trial_summary(result, key, inp.max_rounds) for result in grid]
    best = best_trial(trials, mode_of(primary_metric(prep.task, prep.classes)))
    model = fit_model(ctx, prep, best["params"], inp.max_rounds, inp.early_stopping_rounds, inp.num_workers)
    rounds = sum(t["rounds"] for t in trials) + len(next(iter(model.history.values()), []))
    return TuneOutput(model=model, best_params=best["params"], trials=trials, rounds_used=rounds)
