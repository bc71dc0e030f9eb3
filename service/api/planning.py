"""Planning for the API: a prompt becomes a validated plan over the caller's catalog, within the caller's budget.

POST /v1/plans and POST /v1/runs (with a prompt) share these functions, so a plan is checked the same way wherever
it comes from; a plan given by the client is validated again, never trusted.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from planner import PlanError, plan_prompt, preview, validate_plan
from planner.audit import record_problems
from planner.budget import Budget
from planner.preview import Preview, row_counts
from planner.validate import step_reads
from service.api.auth import ApiUser
from service.api.errors import ApiError
from service.api.models import PlannerName
from service.api.services import Services
from skills.plan import Plan


def _which(services: Services, asked: PlannerName) -> Literal["rules", "llm"]:
    if asked == "llm" and not services.settings.llm_model:
        raise ApiError(422, "unsupported", "no LLM is configured on this server",
                       hint="use planner 'rules' or 'auto', or set AGENTML_LLM_MODEL on the server")
    if asked == "rules" or not services.settings.llm_model:
        return "rules"
    return "llm"


def make_plan(services: Services, user: ApiUser, prompt: str, *, target: str | None, budget: Budget | None,
              planner: PlannerName = "auto", include: Sequence[str] = (),
              exclude: Sequence[str] = ()) -> tuple[Plan, Literal["rules", "llm"]]:
    """A validated plan for `prompt` as `user`. Raises PlanError (422) with every problem or the candidates.
    `include` / `exclude`: columns to bring back into training or leave out (the rule-based planner's)."""
    engine = services.get_engine()
    catalog = engine.catalog(user.principal)
    quota = user.effective_budget(budget)
    which = _which(services, planner)
    if which == "llm" and (include or exclude):
        if planner == "llm":
            raise ApiError(422, "unsupported", "`include` / `exclude` work with the rule-based planner only",
                           hint="use planner 'rules', or say which columns to use in the prompt")
        which = "rules"  # "auto": the planner that honours the column choice
    if which == "llm":
        # litellm is slow to import: only when an LLM is configured
        from planner import plan_with_llm

        plan = plan_with_llm(prompt, model=services.settings.llm_model or "", catalog=catalog,
                             registry=services.registry, target=target, budget=quota, principal=user.principal,
                             engine=engine, timeout_s=services.settings.llm_timeout_s,
                             retries=services.settings.llm_retries)
        return plan, which
    return plan_prompt(prompt, catalog=catalog, registry=services.registry, target=target, budget=quota,
                       principal=user.principal, engine=engine, include=include, exclude=exclude), which


def check_plan(services: Services, user: ApiUser, plan: Plan, budget: Budget | None) -> Plan:
    """`plan` when it is valid for `user` (skills, refs, types, what they may see, their budget); else PlanError."""
    engine = services.get_engine()
    catalog = engine.catalog(user.principal)
    problems = validate_plan(plan, services.registry, catalog, user.effective_budget(budget))
    if problems:
        record_problems(engine.audit, user.principal, plan, problems, source="client")
        raise PlanError(f"the plan has {len(problems)} problem(s)", problems=problems,
                        hint="fix every problem listed, or ask POST /v1/plans for a plan")
    return plan


def plan_preview(services: Services, user: ApiUser, plan: Plan) -> Preview:
    """What `plan` reads and costs, with governed row counts of the tables it reads (as `user` sees them)."""
    engine = services.get_engine()
    catalog = engine.catalog(user.principal)
    tables = {t for s in plan.steps if s.skill in services.registry
              for t in step_reads(s, services.registry.get(s.skill)) if t in catalog}
    return preview(plan, services.registry, catalog, row_counts(engine, user.principal, sorted(tables)))
