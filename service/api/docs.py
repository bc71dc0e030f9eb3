"""`/docs` and `/redoc` that work offline: Swagger UI (5.x, which renders FastAPI's OpenAPI 3.1) and ReDoc come from
the `fastapi-offline` PyPI package's files, served by this app; FastAPI's defaults load them from a CDN, so the pages
were blank without internet. (`swagger-ui-bundle` ships Swagger UI 4.15, which refuses OpenAPI 3.1.)"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/static/docs"


def assets_dir() -> Path:
    """The folder of Swagger UI's and ReDoc's files inside the installed `fastapi-offline` package."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static"


def install_docs(app: FastAPI) -> None:
    """Serve the assets under ASSETS and the pages at `/docs` and `/redoc` (the app is built with both set to None)."""
    app.mount(ASSETS, StaticFiles(directory=str(assets_dir())), name="docs-assets")
    openapi = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi, title=f"{app.title} API",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi, title=f"{app.title} API",
                              redoc_js_url=f"{ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS}/favicon.png", with_google_fonts=False)
