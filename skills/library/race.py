"""race_features: race candidate feature sets against each other, then keep only what a paired test supports.

Stage 1, the race, runs on Ray Tune with the `ASHAScheduler` (asynchronous successive halving). One trial per
candidate group trains xgboost on the base features plus that group, on the same train/validation split, for at most
`max_rounds`, and reports its validation metric every `report_every` rounds with `rounds` as ASHA's time attribute.
At each rung (`grace_rounds` x `reduction_factor`^k rounds) ASHA stops a trial below the top 1/`reduction_factor` of
the trials that reached the rung before it; survivors are promoted to the next rung, up to `max_rounds`. Trials are
ranked on their best validation value so far, not the last: a model with a large learning rate peaks early and
overfits after, and the race must not punish a feature set for rounds it did not need. The base features' own curve
is trained to the end in this process, on the same split: it is the reference, so ASHA must never stop it.

ASHA is asynchronous: a trial is judged against the trials that reached a rung before it, so the first to arrive
cannot be stopped there, and with several trials at a time which ones stop can depend on the order they arrive in.
That is the race's contract: it only prunes, cheaply. It never accepts a group; stage 2 does, on identical folds.

Like `tune`, the race needs Ray: the executor starts it for this skill (`uses_ray=True`) whatever the backend, and
without it the skill raises a SkillError that says so. Tune's experiment state lives in the artifact store, which
every node reads (a driver-local folder fails on a second node). Trials are plain function trainables (no Ray Train
workers inside), so Tune may reuse their actors.

Stage 2, the test: the finalists (trials that survived to `max_rounds` and beat the base features on validation) are
added one at a time, best first, and each addition is cross-validated against the current feature set on identical
folds (`skills.library.evaluate.cross_validate`). It is accepted only if the mean fold improvement is > 0 and a
one-sided paired t-test over the folds, corrected for their overlap (Nadeau & Bengio's corrected resampled t-test),
gives p < alpha / number of finalists (Bonferroni: several finalists are tested). Each arm trains for the rounds at
which its race curve peaked, its own early-stopping point.
"""
from __future__ import annotations

import contextlib
import io
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from skills.context import SkillContext
from skills.errors import SkillError
from skills.frame import build_frame, infer_task
from skills.library.boosting.compute import cluster_compute, require_ray
from skills.library.boosting.data import holdout_split, table_classes
from skills.library.boosting.params import mode_of, model_params, race_metric
from skills.registry import skill
from skills.types import TableArtifact, Task

log = logging.getLogger("agentml.skills.race")


class CandidateGroup(BaseModel):
    """One idea to race: feature columns (already in the table) that enter the model together."""

    model_config = ConfigDict(extra="forbid")
    name: str
    features: list[str] = Field(min_length=1)
    description: str = ""


class RaceInput(BaseModel):
    """The table holding base and candidate columns, and how hard to race and test."""

    model_config = ConfigDict(extra="forbid")
    table: TableArtifact
    target: str
    task: Task | None = None
    base_features: list[str] = Field(min_length=1)
    candidates: list[CandidateGroup] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict, description="xgboost parameters of the current model")
    max_rounds: int = Field(default=60, ge=1, description="rounds of a trial that survives every rung")
    cv_rounds: int | None = Field(default=None, ge=1, description="rounds per fold in the paired test (default: "
                                                                   "each feature set's best round in the race)")
    grace_rounds: int = Field(default=10, ge=1, description="rounds every trial gets before it may be stopped")
    reduction_factor: int = Field(default=3, ge=2)
    report_every: int = Field(default=5, ge=1, description="rounds between validation reports (and best-round "
                                                            "granularity)")
    valid_fraction: float = Field(default=0.2, gt=0, lt=1)
    finalists: int = Field(default=3, ge=1, description="at most this many race winners go to the paired test")
    folds: int = Field(default=10, ge=3)
    alpha: float = Field(default=0.1, gt=0, lt=1)
    seed: int = 0


class GroupResult(BaseModel):
    """How one candidate group fared in the race and (if it got there) in the paired test."""

    model_config = ConfigDict(extra="forbid")
    name: str
    features: list[str]
    description: str = ""
    race_metric: float | None = None
    race_rounds: int = 0
    best_rounds: int = 0
    stopped_early: bool = False
    history: list[float] = Field(default_factory=list)
    tested: bool = False
    cv_delta: float | None = None
    cv_folds: list[float] = Field(default_factory=list)
    p_value: float | None = None
    accepted: bool = False
    reason: str = ""


class RaceOutput(BaseModel):
    """The verdict: accepted groups, the resulting feature list and every group's scores and reason."""

    model_config = ConfigDict(extra="forbid")
    metric_name: str
    higher_is_better: bool
    baseline_race_metric: float
    baseline_cv: list[float]
    cv_metric: float | None = Field(description="mean CV metric of `features`; None when no group reached the test")
    cv_folds: list[float]
    features: list[str]
    accepted: list[str]
    groups: list[GroupResult]
    rounds_used: int


def _cost(inp: RaceInput) -> int:
    race = (len(inp.candidates or []) + 1) * (inp.max_rounds or 0)  # + the base features' own run
    test = ((inp.finalists or 0) + 1) * (inp.folds or 0) * (inp.cv_rounds or inp.max_rounds or 0)
    return race + test


@dataclass
class _Data:
    """The design matrix split once, so every trial sees identical train and validation rows."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_valid: np.ndarray
    y_valid: np.ndarray
    columns: list[str]
    feature_types: list[str]

    def dmatrices(self, features: list[str]) -> tuple[Any, Any]:
        import xgboost as xgb

        idx = [self.columns.index(f) for f in features]
        types = [self.feature_types[i] for i in idx]
        kw = {"feature_names": features, "feature_types": types, "enable_categorical": True}
        return (xgb.DMatrix(self.X_train[:, idx], label=self.y_train, **kw),
                xgb.DMatrix(self.X_valid[:, idx], label=self.y_valid, **kw))


def _split(table: pa.Table, features: list[str], target: str, task: Task, fraction: float, seed: int,
           classes: list[str]) -> _Data:
    """The design matrix and the same stratified holdout split training uses (`boosting.data.holdout_split`)."""
    frame = build_frame(table, features, target, task, classes=classes or None)
    assert frame.y is not None
    tr, va = holdout_split(frame.y, task, fraction, seed)
    return _Data(frame.X[tr], frame.y[tr], frame.X[va], frame.y[va], frame.features, frame.feature_types)


def _params(task: Task, params: dict[str, Any], seed: int, classes: list[str]) -> dict[str, Any]:
    """The model's stored parameters (as training fills them in) + this race's metric, one thread per trial."""
    return {**model_params(task, seed, params, classes), "eval_metric": race_metric(task, classes), "nthread": 1}


def trial_curve(data: _Data, features: list[str], params: dict[str, Any], max_rounds: int,
                every: int) -> Iterator[tuple[int, float]]:
    """Train round block by round block; yield (rounds so far, validation metric) after each block."""
    import xgboost as xgb

    dtrain, dvalid = data.dmatrices(features)
    booster = None
    done = 0
    while done < max_rounds:
        step = min(every, max_rounds - done)
        evals: dict[str, Any] = {}
        booster = xgb.train(params, dtrain, step, evals=[(dvalid, "valid")], evals_result=evals,
                            xgb_model=booster, verbose_eval=False)
        done += step
        yield done, float(evals["valid"][params["eval_metric"]][-1])


@dataclass
class _Trial:
    """One race entry: its validation curve (one value per report) and how far it got.

    Trials are compared on their best value so far, not the last: with a large learning rate a model peaks
    early and overfits after, and the race must not punish a feature set for the rounds it did not need."""

    group: CandidateGroup
    sign: float
    every: int
    history: list[float] = field(default_factory=list)
    rounds: int = 0
    stopped: bool = False

    @property
    def best(self) -> float:
        return max(self.history, key=lambda v: self.sign * v)

    @property
    def best_rounds(self) -> int:
        """Rounds at the best report: what the paired test trains this feature set for."""
        i = max(range(len(self.history)), key=lambda j: self.sign * self.history[j])
        return min((i + 1) * self.every, self.rounds)


Reporter = Callable[[str, int, float], None]


def race_trial(config: dict[str, Any], data: _Data, params: dict[str, Any], base: list[str], max_rounds: int,
               every: int, sign: float) -> None:
    """One race entry in a Tune actor (module-level so that trial actors import it): base features + the group in
    `config`, reporting the best value so far (`metric`, what ASHA ranks) and the last one (`last`, the curve)."""
    from ray import tune

    best: float | None = None
    for rounds, metric in trial_curve(data, base + config["group"]["features"], params, max_rounds, every):
        best = metric if best is None or sign * (metric - best) > 0 else best
        tune.report({"metric": best, "last": metric, "rounds": rounds})


def _forward_results(sink: Reporter) -> Any:
    from ray import tune

    class ForwardResults(tune.Callback):
        """Trial results -> progress events. Tune pickles its run config (callbacks included) into the experiment
        state; the reporter (which holds the run's progress sink) stays behind in this process."""

        def __init__(self, sink: Reporter | None) -> None:
            self.sink = sink

        def __getstate__(self) -> dict[str, Any]:
            return {"sink": None}

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                            **info: Any) -> None:
            if self.sink is not None:
                self.sink(trial.config["group"]["name"], int(result["rounds"]), float(result["metric"]))

    return ForwardResults(sink)


def _scheduler(inp: RaceInput) -> Any:
    """ASHA over boosting rounds; the first rung never past the last round (no rung then: every trial runs out)."""
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="rounds", max_t=inp.max_rounds, grace_period=min(inp.grace_rounds, inp.max_rounds),
                         reduction_factor=inp.reduction_factor)


def _trial_from_result(result: Any, by_name: dict[str, CandidateGroup], inp: RaceInput, sign: float) -> _Trial:
    name = result.config["group"]["name"]
    if result.error is not None:
        raise SkillError(f"race trial {name!r} failed: {str(result.error).splitlines()[0][:300]}",
                         skill="race_features", hint="check the candidate columns; they must be numeric or categorical")
    rounds = int(result.metrics["rounds"])
    return _Trial(by_name[name], sign, inp.report_every, [float(m) for m in result.metrics_dataframe["last"]],
                  rounds, stopped=rounds < inp.max_rounds)


def _finalists(trials: list[_Trial], baseline: _Trial, k: int) -> list[_Trial]:
    """Trials that ran to the end and beat the base features' best on validation, best first."""
    done = [t for t in trials if not t.stopped and t.sign * (t.best - baseline.best) > 0]
    return sorted(done, key=lambda t: -t.sign * t.best)[:k]


def paired_test(candidate: list[float], current: list[float], sign: float) -> tuple[float, float]:
    """Mean improvement over k CV folds (positive = better) and its one-sided p-value by the corrected resampled
    t-test (Nadeau & Bengio 2003): the fold differences are not independent (the training sets overlap), so their
    variance is scaled by 1/k + n_test/n_train = 1/k + 1/(k-1) instead of the naive 1/k, which would call noise
    significant far too often."""
    from scipy import stats

    diff = sign * (np.asarray(candidate, dtype=float) - np.asarray(current, dtype=float))
    k, mean = len(diff), float(diff.mean())
    var = float(diff.var(ddof=1)) if k > 1 else 0.0
    if var <= 1e-18:  # identical differences: no spread to test; the sign decides
        return mean, 0.0 if mean > 0 else 1.0
    t = mean / np.sqrt((1 / k + 1 / (k - 1)) * var)
    return mean, float(stats.t.sf(t, df=k - 1))


def _group_result(t: _Trial, baseline: _Trial) -> GroupResult:
    if t.stopped:
        reason = f"stopped early by ASHA after {t.rounds} rounds"
    elif t.sign * (t.best - baseline.best) <= 0:
        reason = "did not beat the base features on validation"
    else:
        reason = "beaten in the race by better finalists"
    return GroupResult(name=t.group.name, features=t.group.features, description=t.group.description,
                       race_metric=t.best, race_rounds=t.rounds, best_rounds=t.best_rounds, stopped_early=t.stopped,
                       history=t.history, reason=reason)


@dataclass
class _Stage2:
    """The paired-test stage: the current feature set, its rounds and fold metrics, grown one group at a time.
    Each arm trains for the rounds at which its race curve peaked (its own early-stopping point)."""

    cv: Callable[[list[str], int], list[float]]
    features: list[str]
    rounds: int
    current: list[float]
    sign: float
    metric: str

    def test(self, trial: _Trial, group: GroupResult, threshold: float) -> None:
        folds = self.cv(self.features + group.features, trial.best_rounds)
        delta, p = paired_test(folds, self.current, self.sign)
        group.tested, group.cv_delta, group.cv_folds, group.p_value = True, delta, folds, p
        n = len(folds)
        if delta > 0 and p < threshold:
            group.accepted = True
            group.reason = f"CV {self.metric} +{delta:.4f} over {n} folds, corrected paired t-test p={p:.3g}"
            self.features, self.rounds, self.current = self.features + group.features, trial.best_rounds, folds
        else:
            group.reason = (f"CV {self.metric} change {delta:+.4f} over {n} folds, corrected paired t-test p={p:.3g} "
                            f"(needs an improvement and p < {threshold:.3g})")


def _progress(ctx: SkillContext, metric: str) -> Reporter:
    def report(name: str, rounds: int, value: float) -> None:
        ctx.progress(f"race {name}: best {metric} {value:.4f} after {rounds} rounds", unit="rounds",
                     group=name, rounds=rounds, metric=value)

    return report


def concurrent_trials(ctx: SkillContext) -> int:
    """Race trials at a time: the one Compute decision for one-CPU, CPU-only trials on this cluster (1 on 2 CPUs,
    one CPU kept for the driver). ASHA judges a trial against those that reached its rung first, so fewer at a
    time means better informed rung decisions; more CPUs buy wall time."""
    one_cpu = ctx.settings.model_copy(update={"num_workers": 1, "cpus_per_worker": 1, "use_gpu": False})
    return cluster_compute(one_cpu, 1).max_concurrent_trials


def _race(ctx: SkillContext, data: _Data, inp: RaceInput, params: dict[str, Any], sign: float) -> list[_Trial]:
    """Ray Tune with the ASHA scheduler: one trial per candidate group, one CPU each, best-so-far as the metric."""
    from ray import tune

    trainable = tune.with_parameters(race_trial, data=data, params=params, base=inp.base_features,
                                     max_rounds=inp.max_rounds, every=inp.report_every, sign=sign)
    storage = ctx.artifacts.storage_for(ctx.key("race"))
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"group": tune.grid_search([g.model_dump() for g in inp.candidates])},
        tune_config=tune.TuneConfig(metric="metric", mode="max" if sign > 0 else "min", scheduler=_scheduler(inp),
                                    reuse_actors=True, max_concurrent_trials=concurrent_trials(ctx)),
        run_config=tune.RunConfig(name=f"race-{uuid.uuid4().hex[:12]}", **storage.run_config(), verbose=0,
                                  callbacks=[_forward_results(_progress(ctx, params["eval_metric"]))]),
    )
    with contextlib.redirect_stdout(io.StringIO()) as banner:  # Tune prints its experiment table to stdout
        results = tuner.fit()
    log.debug("tune: %s", banner.getvalue())
    by_name = {g.name: g for g in inp.candidates}
    return [_trial_from_result(results[i], by_name, inp, sign) for i in range(len(results))]


def _baseline(data: _Data, inp: RaceInput, params: dict[str, Any], sign: float) -> _Trial:
    """The base features' own curve on the race's split, trained to the end (never stopped)."""
    trial = _Trial(CandidateGroup(name="base", features=inp.base_features), sign, inp.report_every)
    for trial.rounds, metric in trial_curve(data, inp.base_features, params, inp.max_rounds, inp.report_every):
        trial.history.append(metric)
    return trial


@skill("race_features", uses_ray=True, cost=_cost, tags=("features", "ooda"))
def race_features(ctx: SkillContext, inp: RaceInput) -> RaceOutput:
    """Race candidate feature groups with early stopping (ASHA: each trial = base features + one group, weak groups
    stopped at the rungs), then accept a group only if a paired test over cross-validation folds shows it improves
    the model (mean improvement > 0 and one-sided corrected paired t-test p < alpha / finalists, identical folds).
    Returns every group's race curve, test result and the reason it was accepted or not."""
    from skills.library.evaluate import cross_validate

    require_ray("race_features")
    table = ctx.artifacts.get_table(inp.table.uri)
    _check_columns(table, inp)
    task = inp.task or infer_task(table, inp.target)
    classes = table_classes(table.column(inp.target), task)  # multiclass targets race as softprob models
    metric = race_metric(task, classes)
    sign = 1.0 if mode_of(metric) == "max" else -1.0
    params = _params(task, inp.params, inp.seed, classes)
    all_features = list(dict.fromkeys(inp.base_features + [f for g in inp.candidates for f in g.features]))
    data = _split(table, all_features, inp.target, task, inp.valid_fraction, inp.seed, classes)
    baseline = _baseline(data, inp, params, sign)
    trials = _race(ctx, data, inp, params, sign)
    groups = {t.group.name: _group_result(t, baseline) for t in trials}

    def cv(features: list[str], rounds: int) -> list[float]:
        # one thread: these models are small, and OpenMP threads spinning on a busy machine made 10 folds 60x slower
        folds = cross_validate(table, features, inp.target, task, params, inp.cv_rounds or rounds,
                               folds=inp.folds, seed=inp.seed, classes=classes)
        return [float(f[metric]) for f in folds]

    finalists = _finalists(trials, baseline, inp.finalists)
    stage = _Stage2(cv, list(inp.base_features), baseline.best_rounds, [], sign, metric)
    stage.current = baseline_cv = cv(stage.features, stage.rounds) if finalists else []
    for i, t in enumerate(finalists):
        ctx.progress(f"paired test: {t.group.name}", done=i, total=len(finalists), unit="groups")
        stage.test(t, groups[t.group.name], inp.alpha / len(finalists))
    rounds_used = baseline.rounds + sum(t.rounds for t in trials) + (len(finalists) + 1) * inp.folds * \
        (inp.cv_rounds or inp.max_rounds)
    return RaceOutput(metric_name=metric, higher_is_better=sign > 0, baseline_race_metric=baseline.best,
                      baseline_cv=baseline_cv, cv_metric=float(np.mean(stage.current)) if stage.current else None,
                      cv_folds=stage.current, features=stage.features,
                      accepted=[g.name for g in groups.values() if g.accepted], groups=list(groups.values()),
                      rounds_used=rounds_used)


def _check_columns(table: pa.Table, inp: RaceInput) -> None:
    wanted = [inp.target, *inp.base_features, *(f for g in inp.candidates for f in g.features)]
    missing = sorted({c for c in wanted if c not in table.column_names})
    if missing:
        raise SkillError(f"columns not in the table: {', '.join(missing)}", skill="race_features",
                         hint="compute the candidate features first (features step) and race that table")
    names = [g.name for g in inp.candidates]
    if len(set(names)) != len(names):
        raise SkillError("candidate group names must be unique", skill="race_features",
                         hint="give each group its own name")
