"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served with
no network: their scripts, styles and icon come from the ``fastapi-offline`` package's copy
of the Swagger UI and ReDoc bundles, under ``/docs/static``, instead of a CDN, so the pages
work on a laptop without internet and behind a firewall, and their Content-Security-Policy
(:data:`widecube.api._security.DOCS_CSP`) allows no other origin. The pages are FastAPI's own
(``get_swagger_ui_html``, ``get_redoc_html``), as in FastAPI's recipe for self-hosted docs.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS", "install_docs"]

ASSETS = "/docs/static"
"""Where the bundled Swagger UI and ReDoc files are served."""


def _static() -> Path:
    """The folder of Swagger UI and ReDoc files shipped by ``fastapi-offline``."""
    return Path(str(files("fastapi_offline") / "static"))


def install_docs(app: FastAPI) -> None:
    """``/docs``, ``/docs/oauth2-redirect`` and ``/redoc`` on an app created with
    ``docs_url=None, redoc_url=None``, their assets under :data:`ASSETS`."""
    title = f"{app.title} API"
    app.mount(ASSETS, StaticFiles(directory=_static()), name="docs-static")

    # plain routes, as FastAPI's own docs routes are: pages with no data, outside the app's
    # dependencies (no caller is looked at, so a bad credential does not hide the docs)
    async def swagger(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=str(app.openapi_url),
            title=title,
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=str(app.openapi_url),
            title=title,
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    app.add_route("/docs", swagger, include_in_schema=False)
    app.add_route("/docs/oauth2-redirect", oauth2_redirect, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
