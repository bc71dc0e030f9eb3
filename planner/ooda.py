"""The OODA loop: the planner improves a model it has trained by extending the plan it ran.

Observe: the residuals step's worst slices. Orient: from the principal's catalog, related tables reachable by the
entity key with a time column, unused numeric columns, the columns transformations may use, the top drivers
(`planner.ooda_rules.orient`). Decide: candidate feature groups from rule generators (history features, then
transformations of the training table's own columns suggested by the slices and drivers: `planner.ooda_transforms`),
plus LLM proposals when a model is configured; each says what motivated it. Without an entity key the loop still
runs: transformations are computed on the same rows and need no join. Act: extend the plan
with a `features` step computing every candidate and a `race_features` step (ASHA race, then a paired test over CV
folds) and, when a group is accepted, retrain + evaluate + explain + residuals on the new feature set.

The extended plan is one DAG (refs between the original and the new steps) so that it can be saved and re-run as a
whole; each extension runs through the `execute` function the caller passes (the executor's `run_plan`) with the outputs
of steps that already ran passed in as literals. The loop stops after `iterations`, when nothing is accepted, or when no
untried candidate is left.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from governance import AgentmlError, Category
from planner.ooda_rules import Candidate, Orientation, decide, orient
from skills.plan import Plan, Step
from skills.refs import Ref, RefError, as_ref, map_refs, resolve
from skills.runs import RunResult
from skills.sql import sql_reads

if TYPE_CHECKING:
    from governance import Engine, Principal
    from planner.budget import Budget
    from skills.registry import Registry

TRAIN_SKILLS = ("train_xgboost", "tune")
MIN_RACE_ROUNDS = 10
FOLLOW_UP = ("evaluate", "explain", "residuals")


class CandidateScore(BaseModel):
    """A candidate group after the race and the paired test: its scores, verdict and why."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str
    source: str
    features: list[str]
    motivation: str = Field(default="", description="the residual slice, driver or column that suggested it")
    race_metric: float | None = None
    race_rounds: int = 0
    stopped_early: bool = False
    cv_delta: float | None = None
    p_value: float | None = None
    accepted: bool = False
    reason: str = ""


class Iteration(BaseModel):
    """One turn of the loop: what it saw, what it tried, what it kept and what that did to the metric."""

    model_config = ConfigDict(extra="forbid")
    index: int
    observed: list[dict[str, Any]] = Field(default_factory=list, description="worst residual slices")
    oriented: dict[str, Any] = Field(default_factory=dict)
    ideas: list[str] = Field(default_factory=list, description='what suggested each candidate: "slice X -> idea Y"')
    candidates: list[CandidateScore] = Field(default_factory=list)
    accepted: list[str] = Field(default_factory=list, description="names of the accepted groups")
    accepted_features: list[str] = Field(default_factory=list)
    metric_name: str = ""
    baseline_value: float | None = Field(default=None, description="CV metric before this iteration")
    metric_value: float | None = Field(default=None, description="CV metric after it (same protocol)")
    race: dict[str, Any] = Field(default_factory=dict, description="the race's own baseline and CV numbers")
    run_ids: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    why: str = ""


class OodaResult(BaseModel):
    """Every iteration, the extended plan, the final step ids per role and how the loop ended."""

    model_config = ConfigDict(extra="forbid")
    iterations: list[Iteration] = Field(default_factory=list)
    plan: Plan
    roles: dict[str, str] = Field(default_factory=dict, description="train/evaluate/explain/residuals -> step id")
    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict, description="step id -> outputs")
    accepted_features: list[str] = Field(default_factory=list)
    accepted_specs: list[dict[str, Any]] = Field(default_factory=list)
    stopped: str = ""
    error: str | None = None
    failed_step: str | None = None
    failed_run: str | None = None
    failed_kind: str | None = Field(default=None, description="error type of the failed step")

    def final(self, role: str) -> dict[str, Any]:
        """Outputs of the latest step playing `role` (train, evaluate, explain, residuals)."""
        return self.outputs.get(self.roles.get(role, ""), {})


class OodaError(AgentmlError):
    """The loop cannot start on this plan (no trained model, no SQL behind its table). `hint` says what to change."""

    category: ClassVar[Category] = "run_failed"
    code = "ooda"


class _Stop(Exception):
    """The loop cannot go on (budget, invalid extension); the message says why."""


class _RunFailed(Exception):
    def __init__(self, run: RunResult) -> None:
        super().__init__(run.error or run.status)
        self.run = run


# --------------------------------------------------------------------------------------------------- plan plumbing


def inline_outputs(step: Step, outputs: Mapping[str, Mapping[str, Any]]) -> Step:
    """The step with refs to steps that already ran replaced by their values (so it runs in a plan of its own)."""
    inputs = {k: resolve(v, outputs, partial=True) for k, v in step.inputs.items()}
    return step.model_copy(update={"inputs": inputs})


def last_step(plan: Plan, skills: Sequence[str], done: Mapping[str, Any]) -> str | None:
    """Id of the last step of `plan` running one of `skills` that is in `done` (finished steps)."""
    return next((s.id for s in reversed(plan.steps) if s.skill in skills and s.id in done), None)


def step_outputs(run: RunResult) -> dict[str, dict[str, Any]]:
    """Step id -> outputs of every step of `run` that produced some."""
    return {sid: dict(s.outputs) for sid, s in run.steps.items() if s.outputs is not None}


def find_roles(plan: Plan, outputs: Mapping[str, Any]) -> dict[str, str]:
    """Step id of the (last, finished) train, evaluate, explain, residuals and report steps, and the table source."""
    train = last_step(plan, TRAIN_SKILLS, outputs)
    if train is None:
        raise OodaError("the plan has no finished training step to improve",
                        hint="run a plan with a train_xgboost or tune step first")
    roles = {"train": train}
    for skill in (*FOLLOW_UP, "report"):
        if (sid := last_step(plan, (skill,), {s.id: 1 for s in plan.steps})) is not None:
            roles[skill] = sid
    ref = as_ref(plan.step(train).inputs.get("table"))
    if ref is None or ref.step not in {s.id for s in plan.steps}:
        raise OodaError("the training table does not come from a query or features step",
                        hint="train on the output of a query or features step so the loop can add features")
    roles["table"] = ref.step
    return roles


@dataclass
class BaseQuery:
    """The SQL and key the training rows come from, the specs already on them, and the label cutoff."""

    sql: str
    key: str | None
    specs: list[dict[str, Any]]
    cutoff: str | None
    table: str | None

    @classmethod
    def of(cls, step: Step, outputs: Mapping[str, Mapping[str, Any]]) -> BaseQuery:
        try:
            inputs = {k: resolve(v, outputs) for k, v in step.inputs.items()}
        except RefError as err:
            raise OodaError(f"the inputs of the training table's step {step.id!r} cannot be read back: "
                            f"{err.message}", hint=err.hint) from None
        if step.skill == "features":
            sql, specs, cutoff = inputs["base_sql"], list(inputs.get("specs") or []), inputs.get("cutoff")
            key = inputs.get("key")
        elif step.skill == "query":
            sql, specs, cutoff, key = inputs["sql"], [], None, inputs.get("key")
        else:
            raise OodaError(f"the training table comes from a {step.skill!r} step, not from SQL",
                            hint="train on the output of a query or features step")
        key = key or (outputs.get(step.id, {}).get("table") or {}).get("key")
        tables = list(sql_reads(sql))
        return cls(sql, key, specs, cutoff, tables[0] if len(tables) == 1 else None)


# ------------------------------------------------------------------------------------------------------- the loop


@dataclass
class LoopConfig:
    """How hard the loop works: iterations, candidates per iteration, race and test sizes."""

    iterations: int = 2
    max_candidates: int = 12
    race_rounds: int = 60
    grace_rounds: int = 10
    folds: int = 10
    alpha: float = 0.1
    finalists: int = 3
    seed: int = 0
    llm_model: str | None = None
    llm_options: dict[str, Any] = field(default_factory=dict)
    llm_timeout_s: float = 60.0
    llm_send_values: bool = False  # slice levels and bin edges in the prompt (never of masked/denied/PII columns)


@dataclass
class _Loop:
    """State of one improve() call: the growing plan, every output so far, and the latest step of each role."""

    plan: Plan
    outputs: dict[str, dict[str, Any]]
    roles: dict[str, str]
    base: BaseQuery
    catalog: Mapping[str, Mapping[str, str]]
    config: LoopConfig
    execute: Callable[[Plan], RunResult]
    check: Callable[[Plan, Plan], None]
    engine: Engine
    principal: Principal
    budget_rounds: int | None = None
    kept_specs: list[dict[str, Any]] = field(default_factory=list)
    tried: dict[str, object] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)  # features of raced groups that were not kept
    run_ids: list[str] = field(default_factory=list)

    # -- views on the current model
    @property
    def model(self) -> dict[str, Any]:
        return self.outputs[self.roles["train"]]["model"]

    def metric(self) -> tuple[str, float | None]:
        """The current model's cross-validated metric (its evaluate step), else its validation metric."""
        ev = self.outputs.get(self.roles.get("evaluate", ""), {})
        name = ev.get("metric_name") or next(iter(self.model.get("metrics") or {"metric": None}))
        cv = ev.get("cv_metrics") or {}
        value = cv.get(name, ev.get("metric_value", (self.model.get("metrics") or {}).get(name)))
        return name, value

    def slices(self) -> list[dict[str, Any]]:
        return list(self.outputs.get(self.roles.get("residuals", ""), {}).get("slices") or [])

    def drivers(self) -> list[str]:
        ex = self.outputs.get(self.roles.get("explain", ""), {})
        return [d["feature"] for d in ex.get("drivers") or ex.get("importance") or []]

    def table(self) -> dict[str, Any]:
        return self.outputs[self.roles["table"]]["table"]

    # -- running
    def run(self, steps: list[Step]) -> RunResult:
        """Append `steps` to the plan and run them (earlier outputs passed in as literals)."""
        sub = Plan(goal=self.plan.goal, steps=[inline_outputs(s, self.outputs) for s in steps],
                   metadata={**self.plan.metadata, "ooda": True})
        self.check(Plan(goal=self.plan.goal, steps=[*self.plan.steps, *steps], metadata=self.plan.metadata), sub)
        self.plan.steps.extend(steps)
        result = self.execute(sub)
        self.run_ids.append(result.id)
        for sid, step in result.steps.items():
            if step.status == "succeeded" and step.outputs is not None:
                self.outputs[sid] = step.outputs
        if result.status != "succeeded":
            raise _RunFailed(result)
        return result


def _excluded(plan: Plan) -> list[str]:
    """Columns any training step of the plan was told to leave out (literal `exclude` inputs): never transformed."""
    return [c for s in plan.steps if s.skill in TRAIN_SKILLS and isinstance(s.inputs.get("exclude"), list)
            for c in s.inputs["exclude"] if isinstance(c, str)]


def _orient(loop: _Loop) -> Orientation:
    table = loop.table()
    columns = [c for c in table.get("columns") or [] if c not in loop.dropped]  # a rejected group's are not kept
    return orient(loop.catalog, base_table=loop.base.table, key=loop.base.key, cutoff=loop.base.cutoff,
                  table_columns=columns, model_features=loop.model["features"],
                  target=loop.model["target"], drivers=loop.drivers(), excluded=_excluded(loop.plan))


def _candidates(loop: _Loop, o: Orientation, slices: list[dict[str, Any]]) -> list[Candidate]:
    taken = {**loop.tried, **{c: 1 for c in loop.table().get("columns") or []}}
    found = decide(o, taken, loop.config.max_candidates, slices=loop.slices())
    if loop.config.llm_model:
        from planner.ooda_llm import propose

        found += propose(loop.config.llm_model, o, loop.catalog, loop.model, slices, taken,
                         limit=max(1, loop.config.max_candidates // 3), timeout_s=loop.config.llm_timeout_s,
                         values=loop.config.llm_send_values, engine=loop.engine, principal=loop.principal,
                         **loop.config.llm_options)
    return found


def _features_step(loop: _Loop, i: int, candidates: list[Candidate]) -> Step:
    specs = loop.base.specs + loop.kept_specs + [s for c in candidates for s in c.specs]
    inputs = {"base_sql": loop.base.sql, "key": loop.base.key, "specs": specs, "cutoff": loop.base.cutoff}
    return Step(id=f"ooda{i}_features", skill="features", inputs=inputs,
                description=f"OODA {i}: compute {len(candidates)} candidate feature groups")


def race_rounds(loop: _Loop, n_candidates: int) -> int:
    """Rounds per model in the race and the paired test: the config's, capped by what the budget leaves per model
    (the race trains the base set and every candidate once, the paired test (finalists + 1) x folds models).
    Not the current model's early-stopped round count: new features may need more rounds than the old ones."""
    cfg = loop.config
    if loop.budget_rounds is None:
        return cfg.race_rounds
    return min(cfg.race_rounds, loop.budget_rounds // (n_candidates + 1 + (cfg.finalists + 1) * cfg.folds))


def _race_step(loop: _Loop, i: int, candidates: list[Candidate], rounds: int) -> Step:
    model, cfg = loop.model, loop.config
    inputs: dict[str, Any] = {
        "table": Ref(step=f"ooda{i}_features", path="table"), "target": model["target"], "task": model["task"],
        "base_features": list(model["features"]), "params": dict(model.get("params") or {}),
        "candidates": [{"name": c.name, "features": c.features, "description": c.description} for c in candidates],
        "max_rounds": rounds, "grace_rounds": min(cfg.grace_rounds, rounds), "folds": cfg.folds,
        "alpha": cfg.alpha, "finalists": cfg.finalists, "seed": cfg.seed,
    }
    return Step(id=f"ooda{i}_race", skill="race_features", inputs=inputs,
                description=f"OODA {i}: race the candidates (ASHA), paired CV test for the best")


def _train_step(loop: _Loop, i: int) -> Step:
    """Retrain as the current model was trained, on the new features: the same train_xgboost inputs, or for a tuned
    model its best params retrained with early stopping within the tuning's round limit (as `tune` does)."""
    old = loop.plan.step(loop.roles["train"])
    table, features = Ref(step=f"ooda{i}_features", path="table"), Ref(step=f"ooda{i}_race", path="features")
    if old.skill == "train_xgboost":
        inputs = {**old.inputs, "table": table, "features": features}
    else:
        model = loop.model
        kept: dict[str, Any] = {k: old.inputs[k] for k in ("valid_fraction", "num_workers") if k in old.inputs}
        inputs = {"table": table, "target": model["target"], "task": model["task"], "features": features,
                  "params": dict(model.get("params") or {}),
                  "num_rounds": old.inputs.get("max_rounds") or model.get("num_rounds") or 200, **kept}
    return Step(id=f"ooda{i}_train", skill="train_xgboost", inputs=inputs,
                description=f"OODA {i}: retrain with the accepted features")


def _remap(step: Step, new_id: str, mapping: Mapping[str, str]) -> Step:
    """A copy of `step` named `new_id` whose refs point at the new steps that replace the old ones."""
    def move(ref: Ref) -> Ref:
        return Ref(step=mapping[ref.step], path=ref.path) if ref.step in mapping else ref

    return Step(id=new_id, skill=step.skill, inputs={k: map_refs(v, move) for k, v in step.inputs.items()},
                description=step.description)


def _follow_up(loop: _Loop, i: int) -> list[Step]:
    mapping = {loop.roles["train"]: f"ooda{i}_train", loop.roles["table"]: f"ooda{i}_features"}
    steps = []
    for role in FOLLOW_UP:
        if role in loop.roles:
            new_id = f"ooda{i}_{role}"
            steps.append(_remap(loop.plan.step(loop.roles[role]), new_id, mapping))
            mapping[loop.roles[role]] = new_id
    return steps


def _scores(race: dict[str, Any], candidates: list[Candidate]) -> list[CandidateScore]:
    by_name = {c.name: c for c in candidates}
    out = []
    for g in race["groups"]:
        c = by_name[g["name"]]
        out.append(CandidateScore(
            name=c.name, description=c.description, source=c.source, features=c.features, motivation=c.motivation,
            race_metric=g.get("race_metric"), race_rounds=g.get("race_rounds", 0),
            stopped_early=g.get("stopped_early", False), cv_delta=g.get("cv_delta"), p_value=g.get("p_value"),
            accepted=g.get("accepted", False), reason=g.get("reason", "")))
    return out


def _why(scores: list[CandidateScore], accepted: list[str], metric: str) -> str:
    stopped = sum(s.stopped_early for s in scores)
    tested = [s for s in scores if s.p_value is not None]
    head = f"{len(scores)} candidate groups raced, {stopped} stopped early by ASHA, {len(tested)} paired-tested"
    if not accepted:
        return head + f"; none improved cross-validated {metric} significantly"
    best = ", ".join(f"{s.name} ({s.reason})" for s in scores if s.accepted)
    return head + f"; accepted {best}"


def _iterate(loop: _Loop, i: int) -> Iteration | None:
    """One observe-orient-decide-act turn. None when there is nothing left to try."""
    started, runs_before = time.monotonic(), len(loop.run_ids)
    slices = loop.slices()[:5]                                  # observe
    o = _orient(loop)                                           # orient
    loop.base.cutoff = loop.base.cutoff or o.cutoff  # found in the catalog when the plan named none
    candidates = _candidates(loop, o, slices)                   # decide
    if not candidates:
        return None
    rounds = race_rounds(loop, len(candidates))
    if rounds < MIN_RACE_ROUNDS:
        raise _Stop(f"the budget leaves {rounds} boosting rounds per model for the race; it needs "
                    f"{MIN_RACE_ROUNDS} (raise --budget-rounds)")
    loop.tried.update({c.name: 1 for c in candidates})
    metric, before = loop.metric()
    it = Iteration(index=i, observed=slices, oriented=o.summary(), metric_name=metric, baseline_value=before,
                   ideas=[f"{c.motivation or c.source} -> {c.name}" for c in candidates])
    race = loop.run([_features_step(loop, i, candidates), _race_step(loop, i, candidates, rounds)])  # act
    _record_race(it, race.steps[f"ooda{i}_race"].outputs or {}, candidates)
    loop.dropped.update(s["name"] for c in candidates if c.name not in it.accepted for s in c.specs)
    if it.accepted:
        _act(loop, i, candidates, it)
    it.metric_value = loop.metric()[1]
    it.run_ids = loop.run_ids[runs_before:]
    it.seconds = round(time.monotonic() - started, 2)
    return it


def _record_race(it: Iteration, out: dict[str, Any], candidates: list[Candidate]) -> None:
    it.candidates = _scores(out, candidates)
    it.accepted = list(out.get("accepted") or [])
    it.race = {k: out.get(k) for k in ("metric_name", "baseline_cv", "cv_folds", "cv_metric", "rounds_used")}
    it.why = _why(it.candidates, it.accepted, it.metric_name)


def _act(loop: _Loop, i: int, candidates: list[Candidate], it: Iteration) -> None:
    """Keep the accepted groups' specs and retrain, re-evaluate, re-explain and re-slice the model on them."""
    chosen = [c for c in candidates if c.name in it.accepted]
    it.accepted_features = [f for c in chosen for f in c.features]
    follow = _follow_up(loop, i)
    loop.run([_train_step(loop, i), *follow])
    loop.kept_specs += [s for c in chosen for s in c.specs]
    loop.roles.update({"train": f"ooda{i}_train", "table": f"ooda{i}_features"})
    loop.roles.update({s.id.removeprefix(f"ooda{i}_"): s.id for s in follow})


_NO_LIMIT_BUDGET_ROUNDS = 10**12


def _validator(catalog: Mapping[str, Mapping[str, str]], registry: Registry,
               budget: Budget | None, engine: Engine, principal: Principal) -> Callable[[Plan, Plan], None]:
    """Check an extension like any plan before it spends compute: the whole grown plan with `validate_plan`
    (skills, refs, types, access: columns the new steps name must be visible or made by a step), and the new steps
    alone against the budget (each extension is a plan run of its own)."""
    def check(full: Plan, new: Plan) -> None:
        from planner.budget import Budget, plan_costs
        from planner.validate import validate_plan
        unlimited = Budget(max_boosting_rounds=_NO_LIMIT_BUDGET_ROUNDS, max_trials=10**9, max_steps=10**6)
        from planner.audit import record_problems

        found = validate_plan(full, registry, catalog, unlimited)
        record_problems(engine.audit, principal, full, found, source="ooda")  # a dropped extension is a refusal
        problems = [p.text() for p in found]
        spent = sum(c.rounds for c in plan_costs(new, registry).values())
        if budget is not None and spent > budget.max_boosting_rounds:
            problems.append(f"it needs {spent} boosting rounds, over the budget of {budget.max_boosting_rounds}")
        if problems:
            raise _Stop("the next extension of the plan does not validate: " + "; ".join(problems))

    return check


def improve(plan: Plan, result: RunResult, *, engine: Engine, principal: Principal,
            catalog: Mapping[str, Mapping[str, str]], execute: Callable[[Plan], RunResult], registry: Registry,
            iterations: int = 2, budget: Budget | None = None,
            config: LoopConfig | None = None) -> OodaResult:
    """Run up to `iterations` OODA turns on the finished run `result` of `plan`, as `principal`.

    Only `catalog` (what the principal may see) guides the search; `execute` runs each extension of the plan (the
    service passes the executor's `run_plan`, governed as `principal`), so the planner never imports the executor.
    Failures of a run end the loop and are reported in the result (`error`, `failed_step`, `failed_run`); the
    iterations before it are kept. Raises OodaError when the plan has nothing the loop can improve.
    """
    config = config or LoopConfig()
    config.iterations = iterations
    outputs = step_outputs(result)
    grown = plan.model_copy(deep=True)
    roles = find_roles(grown, outputs)
    base = BaseQuery.of(grown.step(roles["table"]), outputs)
    check = _validator(catalog, registry, budget, engine, principal)
    loop = _Loop(grown, outputs, roles, base, catalog, config, execute, check, engine, principal,
                 budget_rounds=budget.max_boosting_rounds if budget is not None else None)
    res = OodaResult(plan=grown)
    res.stopped = _loop(loop, res)
    res.roles = {k: v for k, v in loop.roles.items() if k != "report"}
    res.outputs = loop.outputs
    res.accepted_features = [f for it in res.iterations for f in it.accepted_features]
    res.accepted_specs = loop.kept_specs
    return res


def _loop(loop: _Loop, res: OodaResult) -> str:
    """Iterate until done; returns why the loop stopped."""
    if loop.config.iterations <= 0:
        return "no iterations asked for"
    for i in range(1, loop.config.iterations + 1):
        try:
            it = _iterate(loop, i)
        except _Stop as exc:
            return str(exc)
        except _RunFailed as exc:
            res.error, res.failed_run = exc.run.error or f"run {exc.run.id} {exc.run.status}", exc.run.id
            res.failed_step = exc.run.failed_step
            failed = exc.run.steps.get(res.failed_step or "")
            if failed is not None and failed.error:
                res.error = f"step {failed.id!r} ({failed.skill}) failed: {failed.error}"
                res.failed_kind = failed.error_type
            return "a run failed"
        if it is None:
            return "no untried candidate features left" + ("" if loop.base.key else (
                " (the training table has no entity key column, so only transformations of its own columns can be "
                "tried, no history joined by key)"))
        res.iterations.append(it)
        if not it.accepted:
            return "nothing was accepted in the last iteration"
    return f"reached the limit of {loop.config.iterations} iterations"
