"""The rule-based planner: deterministic, offline, no LLM. A prompt and the governed catalog become a validated Plan.

Shape of a training plan (step ids are stable, the OODA loop and the CLI rely on them):

    query -> [features] -> [baseline -> baseline_evaluate] -> tune | train -> evaluate -> explain -> residuals
          -> [score] -> report

`score` (train-then-score) scores the new rows of another table ("then score the new customers") or, for a question
about which rows will have the outcome ("which customers will churn next month", "who is likely to churn"), every
row of the target table the principal may see; `metadata["score"]` names the step and the table.

The target, the entity key, the cutoff and the related tables come from the prompt and the catalog the principal may
see (`planner.catalog`), the wishes (task, tuning effort, features, baseline, scoring) from the wording
(`planner.rules_intent`). When the prompt does not say enough, `PlanError` asks a precise question with the
candidates instead of guessing.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from planner.audit import record_problems
from planner.budget import Budget, fit_rounds, step_cost
from planner.catalog import (
    Catalog,
    Related,
    binary_like,
    column_kind,
    cutoff_column,
    entity_key,
    named_tables,
    prompt_words,
    related_tables,
    resolve_target,
    singular,
    words,
)
from planner.errors import PlanError
from planner.rules_columns import ColumnPlan, decide_columns
from planner.rules_features import Spec, feature_specs
from planner.rules_injection import flag_injection
from planner.rules_intent import Intent, Task, parse_intent
from planner.validate import validate_plan
from skills.plan import Plan, Ref, Step
from skills.registry import Registry, SkillSpec
from skills.sql import DIALECT

if TYPE_CHECKING:
    from governance import Engine, Principal

DEFAULT_TRIALS = 12
DEFAULT_ROUNDS = 200
TUNE_ROUNDS = 1000  # a cap per trial: `tune` gives a trial fewer on larger tables (`boosting.search.trial_rounds`)
BASELINE_ROUNDS = 100
SCORE_SKILLS = ("score", "predict", "batch_predict", "inference")
_SCORE_TABLE_WORDS = frozenset({"new", "score", "scoring", "unlabeled", "unlabelled", "pending", "incoming",
                                "current", "prospects", "latest"})


@dataclass
class Goal:
    """What the planner decided about the prompt, before it writes steps."""

    prompt: str
    intent: Intent
    catalog: Catalog
    table: str
    target: str
    task: Task | None
    key: str | None
    cutoff: str | None
    related: list[Related]
    columns: ColumnPlan
    specs: list[Spec]
    notes: list[str] = field(default_factory=list)
    scored: str | None = None  # the table the plan scores with its final model (train-then-score), once built

    @property
    def exclude(self) -> list[str]:
        """The columns left out of training (their reasons are in `columns.excluded`)."""
        return self.columns.names


def decide_task(intent: Intent, column: str, type_: str) -> Task | None:
    """Classification or regression from the wording first, then the column's type and name; None for an integer
    column nothing hints at (the training skill decides from the data: two values -> classification). A text or
    boolean target is classification however many levels it has (3+: multiclass, decided by the skill); "which
    species / what type" wording leans an integer column to classification."""
    kind = column_kind(type_)
    if intent.task == "regression" and kind in ("text", "boolean"):
        raise PlanError(f"{column} is a {type_} column; a regression needs a numeric target",
                        candidates=[column], hint="ask for a classifier, or name a numeric column as the target",
                        cli_hint="ask for a classifier, or name a numeric column with --target COL")
    if intent.task == "classification" and kind == "float":
        raise PlanError(f"{column} is a {type_} column; a classifier needs a yes/no or category column",
                        candidates=[column],
                        hint="ask for a regression, or name a yes/no or category column as the target",
                        cli_hint="ask for a regression, or name a yes/no or category column with --target COL")
    if intent.task is not None:
        return intent.task
    if kind in ("text", "boolean") or binary_like(column, type_):
        return "classification"
    if kind == "integer":
        return intent.leaning
    return "regression"


def _cutoff(intent: Intent, columns: Mapping[str, str], notes: list[str]) -> str:
    """The label cutoff: the table's cutoff column, else a date the prompt gives, else today (with a note)."""
    column = cutoff_column(columns)
    if column is not None:
        return column
    if intent.cutoff is not None:
        return intent.cutoff
    today = dt.date.today().isoformat()
    notes.append(f"no cutoff column in the table: history features use rows before {today}; "
                 "say 'as of YYYY-MM-DD' to choose the date")
    return today


def understand(prompt: str, catalog: Catalog, target: str | None = None, *, engine: Engine | None = None,
               principal: Principal | None = None, include: Sequence[str] = (),
               exclude: Sequence[str] = ()) -> Goal:
    """Target, task, keys, cutoff, related tables, excluded columns (from a governed profile of the data when
    `engine` and `principal` are given, else by name), positive class and feature specs for `prompt`."""
    intent = parse_intent(prompt)
    table, column = resolve_target(prompt, catalog, target)
    columns = catalog[table]
    task = decide_task(intent, column, columns[column])
    key = entity_key(catalog, table)
    related = related_tables(catalog, table, key)
    notes = [] if task else [f"{column} is an integer column: the task (classification for two values, else "
                             "regression) is decided from the data; say 'classifier' or 'regression' to choose"]
    decided = decide_columns(prompt, catalog, table, column, task, cutoff=intent.cutoff, engine=engine,
                             principal=principal, include=include, exclude=exclude)
    notes += decided.notes
    usable = {c for c in columns if c != column and c not in decided.names}
    pw = prompt_words(prompt, catalog)
    specs = feature_specs(intent, pw, related, columns, usable) if key is not None else []
    cutoff = _cutoff(intent, columns, notes) if any("time" in s for s in specs) else None
    if intent.features - {"none", "auto"} and not specs:
        notes.append("no feature could be built from this catalog: history features need a related table with the "
                     "entity key and a time column, arithmetic features two numeric columns")
    return Goal(prompt, intent, catalog, table, column, task, key, cutoff, related, decided, specs, notes)


class _Steps:
    """Appends steps; `ref` writes a reference to an earlier step's output."""

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def add(self, id_: str, skill: str, description: str, **inputs: Any) -> str:
        self.steps.append(Step(id=id_, skill=skill, description=description, inputs=_present(inputs)))
        return id_

    @staticmethod
    def ref(step: str, name: str) -> dict[str, str]:
        return Ref(step=step, path=name).model_dump()


def select_all(table: str, not_null: str | None = None) -> str:
    """`SELECT * FROM table [WHERE col IS NOT NULL]`; governance expands `*` to the columns the principal may see."""
    query = exp.select("*").from_(exp.Table(this=exp.to_identifier(table)))
    if not_null is not None:
        query = query.where(exp.Is(this=exp.column(not_null), expression=exp.Null()).not_())
    return query.sql(dialect=DIALECT)


def _data_steps(goal: Goal, b: _Steps) -> tuple[str, str]:
    """query (+ features): returns (step whose `table` the model trains on, the plain query step)."""
    query = b.add("query", "query", f"read {goal.table} as the principal may see it",
                  sql=select_all(goal.table, goal.target), key=goal.key)
    if not goal.specs:
        return query, query
    feats = b.add("features", "features", f"{len(goal.specs)} features over {_related_names(goal) or goal.table}",
                  base_sql=b.ref(query, "sql"), key=goal.key, specs=goal.specs, cutoff=goal.cutoff)
    return feats, query


def _related_names(goal: Goal) -> str:
    return ", ".join(sorted({s["table"] for s in goal.specs if "table" in s}))


def _training_inputs(goal: Goal, b: _Steps, table_step: str, registry: Registry, skill: str) -> dict[str, Any]:
    positive = goal.columns.positive
    return {"table": b.ref(table_step, "table"), "target": goal.target, "task": goal.task,
            "exclude": goal.exclude or None,
            **_accepted(registry, skill, {"positive": positive.level if positive else None})}


def _spec(registry: Registry, skill: str) -> SkillSpec | None:
    return registry.get(skill) if skill in registry else None


def _baseline_steps(goal: Goal, b: _Steps, query: str, budget: Budget, registry: Registry) -> int:
    """An untuned model on the plain columns, for comparison; returns the rounds it spends."""
    if not goal.intent.baseline:
        return 0
    inputs = _training_inputs(goal, b, query, registry, "train_xgboost")
    spec = _spec(registry, "train_xgboost")
    rounds = fit_rounds(spec, inputs, "num_rounds", BASELINE_ROUNDS, budget.max_boosting_rounds)
    base = b.add("baseline", "train_xgboost", "baseline: default xgboost on the plain columns", **inputs,
                 num_rounds=rounds)
    b.add("baseline_evaluate", "evaluate", "cross-validate the baseline", model=b.ref(base, "model"),
          table=b.ref(query, "table"), folds=goal.intent.folds)
    return step_cost(spec, {**inputs, "num_rounds": rounds}).rounds if spec else rounds


def _model_step(goal: Goal, b: _Steps, table_step: str, budget: Budget, spent: int, registry: Registry) -> str:
    """`tune` (default) or `train` ("quick"), sized by the skills' own cost functions to fit the budget."""
    intent = goal.intent
    inputs = _training_inputs(goal, b, table_step, registry, "tune" if intent.tune else "train_xgboost")
    rounds, room = intent.rounds or (TUNE_ROUNDS if intent.tune else DEFAULT_ROUNDS), budget.max_boosting_rounds - spent
    if not intent.tune:
        fitted = fit_rounds(_spec(registry, "train_xgboost"), inputs, "num_rounds", rounds, room)
        _note_clamp(goal, "boosting rounds", rounds, fitted)
        what = f"xgboost {goal.task}" if goal.task else "xgboost"
        return b.add("train", "train_xgboost", f"train one {what} model", **inputs, num_rounds=fitted)
    asked = intent.num_trials or DEFAULT_TRIALS
    trials = min(asked, budget.max_trials)
    options = {"num_trials": trials, "search": intent.search, "scheduler": intent.scheduler,
               "time_budget_s": intent.time_budget_s}
    per_trial = fit_rounds(_spec(registry, "tune"), {**inputs, **_present(options)}, "max_rounds", rounds, room)
    _note_clamp(goal, "tuning trials", asked, trials)
    _note_clamp(goal, "rounds per trial", rounds, per_trial)
    return b.add("tune", "tune", f"tune xgboost: {trials} trials x up to {per_trial} rounds", **inputs,
                 max_rounds=per_trial, **options)


def _present(inputs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in inputs.items() if v is not None}


def _note_clamp(goal: Goal, what: str, asked: int, given: int) -> None:
    if given < asked:
        goal.notes.append(f"{what} lowered from {asked} to {given} to fit your budget")


def _score_table(goal: Goal) -> str:
    """The table of new rows to score: named in the prompt, else named like new/pending rows."""
    history = {r.table for r in goal.related}
    others = [t for t in goal.catalog if t != goal.table and t not in history]
    named = named_tables(goal.prompt, others)
    found = named or [t for t in others if set(words(t)) & _SCORE_TABLE_WORDS]
    if len(found) == 1:
        return found[0]
    asked = found or others
    raise PlanError("Which table holds the new rows to score: " + " or ".join(asked) + "?" if asked else
                    "No table of new rows to score is in your catalog.", candidates=asked,
                    hint="name the table in the prompt, e.g. 'score the rows of new_customers'")


def _score_skill(registry: Registry) -> SkillSpec | None:
    """The installed skill that scores rows with a model: it takes the model and the SQL of the rows to score."""
    for name in SCORE_SKILLS:
        if name in registry and {"model", "sql"} <= set(registry.get(name).input_model.model_fields):
            return registry.get(name)
    return None


def _score_steps(goal: Goal, b: _Steps, model: str, registry: Registry) -> str | None:
    """Train-then-score: the final model scores the new rows of another table ("then score the new customers") or
    the target table's own rows as the principal may see them ("which customers will churn next month"), with the
    feature specs it was trained with computed over them. Returns the table scored."""
    if not (goal.intent.score or goal.intent.score_target):
        return None
    table = _score_table(goal) if goal.intent.score else goal.table
    spec = _score_skill(registry)
    if spec is None:
        if goal.intent.score:
            b.add("score_query", "query", f"read the new rows of {table}", sql=select_all(table), key=goal.key)
        goal.notes.append(f"no scoring skill is registered: the rows of {table} are not scored; score them later "
                          "with `agentml score RUN`")
        return None
    what = f"the new rows of {table}" if goal.intent.score else f"every {singular(table)} of {table} you may see"
    inputs = {"model": b.ref(model, "model"), "sql": select_all(table), "key": goal.key, "specs": goal.specs or None,
              "cutoff": goal.cutoff if goal.specs else None}
    b.add("score", spec.name, f"score {what} with the final model, with each row's top reasons",
          **_accepted(registry, spec.name, inputs))
    return table


def _title(goal: Goal) -> str:
    return f"{' '.join(words(goal.target)).capitalize()} {goal.task or 'prediction'} model"


def build_steps(goal: Goal, registry: Registry, budget: Budget) -> tuple[list[Step], str, str]:
    """The steps for `goal`; returns (steps, model step id, training table step id)."""
    b = _Steps()
    table_step, query = _data_steps(goal, b)
    spent = _baseline_steps(goal, b, query, budget, registry)
    model = _model_step(goal, b, table_step, budget, spent, registry)
    on = {"model": b.ref(model, "model"), "table": b.ref(table_step, "table")}
    evaluate = b.add("evaluate", "evaluate", "cross-validated and validation metrics", **on, folds=goal.intent.folds)
    explain = b.add("explain", "explain", "SHAP drivers of the prediction", **on, top_k=goal.intent.top_k)
    residuals = b.add("residuals", "residuals", "slices where the model errs most", **on)
    goal.scored = _score_steps(goal, b, model, registry)
    report = {"model": on["model"], "metrics": b.ref(evaluate, "metrics"), "curves": b.ref(evaluate, "curves"),
              "metric_name": b.ref(evaluate, "metric_name"), "metric_value": b.ref(evaluate, "metric_value"),
              "protocol": b.ref(evaluate, "protocol"), "metrics_protocol": b.ref(evaluate, "metrics_protocol"),
              "importance": b.ref(explain, "importance"), "drivers": b.ref(explain, "drivers"),
              "trials": b.ref(model, "trials") if model == "tune" else None,
              "slices": b.ref(residuals, "slices"), "overall_error": b.ref(residuals, "overall_error"),
              "excluded": [e.as_dict() for e in goal.columns.excluded] or None}
    b.add("report", "report", "self-contained HTML report", title=_title(goal),
          **_accepted(registry, "report", report))
    return b.steps, model, table_step


def _accepted(registry: Registry, skill: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The optional inputs the installed version of `skill` takes (report sections vary between versions)."""
    fields = registry.get(skill).input_model.model_fields if skill in registry else inputs
    return {k: v for k, v in inputs.items() if k in fields}


def _metadata(goal: Goal, model: str, table_step: str, flag: str | None) -> dict[str, Any]:
    related = [{"table": r.table, "key": r.key, "time": r.time, "values": list(r.values)} for r in goal.related]
    positive = goal.columns.positive
    time = goal.cutoff if goal.cutoff in goal.catalog[goal.table] else (goal.related[0].time if goal.related else
                                                                         None)
    return {
        "planner": "rules", "task": goal.task, "target": goal.target, "key": goal.key, "time": time,
        "cutoff": goal.cutoff, "table": goal.table, "entity": singular(goal.table), "related": related,
        "exclude": goal.exclude, "excluded": [e.as_dict() for e in goal.columns.excluded],
        "positive": positive.level if positive else None, "features": [s["name"] for s in goal.specs],
        "model_step": model, "table_step": table_step, "flags": [flag] if flag else [], "notes": goal.notes,
        **({"score": {"step": "score", "table": goal.scored}} if goal.scored else {}),
    }


def record_flag(prompt: str, engine: Engine | None, principal: Principal | None) -> str | None:
    """Flag a governance-bypass attempt and append it to the engine's audit log (when there is one)."""
    reason = flag_injection(prompt)
    if reason is not None and engine is not None and principal is not None and engine.audit is not None:
        engine.audit.append(user=principal.user, roles=list(principal.roles), sql=f"-- prompt: {prompt}",
                            rewritten=None, verdict="flagged", reason=reason, action="prompt")
    return reason


def plan_prompt(prompt: str, *, registry: Registry, catalog: Catalog | None = None,
                target: str | None = None, budget: Budget | None = None, principal: Principal | None = None,
                engine: Engine | None = None, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> Plan:
    """A validated Plan for `prompt`, built only from what the principal may see.

    `catalog` is `engine.catalog(principal)` (computed when omitted and both are given); `target` overrides the
    target found in the prompt (`COL` or `table.COL`). With `engine` and `principal` the target's table is profiled
    through governed SQL (two audited queries) and column roles come from the data; `include` / `exclude` name
    columns to bring back into training or to leave out (`metadata["excluded"]` says why each one is out).
    Bypass attempts are planned normally (still governed), listed in `plan.metadata["flags"]` and appended to
    `engine.audit`. Raises PlanError with candidates when the
    prompt is ambiguous, or with problems when the plan does not validate."""
    flag = record_flag(prompt, engine, principal)
    if catalog is None:
        if engine is None or principal is None:
            raise PlanError("no catalog to plan against", hint="pass catalog=engine.catalog(principal)")
        catalog = engine.catalog(principal)
    budget = budget or Budget()
    goal = understand(prompt, catalog, target, engine=engine, principal=principal, include=include,
                      exclude=exclude)
    steps, model, table_step = build_steps(goal, registry, budget)
    plan = Plan(goal=prompt, steps=steps, metadata=_metadata(goal, model, table_step, flag))
    problems = validate_plan(plan, registry, catalog, budget)
    if problems:
        record_problems(engine.audit if engine is not None else None, principal, plan, problems, source="rules")
        least = least_rounds(goal, registry, catalog, budget)
        if least is not None:
            raise PlanError(f"the budget of {budget.max_boosting_rounds} boosting round(s) is too small for this "
                            f"model: it needs at least {least}", problems=problems,
                            hint=f"raise max_boosting_rounds to {least} or more")
        raise PlanError("the rule-based plan does not validate against this skill registry", problems=problems,
                        hint="the installed skills differ from what the planner expects; see the problems")
    return plan


def least_rounds(goal: Goal, registry: Registry, catalog: Catalog, budget: Budget) -> int | None:
    """The fewest boosting rounds with which the plan for `goal` validates, when more rounds than `budget` allows
    would make it valid; None when rounds are not what is wrong."""
    def valid(rounds: int) -> bool:
        room = budget.model_copy(update={"max_boosting_rounds": rounds})
        steps, _, _ = build_steps(goal, registry, room)
        return not validate_plan(Plan(goal="budget probe", steps=steps), registry, catalog, room)

    low, high = budget.max_boosting_rounds, max(budget.max_boosting_rounds, Budget().max_boosting_rounds)
    if not valid(high):
        return None
    while high - low > 1:  # invariant: low fails, high is valid
        mid = (low + high) // 2
        low, high = (low, mid) if valid(mid) else (mid, high)
    return high
