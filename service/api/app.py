"""The FastAPI app factory: `create_app(settings)` wires services, routes, error mapping and the dashboard."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from service.api import errors
from service.api.docs import install_docs
from service.api.routes import dashboard, health, meta, plans, runs, scoring, tracker
from service.api.services import Services
from service.settings import Settings
from skills.registry import Registry

STATIC = Path(__file__).resolve().parent / "static"
DESCRIPTION = """Governed, agentic machine learning: a prompt becomes a validated skill DAG over the data the caller
may see, runs on Ray, and comes back as a tuned, explained XGBoost model.

Every `/v1` route needs `Authorization: Bearer <token>`; the principal (user, roles, attributes) comes only from the
token. Errors answer `{"error": {"type", "message", "hint", "problems", "candidates"}}`. The dashboard is at `/`."""
TAGS = [
    {"name": "plans", "description": "prompt -> validated plan"},
    {"name": "runs", "description": "start, follow, cancel runs; reports and logs"},
    {"name": "meta", "description": "skills, catalog, identity, audit log"},
    {"name": "health", "description": "probes (no token)"},
]


def create_app(settings: Settings | None = None, *, registry: Registry | None = None) -> FastAPI:
    """The API and dashboard for `settings` (default: `Settings()` from AGENTML_* variables).

    `registry` replaces the default skill registry (skill packs are already in it). Services start with the app
    (lifespan) and stop with it.
    """
    services = Services(settings or Settings(), registry=registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        services.start()
        try:
            yield
        finally:
            services.close()

    app = FastAPI(title="agentml", version="0.1.0", description=DESCRIPTION, openapi_tags=TAGS, lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # served offline by install_docs
    app.state.services = services
    errors.install(app)
    for module in (health, plans, runs, scoring, tracker, meta, dashboard):
        app.include_router(module.router)
    install_docs(app)  # before /static: its assets live under /static/docs
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
