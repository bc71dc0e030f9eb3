"""Which columns of the target's table are not features, and why: decided from the data, names only break ties.

From a `planner.profile.TableProfile`: identifiers by uniqueness (integer and text columns, never floats), time
columns by type or by their text parsing as dates (and after the cutoff: recorded after the outcome), PII by the
policies (a column masked for the principal) and by values that look like emails or phone numbers, constant and
empty columns, text with too many levels for the model, types that are no model input, and leakage by a near-perfect
single-column score on the governed sample (`planner.leakage`). Without a profile (a caller that gives only a
catalog) `name_exclusions` keeps the older rules by name, and says so in each reason.

Every exclusion carries its reason; `--include` / `--exclude` (`apply_overrides`) have the last word.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from planner.catalog import (
    Catalog,
    close_matches,
    column_kind,
    is_key_like,
    is_pii_like,
    leakage_columns,
    lookup,
    time_columns,
    words,
)
from planner.errors import PlanError
from planner.leakage import LEAKAGE_SCORE, MIN_CLASS, MIN_ROWS, single_column_score
from planner.profile import ColumnProfile, TableProfile
from skills.frame import MAX_LEVELS, identifier_like

UNIQUE = 0.98        # distinct values per non-null value from which an integer or text column is an identifier
MIN_ID_ROWS = 20     # fewer non-null values than this say nothing about uniqueness
DENSE = 0.2          # unique integers filling this much of their range are row numbers, not amounts
PATTERN = 0.8        # share of values that look like emails / phone numbers for a column to be PII
DATES = 0.9          # share of text values that parse as dates for a column to be a time column
AFTER_CUTOFF = 0.5   # share of a time column's values after the row's cutoff for it to be post-outcome
_ID_WORDS = frozenset({"id", "ids", "uuid", "guid", "key", "code", "number", "no", "num", "nr", "ref", "serial"})


class Exclusion(BaseModel):
    """A column left out of training and why, in words for the user (plan metadata, preview, result.json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    column: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"column": self.column, "reason": self.reason}


# ---------------------------------------------------------------------------------------------------- from data


def _pct(share: float) -> str:
    return f"{100 * share:.0f}%"


def _identifier(p: ColumnProfile) -> str | None:
    """Unique integers or text: a row's name, not a property. Unique integers count only when they fill their range
    (row numbers) or the name says id/code/number: a unique amount is still an amount."""
    if p.kind not in ("integer", "text") or p.non_null < MIN_ID_ROWS:
        return None
    said = f"{p.distinct} distinct of {p.rows} rows"
    named = bool(set(words(p.name)) & _ID_WORDS)
    if p.uniqueness >= UNIQUE:
        low, high = p.number("min"), p.number("max")
        dense = low is not None and high is not None and p.distinct / max(high - low + 1, 1) >= DENSE
        if p.kind == "text" or dense or named:
            return f"identifier: {said}"
    if is_key_like(p.name) and p.uniqueness >= 0.5:
        return f"identifier (named as a key): {said}"
    return None


def _pii(p: ColumnProfile) -> str | None:
    if p.masked:
        return "PII: masked for you by the column policies"
    if (p.email_share or 0) >= PATTERN:
        return f"PII: {_pct(p.email_share or 0)} of values look like email addresses"
    if (p.phone_share or 0) >= PATTERN:
        return f"PII: {_pct(p.phone_share or 0)} of values look like phone or ID numbers"
    if p.kind == "text" and is_pii_like(p.name) and not p.constant:
        return "PII (by name: a name or contact detail)"
    return None


def _empty(p: ColumnProfile) -> str | None:
    return f"empty: no value in {p.rows} rows" if p.non_null == 0 else None


def _constant(p: ColumnProfile) -> str | None:
    """One value in every row. One value and missing ones is a yes/no signal: it stays (and is tested for leakage)."""
    return f"constant: one value in all {p.rows} rows" if p.constant and p.non_null == p.rows else None


def _time(p: ColumnProfile) -> str | None:
    if p.kind == "temporal":
        return f"time column ({p.type})"
    if p.kind == "text" and (p.date_share or 0) >= DATES:
        return f"time column: {_pct(p.date_share or 0)} of its text values are dates"
    return None


def _unusable(p: ColumnProfile) -> str | None:
    if p.kind == "other":
        return f"type {p.type} is not a model input"
    if p.kind == "text" and identifier_like(p.distinct, p.rows):
        return f"too many levels: {p.distinct} distinct text values in {p.rows} rows (the model takes at most " \
               f"{MAX_LEVELS} levels, and not more than half the rows)"
    return None


_DATA_RULES = (_pii, _empty, _time, _constant, _identifier, _unusable)


def _as_datetimes(col: pa.ChunkedArray) -> np.ndarray:
    """A date, timestamp or date-text column as datetime64 (unparseable or missing values as NaT)."""
    import pandas as pd

    text = pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
    try:
        parsed = pd.to_datetime(col.to_pandas(), errors="coerce", **({"format": "mixed"} if text else {}))
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        return parsed.to_numpy(dtype="datetime64[ns]")
    except (TypeError, ValueError, OverflowError):  # mixed time zones, out-of-range dates: no timing to judge
        return np.full(len(col), np.datetime64("NaT"), dtype="datetime64[ns]")


def _after_cutoff(profile: TableProfile, column: str, cutoff: str | None) -> float | None:
    """Share of `column`'s sampled values later than the row's cutoff (a column of the table, or a date)."""
    if cutoff is None or column == cutoff or column not in profile.sample.column_names:
        return None
    when = _as_datetimes(profile.sample.column(column))
    if cutoff in profile.sample.column_names:
        limit = _as_datetimes(profile.sample.column(cutoff))
    else:
        try:
            limit = np.full(len(when), np.datetime64(dt.date.fromisoformat(cutoff)), dtype="datetime64[ns]")
        except ValueError:
            return None
    both = ~np.isnat(when) & ~np.isnat(limit)
    return float((when[both] > limit[both]).mean()) if both.any() else None


def _leakage(profile: TableProfile, column: str, target: str, classification: bool) -> str | None:
    sample = profile.sample
    if column not in sample.column_names or target not in sample.column_names:
        return None
    score = single_column_score(sample.column(column), sample.column(target), classification)
    if score is None or score < LEAKAGE_SCORE:
        return None
    what = f"AUC {score:.3f}" if classification else f"rank correlation {score:.3f}"
    return f"leakage: alone it predicts {target} with {what} on a sample of {sample.num_rows} rows"


def is_classification(profile: TableProfile, target: str, task: str | None) -> bool:
    """The task, or when undecided what the training skill will decide: two values or text -> classification."""
    if task is not None:
        return task == "classification"
    p = profile.columns[target]
    return p.kind in ("text", "boolean") or p.distinct <= 2


def profile_exclusions(profile: TableProfile, target: str, task: str | None, *, cutoff: str | None = None,
                       small_sample_names: bool = True) -> list[Exclusion]:
    """Every column of the profiled table that is not a feature, with the reason from its data. Leakage scores need
    a big enough sample; below it (and `small_sample_names`) the columns named after the outcome are left out, said
    as such."""
    classification = is_classification(profile, target, task)
    out: list[Exclusion] = []
    for name, p in profile.columns.items():
        if name == target:
            continue
        reason = next((r for rule in _DATA_RULES if (r := rule(p)) is not None), None)
        if reason is not None and reason.startswith("time column"):
            late = _after_cutoff(profile, name, cutoff)
            if late is not None and late >= AFTER_CUTOFF:
                reason = f"after the outcome: {_pct(late)} of its values are later than the cutoff {cutoff} (leakage)"
        reason = reason or _leakage(profile, name, target, classification)
        if reason is not None:
            out.append(Exclusion(column=name, reason=reason))
    if small_sample_names and _too_small(profile, target):
        left = {e.column for e in out}
        columns = {c: p.type for c, p in profile.columns.items()}
        why = "leakage (by name: it names the outcome; too few rows to test it on the data)"
        out += [Exclusion(column=c, reason=why) for c in leakage_columns(columns, target, classification)
                if c not in left]
    return out


def _too_small(profile: TableProfile, target: str) -> bool:
    """Whether the sample is too small for leakage scores (`planner.leakage`): too few rows, or of a class."""
    tp = profile.columns[target]
    rows = profile.sample.num_rows
    smallest = min((lv.share for lv in tp.top if lv.value is not None), default=1.0) * rows
    return rows < MIN_ROWS or (is_classification(profile, target, None) and smallest < MIN_CLASS)


# --------------------------------------------------------------------------------------------------- from names


def name_exclusions(catalog: Catalog, table: str, target: str, classification: bool) -> list[Exclusion]:
    """The rules by name, for callers without an engine: keys, time columns, names and contacts, and columns named
    after the outcome."""
    columns = catalog[table]
    times = set(time_columns(columns))
    out = []
    for c, type_ in columns.items():
        if c == target:
            continue
        if is_key_like(c):
            out.append(Exclusion(column=c, reason="identifier (by name)"))
        elif c in times:
            out.append(Exclusion(column=c, reason=f"time column ({type_})" if column_kind(type_) == "temporal"
                                 else "time column (by name)"))
        elif is_pii_like(c):
            out.append(Exclusion(column=c, reason="PII (by name)"))
    left = {e.column for e in out}
    return out + [Exclusion(column=c, reason="leakage (by name: it names the outcome)")
                  for c in leakage_columns(columns, target, classification) if c not in left]


# ------------------------------------------------------------------------------------------------------ the user


def _resolve(names: Iterable[str], columns: Mapping[str, str], flag: str) -> list[str]:
    out = []
    for name in names:
        found = lookup(columns, name)
        if found is None:
            close = close_matches(name, columns)
            raise PlanError(f"{flag} {name}: no such column in this table (or you may not see it)", candidates=close,
                            hint=f"did you mean {' or '.join(close)}?" if close else
                            f"columns you may use: {', '.join(list(columns)[:20])}")
        out.append(found)
    return out


def apply_overrides(exclusions: Sequence[Exclusion], columns: Mapping[str, str], target: str,
                    include: Iterable[str] = (), exclude: Iterable[str] = ()) -> list[Exclusion]:
    """The user's word over the planner's: `include` brings columns back, `exclude` leaves them out. Raises
    PlanError for a column not in the table (with close matches) and for the target."""
    wanted = _resolve(include, columns, "--include")
    dropped = _resolve(exclude, columns, "--exclude")
    if target in dropped:
        raise PlanError(f"--exclude {target}: that is the target column", candidates=[target],
                        hint="name another target with --target COL, or drop this --exclude")
    both = set(wanted) & set(dropped)
    if both:
        raise PlanError(f"{', '.join(sorted(both))}: both included and excluded", candidates=sorted(both),
                        hint="give each column to --include or to --exclude, not both")
    kept = [e for e in exclusions if e.column not in wanted and e.column not in dropped]
    return kept + [Exclusion(column=c, reason="you asked to leave it out (--exclude)") for c in dict.fromkeys(dropped)]
