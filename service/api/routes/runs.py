"""Runs: start one (a plan, or a prompt planned first), list, inspect, cancel, follow its events, read its report."""
from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from sse_starlette import EventSourceResponse

from executor import ExecutionError, RunResult, RunStore
from service.api.deps import RunDep, ServicesDep, UserDep
from service.api.errors import ERROR_RESPONSES, ApiError, ErrorBody
from service.api.models import (
    EventList,
    RunCreated,
    RunDetail,
    RunList,
    RunRequest,
    RunSummary,
)
from service.api.planning import check_plan, make_plan
from service.api.quotas import check_active, check_quota
from service.api.runner import FINISHED
from service.api.services import Services
from service.api.tracker import RunsQuery, runs_page
from service.api.views import detail, links, summary
from service.compute import runtime_settings
from service.results import SessionSummary

router = APIRouter(prefix="/v1/runs", tags=["runs"], responses={
    **ERROR_RESPONSES, 403: {"model": ErrorBody, "description": "another user's run"},
    404: {"model": ErrorBody, "description": "no such run"}})

POLL_S = 0.5
MAX_EVENT_ID = 2**31 - 1  # event ids (seq) are 32-bit integers in every store
RESUMABLE = frozenset({"interrupted", "failed", "cancelled"})
MAX_STREAM_S = 15 * 60  # then the client reconnects with Last-Event-ID (EventSource does it by itself)
# reports are built from governed outputs and escaped; the CSP makes sure no script could ever run in them
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"


@router.post("", status_code=202, response_model=RunCreated, summary="Start a run of a plan or a prompt",
             responses={409: {"model": ErrorBody},
                        429: {"model": ErrorBody, "description": "a per-user limit; Retry-After says when"},
                        503: {"model": ErrorBody, "description": "Ray unavailable"}})
def create_run(body: RunRequest, user: UserDep, services: ServicesDep) -> RunCreated:
    """Validate the plan (or plan the prompt), record the run as queued and start it; returns at once.
    The run runs as the caller's principal, whatever the plan or the prompt says, with the `compute` it asks for
    (422 past the server's limits), recorded with the run so that whoever runs it (a Ray job) uses it."""
    runtime = runtime_settings(services.settings, body.compute)
    if body.plan is not None:
        plan = check_plan(services, user, body.plan, body.budget)
    else:
        plan, _ = make_plan(services, user, body.prompt or "", target=body.target, budget=body.budget,
                            planner=body.planner, include=body.include, exclude=body.exclude)
    check_quota(services.store, services.settings, services.registry, user.user, plan)  # 429: nothing recorded
    _prepare(services)  # 503 when Ray cannot take the run: nothing recorded either
    run_id = services.store.create_run(plan, user.principal, prompt=body.prompt or plan.goal,
                                       backend=services.runner.name, settings=runtime.model_dump(mode="json"))
    try:
        services.runner.submit(run_id, iterations=body.iterations)
    except ApiError:
        services.store.delete_run(run_id)  # it never started: a refused start leaves no run behind
        raise
    return RunCreated(id=run_id, status="queued", links=links(run_id))


def _prepare(services: Services) -> None:
    try:
        services.runner.prepare()
    except ExecutionError as exc:
        raise ApiError(503, "ray_unavailable", exc.message, hint=exc.hint) from None


@router.post("/{run_id}/resume", status_code=202, response_model=RunCreated,
             summary="Run an interrupted, failed or cancelled run again from its first unfinished step",
             responses={409: {"model": ErrorBody, "description": "the run is still going, or it succeeded"},
                        429: {"model": ErrorBody, "description": "too many runs of yours are going"},
                        503: {"model": ErrorBody, "description": "Ray unavailable"}})
def resume_run(run: RunDep, user: UserDep, services: ServicesDep,
               iterations: Annotated[int, Query(ge=0, le=10, description="OODA iterations after the run")] = 0) \
        -> RunCreated:
    """The same run (same id, principal and plan) is queued again: steps that succeeded keep their outputs and are
    not run again (their refs resolve from the store); the others run."""
    if run.status not in RESUMABLE:
        raise ApiError(409, "conflict", f"run {run.id} is {run.status}: only an interrupted, failed or cancelled run "
                       "can be resumed", hint="wait for it to end" if run.status not in FINISHED
                       else "it succeeded: start a new run instead")
    check_active(services.store, services.settings, run.user)
    _prepare(services)
    attempt = 1 + sum(e.kind == "resumed" for e in services.store.events(run.id))
    services.store.reopen_run(run.id)
    try:
        services.runner.submit(run.id, iterations=iterations, attempt=attempt)
    except ApiError as exc:
        services.store.mark_interrupted([run.id], reason=f"it could not be resumed: {exc.message}")
        raise
    return RunCreated(id=run.id, status="queued", links=links(run.id))


@router.get("", response_model=RunList, summary="Runs: filter, search, sort, page (yours; admins: everyone's)")
def list_runs(user: UserDep, services: ServicesDep, query: Annotated[RunsQuery, Query()]) -> RunList:
    """Newest first by default; `sort`/`order` by a column or the cross-validated metric, `status`/`task`/`q` to
    filter, `limit`/`offset` to page (`total` says how many match)."""
    return runs_page(services.store, user, query).as_list()


@router.get("/{run_id}", response_model=RunDetail, summary="A run: status per step, metrics, outputs, Ray job")
def get_run(run: RunDep, services: ServicesDep) -> RunDetail:
    return detail(run, services.runner.job(run))


@router.post("/{run_id}/cancel", status_code=202, response_model=RunSummary, summary="Stop a queued or running run",
             responses={409: {"model": ErrorBody, "description": "the run already ended"}})
def cancel_run(run: RunDep, user: UserDep, services: ServicesDep) -> RunSummary:
    """Steps stop at their next progress report (Ray jobs: the job is stopped); finished steps are kept."""
    services.runner.cancel(run, by=user.user)
    return summary(services.store.get_run(run.id))


@router.get("/{run_id}/result", response_model=SessionSummary,
            summary="The session's result document (the same as `agentml run`'s result.json)")
def run_result(run: RunDep) -> SessionSummary:
    """Task, target, cross-validated metric before and after the OODA loop, iterations, drivers: written when the
    run (and its loop) ended. Its JSON Schema is `agentml schema result`."""
    doc = run.result.get("summary")
    if doc is None:
        hint = ("wait for it to end (GET /v1/runs/{id}/events)" if run.status in ("queued", "running")
                else "only runs that succeeded have one")
        raise ApiError(404, "not_found", f"run {run.id} has no result document ({run.status})", hint=hint)
    return SessionSummary.model_validate(doc)


@router.get("/{run_id}/logs", response_class=PlainTextResponse, summary="The run's log (Ray job: the driver's output)",
            responses={200: {"content": {"text/plain": {}}}})
def run_logs(run: RunDep, services: ServicesDep) -> PlainTextResponse:
    return PlainTextResponse(services.runner.logs(run))


@router.get("/{run_id}/report", response_class=HTMLResponse, summary="The run's HTML report",
            responses={200: {"content": {"text/html": {}}}})
def run_report(run: RunDep, services: ServicesDep) -> HTMLResponse:
    """The self-contained HTML report written by the run's report step."""
    uri = _report_uri(run)
    try:
        body = services.artifacts.get_bytes(uri)
    except (OSError, ValueError):
        raise ApiError(404, "not_found", f"the report of run {run.id} is no longer in the artifact store",
                       hint="run the plan again to rebuild it") from None
    return HTMLResponse(body, headers={"Content-Security-Policy": REPORT_CSP})


def _report_uri(run: RunResult) -> str:
    for step in reversed(list(run.steps.values())):
        uri = (step.outputs or {}).get("uri")
        if step.skill == "report" and step.status == "succeeded" and isinstance(uri, str):
            return uri
    raise ApiError(404, "not_found", f"run {run.id} has no report (yet)",
                   hint="a plan writes one with a `report` step; wait until it succeeded")


@router.get("/{run_id}/events", summary="Step and trial progress as server-sent events",
            response_model=EventList,
            responses={200: {"content": {"text/event-stream": {}, "application/json": {}},
                             "description": "SSE: one `RunEvent` per message (`id` = seq, `event` = kind), then "
                                            "`end`; with stream=false, the events so far as JSON"}})
def run_events(run: RunDep, services: ServicesDep, request: Request,
               after: Annotated[int, Query(ge=0, le=MAX_EVENT_ID, description="only events with seq > after")] = 0,
               stream: Annotated[bool, Query(description="false: answer the events so far as JSON")] = True,
               last_event_id: Annotated[str | None, Header(max_length=20, pattern=r"^\d*$")] = None) -> Any:
    """The run's append-only event log; the stream resumes after `Last-Event-ID` and ends when the run has."""
    last = int(last_event_id or 0)
    if last > MAX_EVENT_ID:
        raise ApiError(400, "bad_request", f"Last-Event-ID {last_event_id} is not an event id of this run: event ids "
                       f"are at most {MAX_EVENT_ID}", hint="send the `id` of the last event you received, or leave "
                       "the header out to start from the first event")
    start = max(after, last)
    if not stream:
        return EventList(events=services.store.events(run.id, after_seq=start))
    return EventSourceResponse(_stream(services.store, run.id, start, request), ping=15)


def _ended(run: RunResult) -> bool:
    """Finished, and no OODA loop still extending it (its iterations arrive as `ooda` events)."""
    ooda = run.result.get("ooda")
    return run.status in FINISHED and not (isinstance(ooda, dict) and ooda.get("status") == "running")


async def _stream(store: RunStore, run_id: str, after: int, request: Request) -> AsyncIterator[dict[str, str]]:
    deadline = time.monotonic() + MAX_STREAM_S
    ended_at: float | None = None
    while time.monotonic() < deadline and not await request.is_disconnected():
        run = await anyio.to_thread.run_sync(store.get_run, run_id)
        events = await anyio.to_thread.run_sync(store.events, run_id, after)
        for ev in events:
            after = ev.seq
            yield {"id": str(ev.seq), "event": ev.kind, "data": ev.model_dump_json()}
        if _ended(run):
            # the final event is written just after the final status: read once more after a poll, then end
            if ended_at is not None and not events:
                yield {"event": "end", "data": json.dumps({"status": run.status})}
                return
            ended_at = ended_at or time.monotonic()
        await anyio.sleep(POLL_S)
