"""The dashboard: server-rendered pages (runs, one run, audit) and the login page. Not part of the OpenAPI schema.

Pages authenticate with the `agentml_token` cookie that the login page sets (GET only, see deps); every change goes
through the JSON API with the bearer header, from static/app.js. No inline script: the CSP allows only our own.
"""
from __future__ import annotations

import functools
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from executor import RunResult
from service.api import tracker
from service.api.auth import ApiUser
from service.api.compare import compare, curves_svg, importance_svg, parse_ids
from service.api.dag import dag_svg
from service.api.deps import TOKEN_COOKIE, RunId, ServicesDep
from service.api.errors import ApiError
from service.api.panels import panels
from service.api.runner import FINISHED
from service.api.services import Services, is_job_address
from service.api.tracker import RunsQuery
from service.api.views import detail

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
router = APIRouter(include_in_schema=False)


def _render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(request, name, context, status_code=status)
    response.headers["Content-Security-Policy"] = PAGE_CSP
    return response


def _user(request: Request, services: Services) -> ApiUser | None:
    try:
        return services.tokens.authenticate(request.cookies.get(TOKEN_COOKIE))
    except ApiError:
        return None


def _login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={request.url.path}", status_code=303)


def _error(request: Request, user: ApiUser | None, exc: ApiError) -> HTMLResponse:
    return _render(request, "error.html", exc.status, user=user, error=exc)


def ray_dashboard(services: Services) -> str | None:
    """The Ray dashboard: the cluster's (job mode), or the local Ray this process started, if it did."""
    if is_job_address(services.settings.ray_address):
        return services.settings.ray_address
    if services.cluster is not None:  # the API's own local head, while it runs
        jobs = services.cluster.current()
        return jobs.address if jobs is not None else None
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    from executor import ensure_ray

    url = ensure_ray()  # already connected: the URL when the executor started Ray, without starting anything
    if url is None:  # Ray was started by someone else in this process (a notebook, a test): ask Ray itself
        try:
            url = ray._private.worker.get_dashboard_url() or None  # no public API for this in Ray 2.60
        except Exception:  # noqa: BLE001 - a missing link must never break the page
            return None
    return url if url is None or "://" in url else f"http://{url}"


@router.get("/login", response_class=HTMLResponse)
def login(request: Request) -> HTMLResponse:
    target = request.query_params.get("next", "/")
    local = re.fullmatch(r"/(?![/\\])[^\\\s]*", target) is not None  # "//host" would leave the site
    return _render(request, "login.html", user=None, next=target if local else "/")


@router.get("/", response_class=HTMLResponse)
def runs_page(request: Request, services: ServicesDep) -> Response:
    user = _user(request, services)
    if user is None:
        return _login(request)
    try:
        query = RunsQuery.model_validate({"group": True, "limit": 25, **_filled(request.query_params)})
        page = tracker.runs_page(services.store, user, query)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _error(request, user, ApiError(400, "bad_request", f"this runs list cannot be shown: {problems}",
                                              hint="fix the address, or start again from the runs list"))
    except ApiError as exc:
        return _error(request, user, exc)
    return _render(request, "runs.html", user=user, page=page, link=functools.partial(_page_link, query))


def _filled(params: Mapping[str, str]) -> dict[str, str]:
    """The query string without empty fields (an empty filter box means: no filter)."""
    return {k: v for k, v in params.items() if v != ""}


def _page_link(query: RunsQuery, **changes: Any) -> str:
    """The runs page's address for `query` with some fields changed (defaults left out)."""
    values = query.model_copy(update=changes).model_dump(exclude_defaults=True, exclude={"group"})
    values.pop("limit", None)
    return "/?" + urlencode(values) if values else "/"


def _visible(services: Services, user: ApiUser, run_id: str) -> RunResult:
    if not services.store.has_run(run_id):
        raise ApiError(404, "not_found", f"no run {run_id}", hint="go back to the runs list")
    run = services.store.get_run(run_id)
    if not user.may_see(run.user):
        raise ApiError(403, "forbidden", f"run {run_id} belongs to another user")
    return run


def _run_for_page(request: Request, services: Services, run_id: str) -> tuple[ApiUser, RunResult] | Response:
    """The logged-in user and the run they may see, or the page to show instead (login, 404, 403)."""
    user = _user(request, services)
    if user is None:
        return _login(request)
    try:
        return user, _visible(services, user, run_id)
    except ApiError as exc:
        return _error(request, user, exc)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: RunId, services: ServicesDep) -> Response:
    found = _run_for_page(request, services, run_id)
    if isinstance(found, Response):
        return found
    user, run = found
    view = detail(run, services.runner.job(run))
    statuses = {s.id: s.status for s in view.steps}
    return _render(request, "run.html", user=user, run=view, dag=dag_svg(view.plan, statuses),
                   panels=panels(run), finished=run.status in FINISHED, ray_dashboard=ray_dashboard(services),
                   last_seq=0)


@router.get("/runs/{run_id}/panels", response_class=HTMLResponse)
def run_panels(request: Request, run_id: RunId, services: ServicesDep) -> Response:
    """The charts and tables of a run, for the page's script to swap in as steps finish."""
    found = _run_for_page(request, services, run_id)
    if isinstance(found, Response):
        return found
    return _render(request, "panels.html", panels=panels(found[1]))


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, services: ServicesDep) -> Response:
    """Runs side by side (`?runs=a,b,c`): metrics, parameters, learning curves, importance."""
    user = _user(request, services)
    if user is None:
        return _login(request)
    try:
        found = compare(services.store, user, parse_ids(request.query_params.get("runs", "")))
    except ApiError as exc:
        return _error(request, user, exc)
    return _render(request, "compare.html", user=user, cmp=found, curves=curves_svg(found),
                   importance=importance_svg(found))


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, services: ServicesDep) -> Response:
    user = _user(request, services)
    if user is None:
        return _login(request)
    if not user.admin:
        return _error(request, user, ApiError(403, "forbidden", "the audit log is for admins only"))
    who = request.query_params.get("user") or None
    try:
        records = services.get_engine().audit.records(user=who, limit=300)
    except ApiError as exc:
        return _error(request, user, exc)
    return _render(request, "audit.html", user=user, records=list(reversed(records)), who=who or "")
