"""FastAPI dependencies (`Annotated` aliases): the services, the caller, an admin, a run the caller may see.

Authentication reads the `Authorization: Bearer` header. The dashboard's browser pages and its event stream
(EventSource cannot send headers) may use the `agentml_token` cookie instead, but only for safe methods (GET, HEAD):
a request that changes something always needs the header, so a cross-site form cannot start or cancel runs.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from executor import RunResult
from service.api.auth import ApiUser
from service.api.errors import ApiError
from service.api.models import RUN_ID
from service.api.services import Services

TOKEN_COOKIE = "agentml_token"
SAFE_METHODS = frozenset({"GET", "HEAD"})
bearer = HTTPBearer(auto_error=False, description="a token from the tokens file (AGENTML_TOKENS_FILE)")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def request_token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    """The bearer token of the request: the header, or the dashboard cookie on safe methods."""
    if credentials is not None:
        return credentials.credentials
    if request.method in SAFE_METHODS:
        return request.cookies.get(TOKEN_COOKIE)
    return None


def current_user(request: Request, services: ServicesDep,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> ApiUser:
    """The caller, from the token only (never from the body or the prompt). 401 without a valid token."""
    return services.tokens.authenticate(request_token(request, credentials))


UserDep = Annotated[ApiUser, Depends(current_user)]


def admin_user(user: UserDep) -> ApiUser:
    """The caller, when an admin. 403 otherwise."""
    if not user.admin:
        raise ApiError(403, "forbidden", "only admins may do this", hint="ask an admin, or use an admin token")
    return user


AdminDep = Annotated[ApiUser, Depends(admin_user)]
RunId = Annotated[str, Path(pattern=RUN_ID, description="run id", examples=["3f2a9c1b7d4e5f60"])]


def visible_run(run_id: RunId, user: UserDep, services: ServicesDep) -> RunResult:
    """The run `run_id`: 404 when there is none, 403 when it is another user's and the caller is no admin."""
    run = services.store.get_run(run_id)  # RunNotFound -> 404
    if not user.may_see(run.user):
        raise ApiError(403, "forbidden", f"run {run_id} belongs to another user",
                       hint="only its owner and admins may see or change it")
    return run


RunDep = Annotated[RunResult, Depends(visible_run)]
