"""`validate_plan`: every problem of a plan at once, each with where it is and how to fix it, before anything runs.

Checks, in order: the plan's own shape, duplicate step ids, unknown skills, unknown refs (step, output field, or a
dotted sub-path the output model cannot have; refs nested in lists and dicts too), cycles, input schemas (literal
inputs against the skill's input model; inputs holding refs count as present), output type (of the ref's whole
dotted path, Any where the output model cannot tell) vs the input it feeds, tables/columns the principal may not
see (the skill's `reads(inp)`, every SQL literal parsed with sqlglot, feature-spec dicts, column-name inputs), and
the budget. Governance still enforces access at run time; this is for early, precise errors, never the security
boundary.
"""
from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Union

import sqlglot
from pydantic import BaseModel, ValidationError
from sqlglot import exp
from sqlglot.errors import SqlglotError

from planner.budget import Budget, literal_input, plan_costs
from planner.catalog import Catalog, close_matches, lookup
from planner.errors import PlanProblem
from skills.errors import SkillError
from skills.plan import Plan, Step
from skills.refs import Ref, RefError, as_ref, path_type
from skills.registry import Registry, SkillSpec
from skills.sql import DIALECT, Reads, merge_reads, parse_sql, sql_reads, unanalysable
from skills.types import ModelArtifact, TableArtifact

_SQL_FIELDS = frozenset({"sql", "base_sql", "query"})
_COLUMN_FIELDS = frozenset({"target", "features", "columns", "key"})
_SPEC_COLUMN_FIELDS = ("key", "time", "column")
_HIDDEN = "it does not exist or you may not see it"


def _did_you_mean(name: str, pool: Sequence[str], fallback: str) -> str:
    close = close_matches(name, pool)
    return f"did you mean {', '.join(close)}?" if close else fallback


# ---------------------------------------------------------------------------------------------------------------------
# Shape, ids, skills, refs, cycles


def _parse(plan: Plan | Mapping[str, Any]) -> tuple[Plan | None, list[PlanProblem]]:
    if isinstance(plan, Plan):
        return plan, []
    try:
        return Plan.model_validate(plan), []
    except ValidationError as err:
        return None, [_shape_problem(plan, e) for e in err.errors()]


def _shape_problem(raw: Any, error: Mapping[str, Any]) -> PlanProblem:
    loc = list(error["loc"])
    step = None
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        try:
            step = str(raw["steps"][loc[1]].get("id") or f"steps[{loc[1]}]")
        except (KeyError, IndexError, TypeError, AttributeError):
            step = f"steps[{loc[1]}]"
        loc = loc[2:]
    return PlanProblem(step=step, field=".".join(map(str, loc)) or None, kind="plan", message=error["msg"],
                       hint='a plan is {"steps": [{"id": ..., "skill": ..., "inputs": {...}}]}; '
                            'a reference is {"$ref": "step.field"}')


def _check_ids(plan: Plan) -> Iterator[PlanProblem]:
    seen: set[str] = set()
    for s in plan.steps:
        if s.id in seen:
            yield PlanProblem(step=s.id, kind="duplicate_step", message=f"step id {s.id!r} is used twice",
                              hint="give every step its own id")
        seen.add(s.id)


def _check_skills(plan: Plan, registry: Registry) -> Iterator[PlanProblem]:
    for s in plan.steps:
        if s.skill not in registry:
            yield PlanProblem(step=s.id, field="skill", kind="unknown_skill", message=f"unknown skill {s.skill!r}",
                              hint=_did_you_mean(s.skill, registry.names(),
                                                 f"known skills: {', '.join(registry.names())}"))


def _check_refs(plan: Plan, registry: Registry) -> Iterator[PlanProblem]:
    by_id = {s.id: s for s in plan.steps}
    for s in plan.steps:
        for name, ref in s.all_refs():
            producer = by_id.get(ref.step)
            if producer is None:
                yield PlanProblem(step=s.id, field=name, kind="unknown_ref",
                                  message=f"refers to step {ref.step!r}, which is not in the plan",
                                  hint=_did_you_mean(ref.step, list(by_id), f"steps: {', '.join(by_id)}"))
            elif producer.skill in registry:
                yield from _check_path(s, name, ref, producer.skill, registry.get(producer.skill))


def _check_path(step: Step, name: str, ref: Ref, skill: str, spec: SkillSpec) -> Iterator[PlanProblem]:
    """The ref's output field, and its dotted sub-path as far as the output model tells, exist."""
    try:
        path_type(ref, spec.output_model)
    except RefError as err:
        last = err.missing.rsplit(".", 1)[-1]
        yield PlanProblem(step=step.id, field=name, kind="unknown_ref",
                          message=f"step {ref.step!r} ({skill}) has no output {err.missing!r}",
                          hint=_did_you_mean(last, err.options, err.hint or ""))


def _check_cycle(plan: Plan) -> Iterator[PlanProblem]:
    try:
        plan.topological_order()
    except ValueError as err:
        first = str(err).removeprefix("cycle: ").split(" -> ")[0]
        yield PlanProblem(step=first, kind="cycle", message=f"the steps form a {err}",
                          hint="a step may only read outputs of steps that do not read it back; remove one ref")


# ---------------------------------------------------------------------------------------------------------------------
# Input schemas and types

_ARTIFACTS = (TableArtifact, ModelArtifact)


def _holds_artifact(annotation: Any) -> bool:
    """Whether a field's type is, or contains (Optional, list, dict...), a table or model artifact."""
    if isinstance(annotation, type) and issubclass(annotation, _ARTIFACTS):
        return True
    return any(_holds_artifact(arg) for arg in typing.get_args(annotation))


def _only_refs(value: Any) -> bool:
    """A ref, or a list/dict of refs (None too: an optional artifact left out)."""
    if value is None or as_ref(value) is not None:
        return True
    if isinstance(value, list):
        return all(_only_refs(v) for v in value)
    return isinstance(value, dict) and bool(value) and all(_only_refs(v) for v in value.values()) \
        and not {"uri"} & set(value)


def _check_artifact_literals(step: Step, spec: SkillSpec) -> Iterator[PlanProblem]:
    """Tables and models enter a plan only as refs to its own steps' outputs: a literal one could name any file
    (the warehouse itself, another user's run) and so read data around governance."""
    for name, info in spec.input_model.model_fields.items():
        if name in step.inputs and not _only_refs(step.inputs[name]) and _holds_artifact(info.annotation):
            yield PlanProblem(step=step.id, field=name, kind="access",
                              message=f"{name} is a literal {_type_name(info.annotation)}: tables and models can only "
                                      "come from earlier steps of this plan, so that every row is read through "
                                      "governance",
                              hint=f'make {name} a ref to a step output, e.g. {{"$ref": "query.table"}}')


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if typing.get_origin(annotation) is None else None
    return text or str(annotation).replace("typing.", "").replace("skills.types.", "")


def _field_hint(spec: SkillSpec, name: str) -> str:
    info = spec.input_model.model_fields[name]
    described = f": {info.description}" if info.description else ""
    return f"{name} is {_type_name(info.annotation)}{described}"


def _check_inputs(step: Step, spec: SkillSpec) -> Iterator[PlanProblem]:
    fields = spec.input_model.model_fields
    refs = {name for name, _ in step.all_refs()}  # checked once resolved, by the executor
    for name in step.inputs:
        if name not in fields:
            yield PlanProblem(step=step.id, field=name, kind="schema", message=f"{spec.name} has no input {name!r}",
                              hint=_did_you_mean(name, list(fields), f"its inputs: {', '.join(fields)}"))
    literals = {k: v for k, v in step.inputs.items() if k in fields and k not in refs}
    try:
        spec.input_model.model_validate(literals)
    except ValidationError as err:
        for e in err.errors():
            top = str(e["loc"][0]) if e["loc"] else ""
            if e["type"] == "missing" and top in refs:
                continue  # a ref supplies it at run time
            where = ".".join(map(str, e["loc"]))
            yield PlanProblem(step=step.id, field=where or None, kind="schema", message=e["msg"],
                              hint=_field_hint(spec, top) if top in fields else f"see the {spec.name} input schema")


def _atoms(annotation: Any) -> list[Any]:
    """An annotation as the set of things a value may be: classes, ("list", item atoms), dict, Any."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return [Any]
    if origin in (Union, types.UnionType):
        return [a for arg in args for a in _atoms(arg)]
    if origin is typing.Annotated:
        return _atoms(args[0])
    if origin is typing.Literal:
        return list({type(v) for v in args})
    if origin in (list, tuple, set, frozenset) or _is_sequence(origin):
        return [("list", tuple(_atoms(args[0])) if args else (Any,))]
    if annotation is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
        return [("dict", tuple(_atoms(args[1])) if len(args) == 2 else (Any,))]
    return [annotation] if isinstance(annotation, type) else [Any]


def _is_sequence(origin: Any) -> bool:
    return isinstance(origin, type) and issubclass(origin, Sequence) and origin is not str


def _is_model(atom: Any) -> bool:
    return isinstance(atom, type) and issubclass(atom, BaseModel)


def _accepts(wanted: Any, given: Any) -> bool:
    """Whether one form of an output (`given`) fits one form of an input (`wanted`)."""
    if wanted is Any or given is Any:
        return True
    if isinstance(wanted, tuple) and isinstance(given, tuple):
        return wanted[0] == given[0] and _compatible(given[1], wanted[1])
    # a model and a free-form dict convert into each other (dump / validate); two different models, or a model
    # and a dict of numbers, do not (TableArtifact vs ModelArtifact, metrics vs TableArtifact)
    free_dict = ("dict", (Any,))
    if (_is_model(wanted) and given == free_dict) or (_is_model(given) and wanted == free_dict):
        return True
    if isinstance(wanted, tuple) or isinstance(given, tuple):
        return False
    return issubclass(given, wanted) or (wanted is float and given is int)


def _compatible(out_atoms: Sequence[Any], in_atoms: Sequence[Any]) -> bool:
    """An output may feed an input when one of its non-None forms is accepted by one of the input's forms."""
    given = [a for a in out_atoms if a is not type(None)]
    return not given or any(_accepts(w, g) for g in given for w in in_atoms)


def compatible(output_annotation: Any, input_annotation: Any) -> bool:
    """Whether a value of `output_annotation` may feed an input annotated `input_annotation`."""
    return _compatible(_atoms(output_annotation), _atoms(input_annotation))


def _check_types(plan: Plan, registry: Registry) -> Iterator[PlanProblem]:
    by_id = {s.id: s for s in plan.steps}
    for s in plan.steps:
        if s.skill not in registry:
            continue
        fields = registry.get(s.skill).input_model.model_fields
        for name, ref in s.refs().items():
            out = _output_annotation(ref, by_id, registry)
            if out is None or name not in fields or compatible(out, fields[name].annotation):
                continue
            wanted = fields[name].annotation
            yield PlanProblem(step=s.id, field=name, kind="type_mismatch",
                              message=f"{ref} is {_type_name(out)} but {s.skill}.{name} expects {_type_name(wanted)}",
                              hint=_matching_outputs(wanted, plan, registry, s.id))


def _output_annotation(ref: Ref, by_id: Mapping[str, Step], registry: Registry) -> Any | None:
    """The type `ref` names (Any where the output model cannot tell), or None when that is unknown or reported
    by `_check_refs`."""
    producer = by_id.get(ref.step)
    if producer is None or producer.skill not in registry:
        return None
    try:
        return path_type(ref, registry.get(producer.skill).output_model)
    except RefError:
        return None


def _matching_outputs(wanted: Any, plan: Plan, registry: Registry, exclude: str) -> str:
    kinds = set(_atoms(wanted)) - {type(None), Any}
    found = [f"{s.id}.{name}" for s in plan.steps if s.id != exclude and s.skill in registry
             for name, info in registry.get(s.skill).output_model.model_fields.items()
             if kinds & set(_atoms(info.annotation))]
    return f"refer to an output of that type, e.g. {', '.join(found[:3])}" if found else \
        f"add a step whose output is {_type_name(wanted)}"


# ---------------------------------------------------------------------------------------------------------------------
# What a step reads, and whether the principal may see it


def _sql_literals(step: Step) -> Iterator[tuple[str, str]]:
    for name, value in step.inputs.items():
        if isinstance(value, str) and (
                name in _SQL_FIELDS or value.lstrip("( \n").lower().startswith(("select ", "with "))):
            yield name, value


def _spec_dicts(value: Any) -> Iterator[Mapping[str, Any]]:
    """Dicts naming a `table` inside a literal input (feature specs and the like)."""
    if isinstance(value, Mapping):
        if isinstance(value.get("table"), str):
            yield value
    elif isinstance(value, list):
        for item in value:
            yield from _spec_dicts(item)


def _spec_reads(step: Step) -> Reads:
    reads: Reads = {}
    for value in step.inputs.values():
        for spec in _spec_dicts(value):
            cols = {spec[k] for k in _SPEC_COLUMN_FIELDS if isinstance(spec.get(k), str)}
            reads = merge_reads(reads, {spec["table"]: cols})
    return reads


def _declared_reads(step: Step, spec: SkillSpec) -> Reads:
    if spec.reads is None:
        return {}
    try:
        return dict(spec.reads(literal_input(spec, step.inputs)))
    except Exception:  # reads() may need a ref's value; the SQL and spec scans below still apply
        return {}


def step_reads(step: Step, spec: SkillSpec | None) -> Reads:
    """Tables and columns a step names in its literal inputs: `{table: {columns}}`, None = every column."""
    parts = [_spec_reads(step)] + ([_declared_reads(step, spec)] if spec is not None else [])
    for _, sql in _sql_literals(step):
        try:
            parts.append(sql_reads(sql))
        except (SkillError, SqlglotError):
            continue  # reported by _check_sql
    return merge_reads(*parts)


def _hidden_table(step: Step, table: str, catalog: Catalog) -> PlanProblem:
    return PlanProblem(step=step.id, kind="access", message=f"table {table!r} is not in your catalog ({_HIDDEN})",
                       hint=_did_you_mean(table, list(catalog), f"tables you may read: {', '.join(catalog)}"))


def _hidden_column(step: Step, table: str, column: str, catalog: Catalog) -> PlanProblem:
    columns = list(catalog[table])
    return PlanProblem(step=step.id, kind="access",
                       message=f"column {column!r} of table {table!r} is not in your catalog ({_HIDDEN})",
                       hint=_did_you_mean(column, columns, f"use only the columns you may see in {table}"))


def _check_reads(step: Step, reads: Reads, catalog: Catalog) -> Iterator[PlanProblem]:
    for table, columns in reads.items():
        visible = lookup(catalog, table)
        if visible is None:
            yield _hidden_table(step, table, catalog)
            continue
        for column in sorted(columns or ()):
            if lookup(catalog[visible], column) is None:
                yield _hidden_column(step, visible, column, catalog)


def _parsed(step: Step, field: str, sql: str) -> tuple[exp.Query | None, PlanProblem | None]:
    """The one SELECT in `sql` (the query skill's own parser decides), or the problem with it."""
    try:
        return parse_sql(sql, skill_name=step.skill), None
    except SkillError as err:
        return None, PlanProblem(step=step.id, field=field, kind="schema", message=err.message, hint=err.hint or "")


def _check_sql(step: Step, catalog: Catalog) -> Iterator[PlanProblem]:
    """Per SQL literal: it is one SELECT, it reads only catalog tables, its unqualified columns exist."""
    for field, sql in _sql_literals(step):
        expression, problem = _parsed(step, field, sql)
        if problem is not None:
            yield problem
            continue
        assert expression is not None
        for table in expression.find_all(exp.Table):
            if not isinstance(table.this, exp.Identifier):
                yield PlanProblem(step=step.id, field=field, kind="access",
                                  message=f"reads from {table.this.sql(DIALECT)!r}, which is not a catalog table",
                                  hint="read only the tables of your catalog, by name")
        yield from _check_analysis(step, field, sql, expression)
        yield from _check_loose_columns(step, field, expression, catalog)


def _check_analysis(step: Step, field: str, sql: str, expression: exp.Query) -> Iterator[PlanProblem]:
    """What `sql_reads` makes of the SQL: any failure is a problem (never an exception), and so is a table the SQL
    names whose reads it could not attribute (then nothing checked what is read from it)."""
    try:
        try:
            reads = sql_reads(sql)
        except SqlglotError as exc:  # sql_reads wraps these; kept so that no sqlglot error can escape validation
            raise unanalysable(exc) from None
    except SkillError as err:
        yield PlanProblem(step=step.id, field=field, kind="schema", message=err.message, hint=err.hint or "")
        return
    ctes = {cte.alias_or_name.lower() for cte in expression.find_all(exp.CTE)}
    attributed = {t.lower() for t in reads}
    named = {t.name.lower() for t in expression.find_all(exp.Table) if isinstance(t.this, exp.Identifier)}
    missed = sorted(named - ctes - attributed)
    if missed:
        yield PlanProblem(step=step.id, field=field, kind="schema",
                          message=f"cannot tell what this SQL reads from {', '.join(map(repr, missed))}, so it "
                                  "cannot be checked against your catalog",
                          hint="write a plain SELECT: each table, subquery and CTE with its own alias, columns "
                               "qualified by those aliases")


def _check_loose_columns(step: Step, field: str, expression: exp.Query,
                         catalog: Catalog) -> Iterator[PlanProblem]:
    """Unqualified columns in joins, which `sql_reads` cannot attribute: they must exist in some table read."""
    tables = [t for t in (lookup(catalog, x.name) for x in expression.find_all(exp.Table)) if t is not None]
    if len(tables) < 2:
        return
    known = {c.lower() for t in tables for c in catalog[t]}
    known |= {a.alias_or_name.lower() for a in expression.find_all(exp.Alias)}
    known |= {c.name.lower() for cte in expression.find_all(exp.TableAlias) for c in cte.columns}
    for column in expression.find_all(exp.Column):
        if not column.table and column.name and column.name.lower() not in known:
            yield PlanProblem(step=step.id, field=field, kind="access",
                              message=f"column {column.name!r} is not in the tables this SQL reads ({_HIDDEN})",
                              hint=f"use columns of {', '.join(tables)} you may see")


def _produced_names(plan: Plan) -> set[str]:
    """Column names steps create: feature-spec names and SQL aliases."""
    names = {str(spec["name"]).lower() for s in plan.steps for v in s.inputs.values() for spec in _named_dicts(v)}
    for s in plan.steps:
        for _, sql in _sql_literals(s):
            try:
                names |= {a.alias_or_name.lower() for a in sqlglot.parse_one(sql, read=DIALECT).find_all(exp.Alias)}
            except sqlglot.errors.SqlglotError:
                continue
    return names


def _named_dicts(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                yield item


def _check_column_inputs(step: Step, known: set[str]) -> Iterator[PlanProblem]:
    for name in _COLUMN_FIELDS & set(step.inputs):
        value = step.inputs[name]
        if as_ref(value) is not None:
            continue
        for column in [value] if isinstance(value, str) else value if isinstance(value, list) else []:
            if isinstance(column, str) and column.lower() not in known:
                yield PlanProblem(step=step.id, field=name, kind="access",
                                  message=f"column {column!r} is not in your catalog nor made by a step ({_HIDDEN})",
                                  hint=_did_you_mean(column, sorted(known), "name a column you may see"))


def _check_access(plan: Plan, registry: Registry, catalog: Catalog) -> Iterator[PlanProblem]:
    known = {c.lower() for cols in catalog.values() for c in cols} | _produced_names(plan)
    for s in plan.steps:
        spec = registry.get(s.skill) if s.skill in registry else None
        yield from _check_sql(s, catalog)
        yield from _check_reads(s, step_reads(s, spec), catalog)
        yield from _check_column_inputs(s, known)


# ---------------------------------------------------------------------------------------------------------------------
# Budget


def _check_budget(plan: Plan, registry: Registry, budget: Budget) -> Iterator[PlanProblem]:
    costs = plan_costs(plan, registry)
    rounds = sum(c.rounds for c in costs.values())
    trials = sum(c.trials for c in costs.values())
    biggest = max(costs, key=lambda s: costs[s].rounds, default=None)
    if rounds > budget.max_boosting_rounds:
        yield PlanProblem(step=biggest, kind="budget",
                          message=f"the plan needs {rounds} boosting rounds, over your quota of "
                                  f"{budget.max_boosting_rounds}",
                          hint="lower num_trials, max_rounds or num_rounds, or ask for a larger quota")
    if trials > budget.max_trials:
        yield PlanProblem(step=max(costs, key=lambda s: costs[s].trials), kind="budget",
                          message=f"the plan runs {trials} tuning trials, over your quota of {budget.max_trials}",
                          hint=f"use at most {budget.max_trials} trials in all")
    if len(plan.steps) > budget.max_steps:
        yield PlanProblem(kind="budget", message=f"the plan has {len(plan.steps)} steps, over your quota of "
                                                 f"{budget.max_steps}", hint="drop optional steps")


def trains(spec: SkillSpec) -> bool:
    """Whether a skill builds a model: one of its outputs is a ModelArtifact (train_xgboost, tune; not evaluate,
    which only reads one)."""
    return any(ModelArtifact in _atoms(info.annotation) for info in spec.output_model.model_fields.values())


def models(plan: Plan) -> bool:
    """Whether the plan says it is meant to build a model: its metadata names a target or a task."""
    return any(plan.metadata.get(key) not in (None, "") for key in ("target", "task"))


def _check_purpose(plan: Plan, registry: Registry, modelling: bool | None) -> Iterator[PlanProblem]:
    """A plan does something; a plan meant to build a model has a step that trains one."""
    trainers = [spec.name for spec in registry if trains(spec)]
    if not plan.steps:
        yield PlanProblem(kind="plan", field="steps", message="the plan has no steps, so it would do nothing",
                          hint='add steps, e.g. a query step then a training step ({"id": "train", "skill": '
                               f'"{trainers[0] if trainers else "train_xgboost"}", ...)}}')
        return
    if not (models(plan) if modelling is None else modelling):
        return
    if not any(s.skill in registry and trains(registry.get(s.skill)) for s in plan.steps):
        target = plan.metadata.get("target")
        about = f" of {target!r}" if isinstance(target, str) and target else ""
        yield PlanProblem(kind="plan", field="steps",
                          message=f"the goal is a model{about}, but no step trains one",
                          hint=f"add a step with skill {' or '.join(trainers) or 'train_xgboost'} that reads the "
                               "training table and the target column")


def validate_plan(plan: Plan | Mapping[str, Any], registry: Registry, catalog: Catalog | None = None,
                  budget: Budget | None = None, *, modelling: bool | None = None) -> list[PlanProblem]:
    """Every problem of `plan` at once (empty list = valid). `catalog` is what the principal may see
    (`Engine.catalog(principal)`); None skips the access checks. `budget` defaults to `Budget()`. A plan without
    steps is never valid; one meant to build a model (`modelling`, by default: its metadata names a target or task)
    must have a training step."""
    parsed, problems = _parse(plan)
    if parsed is None:
        return problems
    problems += [*_check_purpose(parsed, registry, modelling)]
    problems += [*_check_ids(parsed), *_check_skills(parsed, registry), *_check_refs(parsed, registry),
                 *_check_cycle(parsed)]
    for s in parsed.steps:
        if s.skill in registry:
            problems += [*_check_inputs(s, registry.get(s.skill)), *_check_artifact_literals(s, registry.get(s.skill))]
    problems += _check_types(parsed, registry)
    if catalog is not None:
        problems += _check_access(parsed, registry, catalog)
    problems += _check_budget(parsed, registry, budget or Budget())
    return list(dict.fromkeys(problems))
