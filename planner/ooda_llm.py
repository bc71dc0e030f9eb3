"""LLM proposals for the OODA loop's decide step: extra candidate feature groups, checked like any other.

The LLM sees what the rules see and nothing more: table and column names and types from the principal's catalog, the
model's target, features and top drivers, and the worst residual slices (column, lift, count). It never sees rows; it
sees a slice's level or bin edges only when the `llm_send_values` setting allows, and never those of a masked, denied or
PII-like column. Every call is audited (size and hash of the prompt, the columns it names). Its answer must be JSON;
every spec is validated against the FeatureSpec schema (`skills.feature_specs`) and the catalog, and anything invalid is
dropped (the race and the paired test judge the rest). Any failure of the call leaves the loop with its rule-based
candidates: an LLM is an extra, never a dependency.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from planner.audit import record_llm_call
from planner.catalog import is_pii_like
from planner.ooda_rules import Candidate, Orientation

if TYPE_CHECKING:
    from governance import Engine, Principal

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
{"kind": "encode", "name": N, "column": BASE_COLUMN, "method": "frequency|one_hot"}
{"kind": "missing", "name": N, "column": BASE_COLUMN}
{"kind": "bin", "name": N, "column": BASE_COLUMN, "quantiles": Q}
{"kind": "date_part", "name": N, "column": BASE_COLUMN, "part": "year|quarter|month|day|dayofweek|dayofyear|hour"}
{"kind": "group", "name": N, "column": BASE_COLUMN, "value": NUMERIC_BASE_COLUMN, "agg": "avg|min|max|stddev"}
Use only the tables and columns listed. Feature names must be new snake_case identifiers."""


def sensitive_columns(engine: Engine | None, catalog: Mapping[str, Mapping[str, str]]) -> set[str]:
    """Lower-case names of columns whose values never go to an LLM: masked or denied for anyone by the policies,
    or named like personal data."""
    names = {c.lower() for cols in catalog.values() for c in cols if is_pii_like(c)}
    for policy in (engine.policies.tables.values() if engine is not None else ()):
        names |= {c.lower() for c in (*policy.mask_columns, *policy.deny_columns)}
    return names


def _slice_facts(s: Mapping[str, Any], values: bool, sensitive: set[str]) -> dict[str, Any]:
    """One residual slice as the LLM sees it: column, how much worse, whether the model uses it; the slice's level
    or bin edges only when values may be sent and the column is not sensitive."""
    facts = {k: s.get(k) for k in ("column", "lift", "count", "in_model")}
    if values and str(s.get("column", "")).lower() not in sensitive:
        facts["slice"] = s.get("slice")
    return facts


def prompt_text(o: Orientation, catalog: Mapping[str, Mapping[str, str]], model: Mapping[str, Any],
                slices: Sequence[Mapping[str, Any]], limit: int, *, values: bool = False,
                sensitive: set[str] | None = None) -> str:
    """What the LLM is sent: names, types and error statistics; data values only with `values` (never of
    `sensitive` columns)."""
    related = {r.table: dict(catalog.get(r.table, {})) for r in o.related}
    facts = {
        "target": model.get("target"), "task": model.get("task"), "model_features": model.get("features"),
        "top_drivers": o.drivers, "entity_key": o.key,
        "base_table": {o.base_table: dict(catalog.get(o.base_table or "", {}))},
        "related_tables": {t: {"key": r.key, "time": r.time, "columns": related[t]} for r in o.related
                           for t in [r.table]},
        "worst_slices": [_slice_facts(s, values, sensitive or set()) for s in slices],
    }
    return f"Propose at most {limit} candidate groups.\n" + json.dumps(facts, indent=1, default=str)


def _spec_ok(spec: Any, o: Orientation, catalog: Mapping[str, Mapping[str, str]]) -> bool:
    """Schema-valid, and naming only tables/columns the principal may see (related tables or base columns)."""
    from skills.feature_specs import FeatureSpec, RelatedSpec

    try:
        parsed = TypeAdapter(FeatureSpec).validate_python(spec)
    except ValidationError:
        return False
    if not isinstance(parsed, RelatedSpec):
        base = {c.lower() for c in catalog.get(o.base_table or "", {})}
        return all(x.lower() in base for x in parsed.operands())
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
            slices: Sequence[Mapping[str, Any]], taken: Mapping[str, object], limit: int = 4, *,
            timeout_s: float = 60.0, values: bool = False, engine: Engine | None = None,
            principal: Principal | None = None, **options: Any) -> list[Candidate]:
    """Up to `limit` valid candidate groups from the LLM `model_name` (litellm); [] when it fails or says nothing.
    `values`: the prompt may quote slice levels and bin edges (never of masked, denied or PII-like columns). The call
    is audited in `engine`'s log as `principal`. `options` go to `litellm.completion` (api_base, api_key,
    mock_response in tests)."""
    from planner.llm import complete, extract_json

    prompt = prompt_text(o, catalog, model, slices, limit, values=values,
                         sensitive=sensitive_columns(engine, catalog))
    audit = engine.audit if engine is not None else None

    def record(verdict: str, reason: str = "") -> None:
        record_llm_call(audit, principal, model=model_name, purpose="ooda", sent=[SYSTEM, prompt], catalog=catalog,
                        verdict=verdict, reason=reason, extra={"values_sent": values})

    try:
        answer = extract_json(complete(model_name, [{"role": "system", "content": SYSTEM},
                                                    {"role": "user", "content": prompt}], options,
                                       timeout_s=timeout_s)) or {}
    except Exception as exc:  # noqa: BLE001 - network, auth, junk: the rules still run
        o.notes.append(f"LLM proposals skipped: {getattr(exc, 'message', type(exc).__name__)}")
        log.warning("OODA LLM proposals failed: %s", exc)
        record("error", str(getattr(exc, "message", exc))[:500])
        return []
    out: list[Candidate] = []
    seen = set(taken)
    raw_list = answer.get("candidates")
    if not isinstance(raw_list, list):
        o.notes.append("LLM proposals skipped: the reply held no candidate list")
        record("denied", "the reply held no candidate list")
        return []
    dropped = 0
    for raw in raw_list:
        cand = _candidate(raw, o, catalog, dict.fromkeys(seen, 1))
        if cand is not None and cand.name not in seen:
            out.append(cand)
            seen |= {cand.name, *cand.features}
        else:
            dropped += 1
    record("allowed" if out else "denied",
           f"{len(out[:limit])} candidate group(s) kept, {dropped} dropped (invalid, unknown columns or duplicates)")
    return out[:limit]
