"""The rule planner's column decisions for one goal: which columns are left out (and why) and the positive class.

With an engine and a principal the target's table is profiled through governed SQL (`planner.profile`) and the roles
come from the data (`planner.roles`); the positive class from the question and the target's levels
(`planner.positive`). A caller with only a catalog gets the rules by name, and a note saying so. The user's
`include` / `exclude` come last.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from governance import AgentmlError
from planner.catalog import Catalog, cutoff_column
from planner.positive import Positive, positive_class
from planner.profile import TableProfile, profile_table
from planner.roles import Exclusion, apply_overrides, name_exclusions, profile_exclusions
from skills.frame import identifier_like

if TYPE_CHECKING:
    from governance import Engine, Principal

NAMES_ONLY = ("column roles come from names only (the planner was given a catalog, no engine to profile the data "
              "with): check the columns left out, and use --include / --exclude to correct them")


@dataclass
class ColumnPlan:
    """The columns left out of training with their reasons, the positive class, and notes for the user."""

    excluded: list[Exclusion]
    positive: Positive | None = None
    profile: TableProfile | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [e.column for e in self.excluded]


def decide_columns(prompt: str, catalog: Catalog, table: str, target: str, task: str | None, *,
                   cutoff: str | None = None, engine: Engine | None = None, principal: Principal | None = None,
                   include: Sequence[str] = (), exclude: Sequence[str] = ()) -> ColumnPlan:
    """Exclusions and positive class for predicting `table.target`; `cutoff` is the date the prompt gives, if any."""
    columns = catalog[table]
    decided = _from_data(prompt, catalog, table, target, task, cutoff_column(columns) or cutoff, engine, principal)
    before = {e.column: e.reason for e in decided.excluded}
    decided.excluded = apply_overrides(decided.excluded, columns, target, include, exclude)
    back = [c for c in before if c not in {e.column for e in decided.excluded}]
    decided.notes += [f"{c} is back in training at your request (it was left out: {before[c]})" for c in back]
    if decided.profile is not None:
        decided.notes += [f"{c} is included, but the training skills leave out text with this many levels"
                          for c in back if _too_many_levels(decided.profile, c)]
    return decided


def _too_many_levels(profile: TableProfile, column: str) -> bool:
    p = profile.columns[column]
    return p.kind == "text" and identifier_like(p.distinct, p.rows)


def _from_data(prompt: str, catalog: Catalog, table: str, target: str, task: str | None, cutoff: str | None,
               engine: Engine | None, principal: Principal | None) -> ColumnPlan:
    names = ColumnPlan(name_exclusions(catalog, table, target, task == "classification"))
    if engine is None or principal is None:
        names.notes.append(NAMES_ONLY)
        return names
    try:
        profile = profile_table(engine, principal, table, catalog[table], target=target)
    except AgentmlError as exc:
        names.notes.append(f"the data could not be profiled ({exc.message}): column roles come from names only; "
                           "check the columns left out, and use --include / --exclude to correct them")
        return names
    excluded = profile_exclusions(profile, target, task, cutoff=cutoff)
    positive = None
    if task != "regression" and profile.columns[target].distinct == 2:
        positive = positive_class(prompt, profile.levels(target))
    return ColumnPlan(excluded, positive, profile)
