"""Every error the API answers with, in one shape, and the one place where domain errors become HTTP statuses.

Body of every 4xx/5xx: `{"error": {"type", "message", "hint", "problems": [...], "candidates": [...]}}`. Routes raise
agentml errors (any `AgentmlError`: its category gives the status, `STATUS`, its `code` the type) or ApiError;
`install` maps them here. A 500
never shows a stack trace: it names an error id that the server log has.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from governance import AgentmlError, Category

log = logging.getLogger("agentml.api")


class Problem(BaseModel):
    """One thing wrong with a request or a plan: where (`step`, `field`), what, and how to fix it."""

    model_config = ConfigDict(extra="ignore")
    step: str | None = None
    field: str | None = None
    kind: str = ""
    message: str
    hint: str = ""


class ErrorDetail(BaseModel):
    """What went wrong, why, and how to fix it."""

    type: str = Field(description="machine-readable kind: unauthenticated, forbidden, not_found, plan_invalid, ...")
    message: str
    hint: str | None = None
    problems: list[Problem] = Field(default_factory=list)
    candidates: list[str] = Field(default_factory=list, description="what the caller may pick, when ambiguous")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class ApiError(Exception):
    """An HTTP-level refusal: `status`, a `type`, a message and a hint."""

    def __init__(self, status: int, type_: str, message: str, *, hint: str | None = None,
                 problems: list[Problem] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.hint = hint
        self.problems = problems or []
        self.headers = headers

    def __str__(self) -> str:
        return f"{self.message} Hint: {self.hint}" if self.hint else self.message


def error_response(status: int, detail: ErrorDetail, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON response for `detail`."""
    return JSONResponse(ErrorBody(error=detail).model_dump(mode="json"), status_code=status, headers=headers)


def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    if exc.status == 401:
        exc.headers = {"WWW-Authenticate": "Bearer", **(exc.headers or {})}
    return error_response(exc.status, ErrorDetail(type=exc.type, message=exc.message, hint=exc.hint,
                                                  problems=exc.problems), exc.headers)


# The one mapping of error categories to HTTP statuses.
STATUS: dict[Category, int] = {"bad_input": 422, "not_found": 404, "policy": 403, "run_failed": 409,
                               "unavailable": 503}


def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AgentmlError)
    problems = [Problem.model_validate(p) for p in exc.details()]
    return error_response(STATUS[exc.category], ErrorDetail(type=exc.code, message=exc.message, hint=exc.hint,
                                                            problems=problems,
                                                            candidates=getattr(exc, "candidates", [])))


def _loc(loc: Any) -> str:
    return ".".join(str(p) for p in loc if p not in ("body",)) or "body"


def _request_invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [Problem(field=_loc(e.get("loc", ())), kind="request", message=str(e.get("msg", "invalid value")),
                        hint=_type_hint(e)) for e in exc.errors()]
    return error_response(422, ErrorDetail(type="request_invalid", message="the request is not valid",
                                           hint="see the problems; the schema is at /docs", problems=problems))


def _type_hint(error: dict[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    if "expected" in ctx:
        return f"expected {ctx['expected']}"
    if "pattern" in ctx:
        return f"must match {ctx['pattern']}"
    return ""


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kinds = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated", 403: "forbidden"}
    return error_response(exc.status_code, ErrorDetail(type=kinds.get(exc.status_code, "http"),
                                                       message=str(exc.detail)), getattr(exc, "headers", None))


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    error_id = uuid.uuid4().hex[:12]
    log.error("unexpected error %s", error_id, exc_info=exc)
    return error_response(500, ErrorDetail(type="internal", message=f"internal error {error_id}",
                                           hint="this is a bug: report the error id to the operators"))


HANDLERS = {
    ApiError: _api_error, AgentmlError: _domain_error, RequestValidationError: _request_invalid,
    StarletteHTTPException: _http_error, Exception: _unexpected,
}

# documented on every route that can answer with them
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no or bad bearer token"},
    422: {"model": ErrorBody, "description": "invalid request, with every problem"},
}


def install(app: FastAPI) -> None:
    """Map every domain error to its HTTP status (the one place that does)."""
    for error, handler in HANDLERS.items():
        app.add_exception_handler(error, handler)
