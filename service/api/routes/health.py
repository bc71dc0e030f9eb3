"""Probes for Kubernetes: /healthz (the process answers) and /readyz (warehouse, run store and Ray are usable).
Neither needs a token: probes carry none, and they reveal nothing but ok / not ok."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.deps import ServicesDep
from service.api.models import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, summary="Readiness: warehouse loaded, run store and Ray reachable",
            responses={503: {"model": Ready, "description": "not ready; each check says why"}})
def readyz(services: ServicesDep) -> JSONResponse:
    checks = services.readiness()
    ready = all(v == "ok" for v in checks.values())
    body = Ready(status="ready" if ready else "not_ready", checks=checks, runner=services.runner.name)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
