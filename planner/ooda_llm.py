"""LLM proposals for the OODA loop's decide step: extra candidate feature groups, checked like any other.

The LLM sees what the rules see and nothing more: table and column names and types from the principal's catalog,
the model's target, features and top drivers, and the worst residual slices (column, level, lift). It never sees
rows. Its answer must be JSON; every spec is validated against the `features` skill's FeatureSpec schema and the
catalog, and anything invalid is dropped (the race and the paired test judge the rest). Any failure of the call
leaves the loop with its rule-based candidates: an LLM is an extra, never a dependency.
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from planner.ooda_rules import Candidate, Orientation

log = logging.getLogger("agentml.ooda")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

SYSTEM = """You propose feature engineering ideas for a gradient-boosted model. Answer with JSON only:
{"candidates": [{"name": "snake_case_group_name", "description": "why this could help",
  "specs": [<FeatureSpec>, ...]}]}
A FeatureSpec is one of:
{"kind": "window", "name": N, "table": T, "key": K, "time": TIME, "column": C,
 "agg": "avg|sum|min|max|count|stddev", "window_days": D, "offset_days": 0}
{"kind": "lag", "name": N, "table": T, "key": K, "time": TIME, "column": C, "periods": P}
{"kind": "trend", "name": N, "table": T, "key": K, "time": TIME, "column": C, "window_days": D}
{"kind": "ratio"|"difference"|"sum"|"product", "name": N, "left": BASE_COLUMN, "right": BASE_COLUMN}
Use only the tables and columns listed. Feature names must be new snake_case identifiers."""


def _prompt(o: Orientation, catalog: Mapping[str, Mapping[str, str]], model: Mapping[str, Any],
            slices: Sequence[Mapping[str, Any]], limit: int) -> str:
    related = {r.table: dict(catalog.get(r.table, {})) for r in o.related}
    facts = {
        "target": model.get("target"), "task": model.get("task"), "model_features": model.get("features"),
        "top_drivers": o.drivers, "entity_key": o.key,
        "base_table": {o.base_table: dict(catalog.get(o.base_table or "", {}))},
        "related_tables": {t: {"key": r.key, "time": r.time, "columns": related[t]} for r in o.related
                           for t in [r.table]},
        "worst_slices": [{k: s.get(k) for k in ("column", "slice", "lift", "in_model")} for s in slices],
    }
    return f"Propose at most {limit} candidate groups.\n" + json.dumps(facts, indent=1, default=str)


def _complete(model: str, prompt: str, options: Mapping[str, Any]) -> str:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map download at import
    import litellm  # lazy: the import takes seconds and most runs never need it

    response = litellm.completion(model=model, messages=[{"role": "system", "content": SYSTEM},
                                                         {"role": "user", "content": prompt}],
                                  **{"temperature": 0, "timeout": 60, **options})
    return response.choices[0].message.content or ""


def _spec_ok(spec: Any, o: Orientation, catalog: Mapping[str, Mapping[str, str]]) -> bool:
    """Schema-valid, and naming only tables/columns the principal may see (related tables or base columns)."""
    from skills.library.features import ArithmeticSpec, EncodeSpec, FeatureSpec

    try:
        parsed = TypeAdapter(FeatureSpec).validate_python(spec)
    except ValidationError:
        return False
    if isinstance(parsed, ArithmeticSpec | EncodeSpec):
        base = {c.lower() for c in catalog.get(o.base_table or "", {})}
        operands = [parsed.column] if isinstance(parsed, EncodeSpec) else [parsed.left, parsed.right]
        return all(x.lower() in base for x in operands)
    cols = {c.lower() for c in catalog.get(parsed.table, {})}
    return parsed.table in {r.table for r in o.related} and \
        {parsed.key.lower(), parsed.time.lower(), parsed.column.lower()} <= cols


def _candidate(raw: Any, o: Orientation, catalog: Mapping[str, Mapping[str, str]],
               taken: Mapping[str, object]) -> Candidate | None:
    if not isinstance(raw, dict) or not _NAME.match(str(raw.get("name", ""))):
        return None
    specs = [s for s in raw.get("specs") or [] if isinstance(s, dict) and _NAME.match(str(s.get("name", "")))
             and s["name"] not in taken and _spec_ok(s, o, catalog)]
    names = [s["name"] for s in specs]
    if not specs or len(set(names)) != len(names):
        return None
    return Candidate(name=f"llm_{raw['name']}", description=str(raw.get("description", ""))[:300], source="llm",
                     specs=specs)


def propose(model_name: str, o: Orientation, catalog: Mapping[str, Mapping[str, str]], model: Mapping[str, Any],
            slices: Sequence[Mapping[str, Any]], taken: Mapping[str, object], limit: int = 4,
            **options: Any) -> list[Candidate]:
    """Up to `limit` valid candidate groups from the LLM `model_name` (litellm); [] when it fails or says nothing.
    `options` go to `litellm.completion` (api_base, api_key, mock_response in tests)."""
    from planner.llm import extract_json

    try:
        answer = extract_json(_complete(model_name, _prompt(o, catalog, model, slices, limit), options)) or {}
    except Exception as exc:  # noqa: BLE001 - network, auth, junk: the rules still run
        o.notes.append(f"LLM proposals skipped: {type(exc).__name__}")
        log.warning("OODA LLM proposals failed: %s", exc)
        return []
    out: list[Candidate] = []
    seen = set(taken)
    raw_list = answer.get("candidates")
    if not isinstance(raw_list, list):
        o.notes.append("LLM proposals skipped: the reply held no candidate list")
        return []
    for raw in raw_list:
        cand = _candidate(raw, o, catalog, dict.fromkeys(seen, 1))
        if cand is not None and cand.name not in seen:
            out.append(cand)
            seen |= {cand.name, *cand.features}
    return out[:limit]
