"""Transformations of the training table's own columns, for the OODA loop's decide step: where the model errs most
(the worst residual slices), which columns are involved, and which new columns could carry the missing signal.

Each idea is a `features` spec over the base rows alone (`skills.feature_specs`: arithmetic, encode, missing, bin,
date_part, group), so it needs no join and no key and works on a single table. Per slice column, worst first:

- a number: its product and ratio with each top driver (an interaction a tree approximates only with many splits),
  a missing-value flag when the slice is its missing rows, and a bin holding the slice's range (one split then
  isolates the rows the model gets wrong);
- a category: how common each level is (frequency encoding: the count per level over the row count), and each top
  driver's mean per level with the row's distance from it;
- a date: its year, month and day of the week.

From the orientation alone: date parts of every date column (a model cannot read dates as they are), the frequency
of categories the model leaves out (too many levels to split on) and products and ratios between the top drivers.
Every idea says what motivated it ("slice x in [1, 2) (error x1.8, 120 rows)").

No target encoding: the rows are built before the folds are drawn, so a level's mean target computed on them would
pass the held-out rows' labels into the training rows (see `skills.library.features`).
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from planner.catalog import column_kind
from planner.ooda_rules import Candidate, Orientation

SLICE_COLUMNS = 4   # distinct columns of the worst slices the rules act on
PARTNERS = 2        # top drivers each numeric slice column is combined with
DATE_PARTS = ("year", "month", "dayofweek")
MISSING = "(missing)"  # the residuals skill's name for a column's missing rows
_RANGE = re.compile(r"^\[(?P<lo>[^,\s]+), (?P<hi>[^\]\)]+)[\)\]]$")

Kind = Literal["number", "category", "date"]


@dataclass(frozen=True)
class _Idea:
    tier: int      # 0 first: the slice's main idea; 1: further ideas
    rank: int      # the slice's position (worst first); orientation-only ideas after every slice
    candidate: Candidate

    @property
    def key(self) -> tuple[str, ...]:
        """What makes two ideas the same: the pair of columns of an interaction (either order), else the group."""
        c = self.candidate
        if c.name.startswith("interact_"):
            return ("interact", *sorted({str(s["left"]) for s in c.specs} | {str(s["right"]) for s in c.specs}))
        return (c.name,)


def _name(*parts: str) -> str:
    """A feature name (`[A-Za-z_][A-Za-z0-9_]*`) from column names."""
    slug = "_".join(re.sub(r"[^0-9A-Za-z]+", "_", p).strip("_").lower() for p in parts)
    return slug if re.match(r"^[A-Za-z_]", slug) else f"f_{slug}"


def slice_range(text: str) -> tuple[float, float] | None:
    """The [low, high) bounds of a numeric slice ("[1.5, 3)"); None for a level or a single value."""
    m = _RANGE.match(text)
    if m is None:
        return None
    try:
        return float(m["lo"]), float(m["hi"])
    except ValueError:
        return None


def describe(s: Mapping[str, Any]) -> str:
    """A slice as the iteration record shows it: `slice x in [1, 2) (error x1.80, 120 rows)`."""
    text = str(s.get("slice"))
    where = f"in {text}" if slice_range(text) else f"= {text}"
    return f"slice {s.get('column')} {where} (error x{float(s.get('lift') or 0):.2f}, {s.get('count')} rows)"


def column_role(o: Orientation, column: str, sample: str | None = None) -> Kind | None:
    """A column's kind for transformations, from its catalog type, else from how its slice is written."""
    kind = column_kind(o.columns.get(column) or "")
    if kind in ("integer", "float"):
        return "number"
    if kind in ("text", "boolean"):
        return "category"
    if kind == "temporal":
        return "date"
    if sample is None:
        return None
    try:
        float(sample)
    except ValueError:
        return "number" if slice_range(sample) else "category"
    return "number"


def interaction(a: str, b: str, motivation: str) -> Candidate:
    """Product and ratio of two numeric columns."""
    return Candidate(
        name=_name("interact", a, b), motivation=motivation,
        description=f"product and ratio of {a} and {b}: an interaction trees approximate only with many splits",
        specs=[{"kind": "product", "name": _name(a, "x", b), "left": a, "right": b},
               {"kind": "ratio", "name": _name(a, "per", b), "left": a, "right": b}])


def missing_flag(column: str, motivation: str) -> Candidate:
    return Candidate(name=_name(column, "missing"), motivation=motivation,
                     description=f"1 where {column} is missing: whether it was recorded at all",
                     specs=[{"kind": "missing", "name": _name(column, "missing"), "column": column}])


def slice_bin(column: str, bounds: tuple[float, float], motivation: str) -> Candidate:
    edges = sorted({bounds[0], bounds[1]})
    return Candidate(name=_name(column, "bin"), motivation=motivation,
                     description=f"which side of the slice's range {edges} {column} falls on",
                     specs=[{"kind": "bin", "name": _name(column, "bin"), "column": column, "edges": edges}])


def frequency(column: str, motivation: str) -> Candidate:
    return Candidate(name=_name(column, "freq"), motivation=motivation,
                     description=f"how common each level of {column} is (its row count over all rows)",
                     specs=[{"kind": "encode", "name": _name(column, "freq"), "column": column,
                             "method": "frequency"}])


def group_stats(column: str, driver: str, motivation: str) -> Candidate:
    mean = _name(driver, "mean_by", column)
    return Candidate(name=_name(driver, "by", column), motivation=motivation,
                     description=f"mean of {driver} per level of {column}, and each row's {driver} minus it",
                     specs=[{"kind": "group", "name": mean, "column": column, "value": driver, "agg": "avg"},
                            {"kind": "difference", "name": _name(driver, "vs", column), "left": driver,
                             "right": mean}])


def date_parts(column: str, motivation: str) -> Candidate:
    return Candidate(name=_name(column, "parts"), motivation=motivation,
                     description=f"{', '.join(DATE_PARTS)} of {column}",
                     specs=[{"kind": "date_part", "name": _name(column, part), "column": column, "part": part}
                            for part in DATE_PARTS])


def _slice_ideas(o: Orientation, s: Mapping[str, Any], rank: int) -> list[_Idea]:
    column, text = str(s["column"]), str(s["slice"])
    why, kind = describe(s), column_role(o, column, text)
    ideas: list[_Idea] = []
    if kind == "number":
        partners = [d for d in o.drivers if d != column][:PARTNERS]
        ideas += [_Idea(min(i, 1), rank, interaction(column, d, f"{why}, with top driver {d}"))
                  for i, d in enumerate(partners)]
        if text == MISSING:
            ideas.append(_Idea(0, rank, missing_flag(column, why)))
        elif (bounds := slice_range(text)) is not None:
            ideas.append(_Idea(1, rank, slice_bin(column, bounds, why)))
    elif kind == "category":
        if column_kind(o.columns.get(column) or "") != "boolean":
            ideas.append(_Idea(0, rank, frequency(column, why)))
        ideas += [_Idea(1, rank, group_stats(column, d, f"{why}, with top driver {d}"))
                  for d in o.drivers[:PARTNERS]]
    elif kind == "date":
        ideas.append(_Idea(0, rank, date_parts(column, why)))
    return ideas


def _column_ideas(o: Orientation, rank: int) -> list[_Idea]:
    """Ideas from the orientation alone: dates, left-out categories, pairs of top drivers."""
    ideas = []
    for column, type_ in o.columns.items():
        kind = column_kind(type_)
        if kind == "temporal":
            ideas.append(_Idea(0, rank, date_parts(column, f"date column {column}: a model cannot read dates as "
                                                          "they are")))
        elif kind == "text" and column not in o.features:
            ideas.append(_Idea(0, rank, frequency(column, f"category {column} is left out of the model (too many "
                                                          "levels to split on)")))
    pairs = [(a, b) for i, a in enumerate(o.drivers) for b in o.drivers[i + 1:]]
    ideas += [_Idea(1, rank, interaction(a, b, f"top drivers {a} and {b}")) for a, b in pairs]
    return ideas


def transformations(o: Orientation, slices: Sequence[Mapping[str, Any]]) -> list[Candidate]:
    """Candidate groups from the worst `slices` (first slice of each of the first SLICE_COLUMNS columns the
    transformations may use) and from the orientation: every slice's main idea first, then the further ideas, each
    in slice order; an idea seen before (same group, or the same pair of columns) is left out."""
    firsts: dict[str, Mapping[str, Any]] = {}
    for s in slices:
        if str(s.get("column")) in o.columns and len(firsts) < SLICE_COLUMNS:
            firsts.setdefault(str(s["column"]), s)
    ideas = [i for rank, s in enumerate(firsts.values()) for i in _slice_ideas(o, s, rank)]
    ideas += _column_ideas(o, len(firsts))
    out, seen = [], set()
    for idea in sorted(ideas, key=lambda i: (i.tier, i.rank)):
        if idea.key not in seen:
            seen.add(idea.key)
            out.append(idea.candidate)
    return out
