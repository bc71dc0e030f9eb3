"""tune: hyperparameter search for XGBoost with Ray Tune, ASHA early termination and Bayesian (TPE) search.

Each trial is a function trainable that reports `ray.tune.report` every N boosting rounds with `rounds` as ASHA's time
attribute (`Tuner(trainer)` fails on Ray 2.60). Single-worker trials train xgboost directly on arrays shared through
the object store (`tune.with_parameters`), or on batches streamed from the artifact store for a large table
(`boosting.stream`: then only the reading plan is shared); multi-worker trials create and fit an XGBoostTrainer
inside the trial and forward its reports with `TuneReportCallback`; Tune reuses trial actors only for single-worker
trials (`Compute.reuse_actors`). Trials ask for a GPU each when GPUs are used (`Compute`).

The search fits the table (`boosting.search`): rounds per trial and the lowest learning rate from its rows,
regularisation, column sampling, histogram bins, the gblinear booster as an arm, and class weights for an imbalanced
binary target. Three ways a trial ends before its rounds: ASHA stops it at a rung (it ranks in the bottom 2/3 there;
the first rung is a quarter of the rounds, so a low learning rate has had time to learn), it stops improving for
`early_stopping_rounds` (scaled up for a low learning rate, `params.patience_for`), or a budget runs out:
`num_trials`, `max_total_rounds` over all trials (a Tune stopper) and `time_budget_s`. The best configuration is
retrained once with the same early stopping (on Ray Train when the plan runs on Ray) and saved, with the decision
threshold chosen on the validation rows. Those rows chose the hyperparameters, rounds and threshold: their metrics
are "validation (used for tuning)", never a held-out estimate (`evaluate` cross-validates).

Ray must be running: the executor starts it for every step of a skill with `uses_ray=True`, whatever the backend.
Skills never call `ray.init`, so without Ray this skill raises a SkillError that says so (`compute.require_ray`).
"""
from __future__ import annotations

import math
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from skills.context import SkillContext
from skills.errors import SkillError
from skills.library.boosting.compute import cluster_compute, require_ray
from skills.library.boosting.data import Prepared
from skills.library.boosting.params import (
    for_booster,
    from_search,
    metric_key,
    mode_of,
    model_params,
    patience_for,
    primary_metric,
    xgb_params,
)
from skills.library.boosting.search import (
    SearchPlan,
    grace_period,
    positive_rate,
    search_space,
    start_points,
    trial_rounds,
)
from skills.library.train_xgboost import LearningData, fit_model, load_prepared
from skills.registry import skill
from skills.types import ModelArtifact, TableArtifact

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
    max_rounds: int = Field(1000, ge=2, le=100_000, description="boosting rounds per trial at most; larger tables "
                            "get fewer (1000 up to 2k rows, 500 up to 20k, 300 up to 200k, then 200)")
    search: Search = Field("optuna", description="optuna (TPE), hyperopt (TPE) or random")
    scheduler: Scheduler = Field("asha", description="asha stops weak trials early; fifo runs every trial fully")
    time_budget_s: float | None = Field(None, gt=0)
    seed: int | None = Field(None, description="default: settings.seed")
    max_total_rounds: int | None = Field(None, ge=1, description="boosting rounds over all trials at most")
    early_stopping_rounds: int = Field(20, ge=0, description="a trial stops after this many rounds without "
                                       "improvement at eta 0.1, proportionally more at a lower eta (0: every trial "
                                       "runs its rounds unless the scheduler stops it)")
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


def startup_trials(num_trials: int) -> int:
    """Random trials before TPE models the results: a third of the budget, 2 to 10."""
    return max(2, min(10, num_trials // 3))


def make_searcher(search: Search, seed: int, num_trials: int, max_concurrent: int,
                  points: list[dict[str, Any]] | None = None) -> Any:
    """OptunaSearch (TPE), HyperOptSearch or seeded random sampling, each trying `points` first (the portfolio,
    `search.start_points`). Metric and mode come from TuneConfig.
    Random sampling gets `max_concurrent` itself: Tune's `max_concurrent_trials` does not limit a
    BasicVariantGenerator, and unlimited trials can take every CPU the Ray Data reads of a streamed table need."""
    if search == "optuna":
        import optuna
        from optuna.samplers import TPESampler
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not one INFO line per study on the user's terminal
        return OptunaSearch(sampler=TPESampler(seed=seed, n_startup_trials=startup_trials(num_trials),
                                               multivariate=True), points_to_evaluate=points or None)
    if search == "hyperopt":
        from ray.tune.search.hyperopt import HyperOptSearch

        return HyperOptSearch(random_state_seed=seed, n_initial_points=startup_trials(num_trials),
                              points_to_evaluate=points or None)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent, points_to_evaluate=points or None)


def make_scheduler(scheduler: Scheduler, max_rounds: int, every: int) -> Any:
    """ASHA over boosting rounds (rungs at grace * 3^k, grace a quarter of the rounds), or FIFO."""
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
    job = job_for(job, config)
    monitor = Monitor(primary_metric(job.task, job.classes), job.num_rounds, patience=job.patience, every=job.every,
                      sink=lambda event: tune.report(event.metrics(key)))
    params = job.params
    dtrain, dvalid = data.dmatrices(params)
    boost(params, dtrain, dvalid, monitor)


def multi_worker_trial(config: dict[str, Any], job: BoostJob, data: TrainingData, compute: Compute,
                       storage: Storage) -> None:
    """One trial driving an XGBoostTrainer; its workers' reports reach Tune through TuneReportCallback."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from skills.library.boosting.ray_train import make_trainer

    trainer = make_trainer(job_for(job, config), data.datasets(), compute, storage,
                           callbacks=[TuneReportCallback()])
    trainer.fit()


def job_for(job: BoostJob, config: dict[str, Any]) -> BoostJob:
    """A trial's job: its config over the fixed params (a linear booster drops the tree params) and early-stopping
    patience for its learning rate."""
    params = for_booster({**job.params, **from_search(config)})
    return replace(job, params=params, patience=patience_for(job.patience, params))


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


def search_plan(prep: TrainingData, inp: TuneInput) -> SearchPlan:
    """What the search space is fitted to: the table's rows, rounds per trial and (for a binary target held in
    memory) the positive rate of its training rows. A streamed table's labels stay on the workers: no class-weight
    arm there. The linear booster is an arm when no feature is categorical."""
    rate = positive_rate(prep.frame("train").labels, prep.task) if isinstance(prep, Prepared) else None
    return SearchPlan(inp.table.rows, trial_rounds(inp.table.rows, inp.max_rounds), prep.task, rate,
                      linear=not prep.categories)


def trial_job(prep: TrainingData, inp: TuneInput, compute: Compute) -> BoostJob:
    """The fixed part of every trial: task params, compute params, rounds (fitted to the rows), early stopping
    (`job_for` scales it per trial), reporting."""
    from skills.library.boosting.loop import report_every
    from skills.library.boosting.ray_train import BoostJob

    params = xgb_params(model_params(prep.task, prep.seed, classes=prep.classes), prep.task, compute)
    rounds = trial_rounds(inp.table.rows, inp.max_rounds)
    every = report_every(rounds, reports=20)
    return BoostJob(params, prep.task, prep.target, prep.features, prep.categories, rounds,
                    patience=inp.early_stopping_rounds, every=every, checkpoint=False, encoded=prep.encoded,
                    classes=tuple(prep.classes))


def run_search(ctx: SkillContext, prep: TrainingData, inp: TuneInput, compute: Compute, seed: int) -> Any:
    """Tuner.fit() with the searcher (seeded with `seed`), scheduler, budget and progress callback; returns the
    ResultGrid. Models use the split's seed (settings.seed), so only the search changes with `seed`."""
    from ray import tune

    job, plan = trial_job(prep, inp, compute), search_plan(prep, inp)
    storage = ctx.artifacts.storage_for(ctx.key("tune"))
    points = start_points(plan, inp.num_trials)
    config = tune.TuneConfig(
        metric=metric_key(prep.task, prep.classes), mode=mode_of(primary_metric(prep.task, prep.classes)),
        num_samples=inp.num_trials,
        search_alg=make_searcher(inp.search, seed, inp.num_trials, compute.max_concurrent_trials, points),
        scheduler=make_scheduler(inp.scheduler, job.num_rounds, job.every),
        max_concurrent_trials=compute.max_concurrent_trials, time_budget_s=inp.time_budget_s,
        reuse_actors=compute.reuse_actors)
    run = tune.RunConfig(name=f"tune-{uuid.uuid4().hex[:12]}", **storage.run_config(), verbose=0,
                         stop=_stopper_class()(inp.max_total_rounds),
                         callbacks=[_progress_callback(ctx, inp.num_trials)])
    tuner = tune.Tuner(make_trainable(prep, job, compute, storage), param_space=search_space(plan),
                       tune_config=config, run_config=run)
    return tuner.fit()


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def trial_summary(result: Any, key: str, max_rounds: int) -> dict[str, Any]:
    """{trial_id, params, rounds, metric (best validation value), history (metric per report), history_rounds (the
    round of each report), stopped_early}."""
    frame = result.metrics_dataframe
    reported = frame is not None and not frame.empty and "rounds" in frame
    rounds = int(frame["rounds"].max()) if reported else 0
    return {
        "trial_id": (result.metrics or {}).get("trial_id", ""),
        "params": {k: result.config[k] for k in sorted(result.config)},
        "rounds": rounds,
        "metric": _finite(frame[key].iloc[-1]) if reported and key in frame else None,
        "history": [float(v) for v in frame["last"]] if reported and "last" in frame else [],
        "history_rounds": [int(v) for v in frame["rounds"]] if reported and "last" in frame else [],
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
    rounds = trial_rounds(inp.table.rows, inp.max_rounds) if isinstance(inp.table, TableArtifact) else inp.max_rounds
    search = inp.num_trials * rounds
    return min(search, inp.max_total_rounds or search) + rounds


@skill("tune", uses_ray=True, cost=_cost, tags=("model",))
def tune(ctx: SkillContext, inp: TuneInput) -> TuneOutput:
    """Search XGBoost hyperparameters (booster gbtree or gblinear, learning rate and rounds fitted to the table's
    rows, depth, child weight, gamma, L1/L2, row and column sampling, histogram bins, class weights for an imbalanced
    binary target) with Ray Tune: TPE (optuna, default) or hyperopt or random search, ASHA stopping weak trials
    early (rounds as the time unit, first rung at a quarter of the rounds) or FIFO, within a budget of trials, rounds
    per trial, total rounds and wall time. Returns every trial (params, rounds, validation metric, learning history,
    whether it was stopped early), the best params and the best model retrained with early stopping, with a decision
    threshold chosen on the validation rows. Trials also stop after `early_stopping_rounds` without improvement
    (more at a low learning rate). Needs Ray (the executor starts it)."""
    require_ray("tune")
    seed = ctx.settings.seed if inp.seed is None else inp.seed
    prep = load_prepared(ctx, inp.table, inp.target, inp.task, inp.features, inp.exclude, inp.valid_fraction,
                         inp.positive)
    compute = cluster_compute(ctx.settings, inp.num_workers)  # trials always run on the cluster
    compute = compute.streaming() if prep.encoded else compute
    grid = run_search(ctx, prep, inp, compute, seed)
    key, rounds = metric_key(prep.task, prep.classes), trial_rounds(inp.table.rows, inp.max_rounds)
    trials = [trial_summary(result, key, rounds) for result in grid]
    best = best_trial(trials, mode_of(primary_metric(prep.task, prep.classes)))
    params = from_search(best["params"])
    model = fit_model(ctx, prep, params, rounds, inp.early_stopping_rounds, inp.num_workers)
    used = sum(t["rounds"] for t in trials) + len(next(iter(model.history.values()), []))
    return TuneOutput(model=model, best_params=params, trials=trials, rounds_used=used)
