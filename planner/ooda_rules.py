"""Orient and decide for the OODA loop, by rules: where could missing signal be, and which features would carry it.

Orient works from the governed catalog only (names and types of what the principal may see, never data): tables
that share the entity key and have a time column (a billing or transactions history), numeric columns of the
training table the model does not use yet, the columns transformations may use, and the model's top drivers. Decide
turns that and the worst residual slices into candidate feature groups (`Candidate`), each a list of `features`
skill specs that enter a race together and the slice, driver or column that motivated it: history features first,
then unused columns, then transformations of the training table's own columns (`planner.ooda_transforms`).

Windows are whole calendar spans in days (92 = any 3 monthly rows before a first-of-month cutoff, 184 = 6, 366 = 12)
so that monthly, weekly and daily histories all land inside them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from planner.catalog import (
    Catalog,
    Related,
    cutoff_column,
    is_key_like,
    is_numeric,
    is_pii_like,
    lookup,
    related_tables,
)

AVG_WINDOWS = (92, 184, 366)
TREND_WINDOWS = (92, 184)
SUM_WINDOWS = (92, 366)
LAGS = (1, 2, 3)
TOP_DRIVERS = 3


class Candidate(BaseModel):
    """One idea to race: feature specs (the `features` skill's FeatureSpec dicts) that enter the model together."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str
    source: Literal["rules", "llm"] = "rules"
    specs: list[dict[str, Any]] = Field(default_factory=list, description="specs computing new columns")
    columns: list[str] = Field(default_factory=list, description="existing table columns the group adds as is")
    motivation: str = Field(default="", description="the residual slice, driver or column that suggested it")

    @property
    def features(self) -> list[str]:
        """The model columns this group adds."""
        return [s["name"] for s in self.specs] + list(self.columns)


@dataclass
class Orientation:
    """What the loop knows about the data around the model, from the principal's catalog."""

    base_table: str | None
    key: str | None
    cutoff: str | None
    related: list[Related]
    unused: list[str]
    drivers: list[str]
    notes: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)  # column -> catalog type ("" unknown) transforms may use
    features: list[str] = field(default_factory=list)  # the model's features

    def summary(self) -> dict[str, Any]:
        """JSON for the iteration record and the report."""
        return {"base_table": self.base_table, "key": self.key, "cutoff": self.cutoff,
                "related": [{"table": r.table, "key": r.key, "time": r.time, "values": list(r.values)}
                            for r in self.related],
                "unused_columns": self.unused, "top_drivers": self.drivers,
                "transformable_columns": list(self.columns), "notes": self.notes}


def orient(catalog: Catalog, *, base_table: str | None, key: str | None, cutoff: str | None,
           table_columns: Sequence[str], model_features: Sequence[str], target: str,
           drivers: Sequence[str], excluded: Sequence[str] = ()) -> Orientation:
    """Related tables reachable by `key` with a time column, unused numeric columns, the columns transformations may
    use (neither target, key, cutoff, a column the training step excluded, nor id- or PII-like) and numeric top
    drivers."""
    base_cols = dict(catalog.get(base_table, {})) if base_table else {}
    cutoff = cutoff or (cutoff_column(base_cols) if base_cols else None)
    notes: list[str] = []
    related = related_tables(catalog, base_table, key, max_values=4) if base_table and key else []
    if related and cutoff is None:
        notes.append(f"related tables {', '.join(r.table for r in related)} skipped: the training rows have no "
                     "label cutoff column (like as_of), so history features could leak the future")
        related = []
    if key is None:
        notes.append("the training rows have no entity key column, so no history can be joined to them: only "
                     "transformations of their own columns are tried")
    off = {c.lower() for c in excluded} | {target.lower(), (key or "").lower(), (cutoff or "").lower()}
    used = {f.lower() for f in model_features} | off
    numeric = {c for c in table_columns if (t := lookup(base_cols, c)) and is_numeric(base_cols[t])}
    unused = [c for c in table_columns if c in numeric and c.lower() not in used and not is_key_like(c)]
    columns = {c: base_cols.get(lookup(base_cols, c) or "", "") for c in table_columns
               if c.lower() not in off and not is_key_like(c) and not is_pii_like(c)}
    top = [d for d in drivers if d in numeric and d in columns][:TOP_DRIVERS]
    return Orientation(base_table, key, cutoff, related, unused, top, notes, columns, list(model_features))


def _slug(*parts: object) -> str:
    return "_".join(str(p).lower() for p in parts)


def _related_spec(rel: Related, column: str, name: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "name": name, "table": rel.table, "key": rel.key, "time": rel.time, "column": column,
            **extra}


def _window_group(rel: Related, column: str, agg: str, windows: Sequence[int], label: str) -> Candidate:
    specs = [_related_spec(rel, column, _slug(rel.table, column, agg, f"{w}d"), "window", agg=agg, window_days=w)
             for w in windows]
    return Candidate(name=_slug(rel.table, column, agg), specs=specs, motivation=_history(rel),
                     description=f"{label} of {rel.table}.{column} over the last {'/'.join(map(str, windows))} days")


def _history(rel: Related) -> str:
    return f"history: {rel.table} shares the key {rel.key} and has a time column ({rel.time})"


def related_groups(rel: Related) -> list[Candidate]:
    """Per numeric column of a history table: averages, trends, lags, extremes, sums; plus row counts."""
    out = []
    for column in rel.values:
        out.append(_window_group(rel, column, "avg", AVG_WINDOWS, "average"))
        out.append(Candidate(
            name=_slug(rel.table, column, "trend"), description=f"recent minus earlier average of {rel.table}."
            f"{column} (recent = last {'/'.join(map(str, TREND_WINDOWS))} days)", motivation=_history(rel),
            specs=[_related_spec(rel, column, _slug(rel.table, column, "trend", f"{w}d"), "trend", window_days=w)
                   for w in TREND_WINDOWS]))
        out.append(Candidate(
            name=_slug(rel.table, column, "lag"), description=f"{rel.table}.{column} 1, 2 and 3 rows before the "
            "cutoff", motivation=_history(rel),
            specs=[_related_spec(rel, column, _slug(rel.table, column, "lag", k), "lag", periods=k) for k in LAGS]))
        out.append(Candidate(
            name=_slug(rel.table, column, "spread"), description=f"max and standard deviation of {rel.table}."
            f"{column} over the last {AVG_WINDOWS[1]} days", motivation=_history(rel),
            specs=[_related_spec(rel, column, _slug(rel.table, column, agg, f"{AVG_WINDOWS[1]}d"), "window",
                                 agg=agg, window_days=AVG_WINDOWS[1]) for agg in ("max", "stddev")]))
        out.append(_window_group(rel, column, "sum", SUM_WINDOWS, "sum"))
    if rel.values:
        out.append(_window_group(rel, rel.key, "count", SUM_WINDOWS, "number of rows"))
    return out


def driver_ratios(drivers: Sequence[str]) -> list[Candidate]:
    """Ratios between the top numeric drivers (`monthly_charges / tenure`): one group."""
    pairs = [(a, b) for i, a in enumerate(drivers) for b in drivers[i + 1:]]
    if not pairs:
        return []
    specs = [{"kind": "ratio", "name": _slug("ratio", a, b), "left": a, "right": b} for a, b in pairs]
    return [Candidate(name=_slug("ratios", *drivers), specs=specs,
                      description=f"ratios between the top drivers {', '.join(drivers)}",
                      motivation=f"top drivers {', '.join(drivers)}")]


def unused_group(unused: Sequence[str]) -> list[Candidate]:
    """Numeric columns of the training table the model leaves out, added as they are."""
    if not unused:
        return []
    return [Candidate(name="unused_columns", columns=list(unused), motivation="columns the model leaves out",
                      description=f"columns the model does not use yet: {', '.join(unused)}")]


def decide(o: Orientation, taken: Mapping[str, object] = {}, limit: int = 12,  # noqa: B006
           slices: Sequence[Mapping[str, Any]] = ()) -> list[Candidate]:
    """Candidate groups, history features first (they bring new information), then unused columns, then
    transformations of the training table's columns suggested by the worst residual `slices` and the top drivers
    (`planner.ooda_transforms`), then ratios between the top drivers. Groups whose name or feature names are in
    `taken` (tried before, or already columns), or that repeat a feature name of an earlier group, are left out."""
    from planner.ooda_transforms import transformations  # it builds Candidates: imported here, not at the top

    groups = [g for rel in o.related for g in related_groups(rel)] + unused_group(o.unused) + \
        transformations(o, slices) + driver_ratios(o.drivers)
    fresh: list[Candidate] = []
    names: set[str] = set()
    for g in groups:
        made = {s["name"] for s in g.specs}
        if g.name in taken or made & names or any(n in taken for n in made):
            continue
        fresh.append(g)
        names |= made
    return fresh[:limit]
