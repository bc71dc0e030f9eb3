"""Feature specs the rule-based planner proposes: aggregates over related tables, arithmetic on base columns.

Specs are plain dicts in the `features` skill's FeatureSpec shape (see CONTRACTS.md) so that plans stay data only.
Every name comes from the governed catalog, so a spec never names something the principal cannot see.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from planner.catalog import PromptWords, Related, is_key_like, is_numeric, named_columns, named_tables, words
from planner.rules_intent import Intent

Spec = dict[str, Any]
DEFAULT_WINDOW_DAYS = 90
MAX_RELATED = 2
_HISTORY_KINDS = frozenset({"lag", "window", "trend"})


def _name(*parts: object) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", "_".join(str(p) for p in parts).lower()).strip("_")


def _history_kinds(intent: Intent) -> list[str]:
    """Kinds asked for by name, else all three (a prompt that says "features" or nothing gets the usual set)."""
    every = ["window", "lag", "trend"]
    return [k for k in every if k in intent.features] or every


def _column_specs(rel: Related, column: str, kinds: list[str], days: int, periods: int) -> list[Spec]:
    link = {"table": rel.table, "key": rel.key, "time": rel.time, "column": column}
    out: list[Spec] = []
    if "window" in kinds:
        out.append({"kind": "window", "name": _name(rel.table, column, "avg", f"{days}d"), **link, "agg": "avg",
                    "window_days": days, "offset_days": 0})
    if "lag" in kinds:
        out.append({"kind": "lag", "name": _name(rel.table, column, f"lag{periods}"), **link, "periods": periods})
    if "trend" in kinds:
        out.append({"kind": "trend", "name": _name(rel.table, column, "trend", f"{days}d"), **link,
                    "window_days": days})
    return out


def history_specs(intent: Intent, pw: PromptWords, related: list[Related]) -> list[Spec]:
    """Window/lag/trend specs over the related tables (those the prompt names, else all, at most two)."""
    named = set(named_tables(" ".join(pw.raw), [r.table for r in related]))
    chosen = [r for r in related if r.table in named] or related[:MAX_RELATED]
    kinds = _history_kinds(intent)
    days = intent.window_days or DEFAULT_WINDOW_DAYS
    periods = intent.lag_periods or 1
    specs: list[Spec] = []
    for rel in chosen:
        columns = named_columns(pw, rel.values) or list(rel.values)
        if "window" in kinds:
            specs.append({"kind": "window", "name": _name(rel.table, "count", f"{days}d"), "table": rel.table,
                          "key": rel.key, "time": rel.time, "column": rel.key, "agg": "count", "window_days": days,
                          "offset_days": 0})
        for column in columns:
            specs += _column_specs(rel, column, kinds, days, periods)
    return specs


def _pair(pw: PromptWords, numeric: list[str]) -> tuple[str, str] | None:
    """The two columns to combine: the two the prompt names, else two sharing a word, else the first two."""
    named = named_columns(pw, numeric)
    if len(named) >= 2:
        return named[0], named[1]
    for i, left in enumerate(numeric):
        for right in numeric[i + 1:]:
            if set(words(left)) & set(words(right)):
                return (right, left) if "total" in words(right) else (left, right)
    return (numeric[0], numeric[1]) if len(numeric) >= 2 else None


def arithmetic_specs(intent: Intent, pw: PromptWords, columns: Mapping[str, str], usable: set[str]) -> list[Spec]:
    """Ratio/difference specs on the entity table's numeric columns the model may use."""
    wanted = [k for k in ("ratio", "difference") if k in intent.features]
    numeric = [c for c, t in columns.items() if c in usable and is_numeric(t) and not is_key_like(c)]
    pair = _pair(pw, numeric) if wanted else None
    if pair is None:
        return []
    left, right = pair
    joiner = {"ratio": "per", "difference": "minus"}
    return [{"kind": kind, "name": _name(left, joiner[kind], right), "left": left, "right": right} for kind in wanted]


def feature_specs(intent: Intent, pw: PromptWords, related: list[Related], columns: Mapping[str, str],
                  usable: set[str]) -> list[Spec]:
    """Every spec for this prompt: history over related tables (unless "no features"), then arithmetic."""
    if "none" in intent.features:
        return []
    return history_specs(intent, pw, related) + arithmetic_specs(intent, pw, columns, usable)
