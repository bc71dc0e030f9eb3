"""A plan preview before anything runs: the steps, what each reads, and what it will cost.

Cost is estimated as trials x rounds x rows ("row-rounds"): boosting rounds from each skill's `cost(inp)` (or the
well-known fields), rows from governed row counts of the tables the plan reads, when the caller has them.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field
from sqlglot import exp

from planner.budget import plan_costs
from planner.catalog import Catalog, lookup
from planner.roles import Exclusion
from planner.validate import step_reads
from skills.plan import Plan, Step
from skills.registry import Registry
from skills.sql import DIALECT

if TYPE_CHECKING:
    from governance import Engine, Principal

_ROW_INPUTS = ("table", "base_sql")


class StepPreview(BaseModel):
    """One step: its skill, what it reads, what it depends on and what it costs."""

    model_config = ConfigDict(extra="forbid")
    id: str
    skill: str
    description: str = ""
    reads: dict[str, list[str] | None] = Field(default_factory=dict, description="table -> columns; None = all")
    depends_on: list[str] = Field(default_factory=list)
    trials: int = 0
    rounds: int = 0
    rows: int | None = None
    cost: int | None = Field(default=None, description="rounds (all trials) x rows")


class Preview(BaseModel):
    """What a plan will do, before it runs."""

    model_config = ConfigDict(extra="forbid")
    goal: str
    steps: list[StepPreview]
    total_rounds: int
    total_trials: int
    estimated_cost: int | None = Field(default=None, description="sum of trials x rounds x rows")
    notes: list[str] = Field(default_factory=list, description="agentml's own notes")
    flags: list[str] = Field(default_factory=list)
    written_by: str | None = Field(default=None, description="the LLM that wrote the plan; then step descriptions "
                                                             "and `llm_notes` are its words, not agentml's")
    llm_notes: list[str] = Field(default_factory=list, description="notes the LLM wrote into the plan")
    excluded: list[Exclusion] = Field(default_factory=list, description="columns left out of training, and why")
    positive: str | None = Field(default=None, description="the level of a yes/no target the model predicts")

    def text(self) -> str:
        """A plain-text rendering for the CLI. Text the LLM wrote is quoted and labelled as the LLM's."""
        lines = [f"Plan for: {self.goal!r}" if self.goal else "Plan"]
        if self.written_by:
            lines.append(f"Written by the LLM {self.written_by}: step descriptions in quotes are its words; agentml "
                         "checked the steps, and governance applies your rights whatever the text says")
        width = max((len(s.id) for s in self.steps), default=4)
        for i, s in enumerate(self.steps, 1):
            said = f'"{s.description}"' if self.written_by and s.description else s.description
            lines.append(f"  {i:>2}. {s.id:<{width}}  {s.skill:<13} {said}".rstrip())
            if s.reads:
                lines.append(f"      {'':<{width}}  reads {_reads_text(s.reads)}")
            if s.rounds:
                size = f" x {s.rows:,} rows = {_human(s.cost)} row-rounds" if s.cost is not None else ""
                trials = f"{s.trials} trials, " if s.trials else ""
                lines.append(f"      {'':<{width}}  cost {trials}{s.rounds:,} boosting rounds{size}")
        lines.append(f"Total: {self.total_rounds:,} boosting rounds, {self.total_trials} trials"
                     + (f"; estimated {_human(self.estimated_cost)} row-rounds (trials x rounds x rows)"
                        if self.estimated_cost is not None else ""))
        if self.positive is not None:
            lines.append(f"Positive class: {self.positive}")
        if self.excluded:
            lines.append(f"Columns left out ({len(self.excluded)}; --include COL brings one back):")
            lines += [f"  - {e.column}: {e.reason}" for e in self.excluded]
        lines += [f"Note: {n}" for n in self.notes] + [f"Flagged: {f}" for f in self.flags]
        lines += [f'The LLM noted (its words, unverified): "{n}"' for n in self.llm_notes]
        return "\n".join(lines)


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _reads_text(reads: Mapping[str, list[str] | None]) -> str:
    return "; ".join(f"{t} (all visible columns)" if cols is None else f"{t} ({', '.join(cols)})" if cols else t
                     for t, cols in reads.items())


def _rows(step: Step, reads: Mapping[str, object], known: Mapping[str, int | None],
          counts: Mapping[str, int]) -> int | None:
    """Rows a step works on: its SQL's table, else the table it is fed, else its largest input."""
    if step.skill == "query" or not step.all_refs():
        sizes = [counts[t] for t in reads if t in counts]
        return max(sizes) if sizes else None
    refs = step.refs()
    primary = next((refs[name].step for name in _ROW_INPUTS if name in refs), None)
    if primary is not None:
        return known.get(primary)
    sizes = [n for _, r in step.all_refs() if (n := known.get(r.step)) is not None]
    return max(sizes) if sizes else None


def preview(plan: Plan, registry: Registry, catalog: Catalog | None = None,
            row_counts: Mapping[str, int] | None = None) -> Preview:
    """Steps (in run order), what each reads, and trials x rounds x rows. `row_counts` maps table -> rows."""
    costs = plan_costs(plan, registry)
    counts = {(lookup(catalog, t) if catalog else None) or t: n for t, n in (row_counts or {}).items()}
    try:
        order = plan.topological_order()
    except ValueError:
        order = [s.id for s in plan.steps]  # a cyclic plan still previews; validation reports the cycle
    rows: dict[str, int | None] = {}
    out = []
    for step_id in order:
        step = plan.step(step_id)
        reads = step_reads(step, registry.get(step.skill) if step.skill in registry else None)
        n = rows[step_id] = _rows(step, reads, rows, counts)
        cost = costs.get(step_id)
        rounds, trials = (cost.rounds, cost.trials) if cost else (0, 0)
        out.append(StepPreview(
            id=step.id, skill=step.skill, description=step.description,
            depends_on=sorted({r.step for _, r in step.all_refs()}),
            reads={t: None if c is None else sorted(c) for t, c in reads.items()}, trials=trials, rounds=rounds,
            rows=n, cost=rounds * n if rounds and n is not None else None))
    spent = [s.cost for s in out if s.rounds]
    known = [c for c in spent if c is not None]
    return Preview(goal=plan.goal, steps=out, total_rounds=sum(s.rounds for s in out),
                   total_trials=sum(s.trials for s in out),
                   estimated_cost=sum(known) if known and len(known) == len(spent) else None,
                   notes=list(plan.metadata.get("notes", [])), flags=list(plan.metadata.get("flags", [])),
                   written_by=(plan.metadata.get("llm_model") or "?") if plan.metadata.get("planner") == "llm"
                   else None, llm_notes=list(plan.metadata.get("llm_notes", [])),
                   excluded=[Exclusion.model_validate(e) for e in plan.metadata.get("excluded") or []],
                   positive=plan.metadata.get("positive"))


def row_counts(engine: Engine, principal: Principal, tables: Iterable[str]) -> dict[str, int]:
    """Governed row counts (row filters apply) of `tables`, for the preview's cost estimate."""
    out = {}
    for table in tables:
        sql = exp.select("count(*) AS n").from_(exp.Table(this=exp.to_identifier(table))).sql(dialect=DIALECT)
        out[table] = int(engine.query(sql, principal).column("n")[0].as_py())
    return out
