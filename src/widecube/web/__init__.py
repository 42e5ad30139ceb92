"""The web UI: static files shipped inside the package, served by the API's own server.

``index.html`` is answered at ``/`` and the assets under ``/static`` (ES modules, CSS, and
a vendored copy of Apache Arrow's JS reader), so the UI needs no separate server, no build
step and no network at run time. Assets are revalidated on every load (``no-cache`` with
ETag/Last-Modified): their URLs carry no content hash, so caching them for ever would serve
stale code after an upgrade.

    >>> mount_ui(app)   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

__all__ = ["STATIC", "mount_ui"]

STATIC = Path(__file__).parent / "static"
_REVALIDATE = {"Cache-Control": "no-cache"}


class _RevalidatedFiles(StaticFiles):
    """StaticFiles whose responses must be revalidated (see the module docstring)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"cache-control", b"no-cache"))
            await send(message)

        await super().__call__(scope, receive, send_with_header)


def mount_ui(app: FastAPI) -> None:
    """Serve the UI at ``/`` and its assets at ``/static`` on ``app``."""

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=_REVALIDATE)

    app.mount("/static", _RevalidatedFiles(directory=STATIC), name="static")
