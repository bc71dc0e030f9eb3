"""What the caller may use: the skill registry, their catalog, who they are; the audit log for admins."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.api.deps import AdminDep, ServicesDep, UserDep
from service.api.errors import ERROR_RESPONSES, ErrorBody
from service.api.models import TEXT, AuditList, CatalogView, Me, SkillList, SkillView

router = APIRouter(prefix="/v1", tags=["meta"], responses=ERROR_RESPONSES)


@router.get("/skills", response_model=SkillList, summary="Skills with their input and output schemas")
def skills(_: UserDep, services: ServicesDep) -> SkillList:
    return SkillList(skills=[SkillView.model_validate(s) for s in services.registry.schemas()])


@router.get("/catalog", response_model=CatalogView, summary="Tables and columns you may see")
def catalog(user: UserDep, services: ServicesDep) -> CatalogView:
    """Only what the caller's policies grant: hidden tables and denied columns are absent."""
    return CatalogView(tables=services.get_engine().catalog(user.principal))


@router.get("/me", response_model=Me, summary="Who your token says you are")
def me(user: UserDep) -> Me:
    p = user.principal
    return Me(user=p.user, roles=p.roles, attributes=p.attributes, admin=user.admin, budget=user.budget)


@router.get("/audit", response_model=AuditList, summary="Governance decisions (admins only)",
            responses={403: {"model": ErrorBody, "description": "not an admin"}})
def audit(_: AdminDep, services: ServicesDep,
          user: Annotated[str | None, Query(min_length=1, max_length=200, pattern=TEXT)] = None,
          limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> AuditList:
    """The latest `limit` decisions (oldest first): who asked what, what ran instead, and the verdict."""
    log = services.get_engine().audit
    return AuditList(records=log.records(user=user, limit=limit))
