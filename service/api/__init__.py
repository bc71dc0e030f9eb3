"""The planning API and the experiments dashboard (FastAPI): `create_app(settings)`, and `serve(host, port)` for
`agentml serve`. See service/api/README.md for routes, authentication and deployment behind an OIDC proxy."""
from __future__ import annotations

import logging

from service.api.app import create_app
from service.settings import Settings

__all__ = ["create_app", "serve"]

log = logging.getLogger("agentml.api")


def serve(host: str, port: int, settings: Settings | None = None) -> None:
    """Run the API and dashboard with uvicorn until interrupted (what `agentml serve` calls).

    Without a tokens file (AGENTML_TOKENS_FILE) the API makes one admin token for this process and prints it with
    the dashboard's address: local single-user mode, still never unauthenticated.
    """
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    token = app.state.services.tokens.default_token
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    if token is not None:
        roles = ", ".join(app.state.services.tokens.authenticate(token).principal.roles)
        print(f"agentml: no tokens file (AGENTML_TOKENS_FILE): this process's admin token (roles: {roles}) is\n"
              f"    {token}\n"
              f"agentml: dashboard at http://{shown}:{port}/ (log in with the token)", flush=True)
    else:
        print(f"agentml: dashboard at http://{shown}:{port}/", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=20)
