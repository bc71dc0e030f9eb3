"""POST /v1/plans: a prompt becomes a validated plan (or a 422 listing every problem)."""
from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import ServicesDep, UserDep
from service.api.errors import ERROR_RESPONSES
from service.api.models import PlanRequest, PlanResponse
from service.api.planning import make_plan, plan_preview

router = APIRouter(prefix="/v1", tags=["plans"], responses=ERROR_RESPONSES)


@router.post("/plans", response_model=PlanResponse, summary="Plan a prompt over what you may see")
def create_plan(body: PlanRequest, user: UserDep, services: ServicesDep) -> PlanResponse:
    """Turn the prompt into a plan built only from the tables and columns the caller may see, validated against the
    skill registry and the caller's budget. 422 lists every problem, or the candidates when the prompt is ambiguous.
    Nothing runs: POST the returned plan to /v1/runs to run it."""
    plan, which = make_plan(services, user, body.prompt, target=body.target, budget=body.budget,
                            planner=body.planner, include=body.include, exclude=body.exclude)
    return PlanResponse(plan=plan, preview=plan_preview(services, user, plan), planner=which)
