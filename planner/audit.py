"""What the planner adds to governance's audit log: plans refused before they run, and calls to an LLM.

Every refusal is audited wherever it happens (the rule planner, an LLM reply, a plan a client sent, an OODA
extension), with the user, the SQL the refused step holds, verdict `denied` and the reason. An LLM call is audited
by what was sent (size and SHA-256, which catalog columns it named), never by its text: prompts can quote the goal.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from planner.errors import PlanProblem
from skills.plan import Plan

if TYPE_CHECKING:
    from governance import AuditLog, Principal


def _sql_of(plan: Plan | Mapping[str, Any], problem: PlanProblem) -> str:
    """The SQL the problem is about (a step's SQL input), or ''."""
    steps = plan.steps if isinstance(plan, Plan) else plan.get("steps")
    if problem.step is None or not isinstance(steps, list):
        return ""
    for step in steps:
        if isinstance(step, Mapping):
            step_id, inputs = step.get("id"), step.get("inputs")
        else:
            step_id, inputs = step.id, step.inputs
        if step_id == problem.step and isinstance(inputs, Mapping):
            value = inputs.get(problem.field or "sql")
            return value if isinstance(value, str) and problem.field in (None, "sql") else ""
    return ""


def record_problems(audit: AuditLog | None, principal: Principal | None, plan: Plan | Mapping[str, Any],
                    problems: Sequence[PlanProblem], *, source: str) -> None:
    """One `denied` record per problem of a refused plan (`source`: who wrote the plan, e.g. "rules",
    "llm reply 2", "client", "ooda")."""
    if audit is None or principal is None:
        return
    for problem in problems:
        audit.append(user=principal.user, roles=list(principal.roles), sql=_sql_of(plan, problem),
                     verdict="denied", reason=f"plan refused: {problem.text()}", action="plan",
                     detail={"source": source, "step": problem.step, "field": problem.field, "kind": problem.kind})


def digest(text: str) -> dict[str, Any]:
    """Size and SHA-256 of what was sent: enough to match a prompt later, nothing to read back."""
    return {"chars": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest()}


def named_columns(text: str, catalog: Mapping[str, Mapping[str, str]]) -> list[str]:
    """`table.column` for every catalog column whose table and column names both appear in `text`."""
    lowered = text.lower()
    return sorted(f"{table}.{column}" for table, columns in catalog.items() if table.lower() in lowered
                  for column in columns if column.lower() in lowered)


def record_llm_call(audit: AuditLog | None, principal: Principal | None, *, model: str, purpose: str,
                    sent: Iterable[str], catalog: Mapping[str, Mapping[str, str]], verdict: str,
                    reason: str = "", repair_round: int = 0, extra: Mapping[str, Any] | None = None) -> None:
    """One record per call to an LLM: who, which model, for what, size and hash of what was sent, the catalog
    columns it named, and what became of the reply (`verdict`: "allowed" = used, "denied" = refused, "error")."""
    if audit is None or principal is None:
        return
    text = "\n".join(sent)
    audit.append(user=principal.user, roles=list(principal.roles), verdict=verdict,  # type: ignore[arg-type]
                 reason=reason, action="llm",
                 detail={"model": model, "purpose": purpose, "sent": digest(text), "repair_round": repair_round,
                         "columns_named": named_columns(text, catalog), **(extra or {})})
