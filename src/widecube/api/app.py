"""The FastAPI application: thin routes over :class:`widecube.query.Widecube`, and the UI.

Route handlers only translate HTTP to library calls; every :class:`WidecubeError` is
rendered by one handler with its status (404 for unknown datasets and versions, 422 for
unknown genes, groupbys and stats, 406 for a format a route cannot produce, 409 for a
refused publish or rollback or an archived version, 410 for a version garbage collection
removed, 503 for a version out of service because a file of it failed
its checksum, 400 for other refusals). OpenAPI lives at ``/docs``, the web UI
at ``/``.

``create_app`` is also an app factory for ``uvicorn --factory`` (settings from the
``WIDECUBE_*`` environment), which is how ``widecube serve --workers N`` starts each worker.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES
from starlette.requests import ClientDisconnect

from .._version import __version__
from ..access import Actor, Governance, Identities, oidc_login, oidc_verifier
from ..config import Settings
from ..errors import (
    AuthenticationFailed,
    CatalogError,
    InvalidQuery,
    NotFound,
    PermissionDenied,
    SnapshotCorrupt,
    UnsupportedEncoding,
    VersionGone,
    WidecubeError,
)
from ..pipeline import Jobs
from ..query import Widecube
from ..web import mount_ui
from . import _access, _admin, _analysis, _datasets, _genes, _housekeeping, _jobs, _lake, _onthefly, _uploads
from ._docs import install_docs
from ._gzip import FastGZipMiddleware
from ._jobmodels import public_text
from ._responses import ARROW, JSON, NotAcceptable, clip, errors, short
from ._security import install_security, rate_limit
from ._upkeep import Upkeep, Usage
from .models import MAX_BODY_BYTES

__all__ = ["create_app"]

log = logging.getLogger("widecube.api")

PREFIX = _datasets.PREFIX
_SERVER = Actor.server()


def _status(exc: WidecubeError) -> int:
    if isinstance(exc, AuthenticationFailed):
        return 401
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, VersionGone):  # existed once: not the caller's typo
        return 410
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, InvalidQuery):
        return 422
    if isinstance(exc, NotAcceptable):
        return 406
    if isinstance(exc, CatalogError):
        return 409
    if isinstance(exc, SnapshotCorrupt | UnsupportedEncoding):  # out of service, not the caller's fault
        return 503
    return 400


def _allowed(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document lists for ``path`` (for a 405's ``Allow``; Starlette
    names only those of the first route that matched, e.g. GET of a path with GET and POST)."""
    table: list[tuple[re.Pattern[str], list[str]]] | None = getattr(app.state, "allow_table", None)
    if table is None:
        table = [
            (
                re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(p)) + "$"),
                sorted(m.upper() for m in ops),
            )
            for p, ops in app.openapi()["paths"].items()
        ]
        app.state.allow_table = table
    exact = [methods for pattern, methods in table if pattern.pattern == "^" + re.escape(path) + "$"]
    if exact:  # /uploads/resumable, not /uploads/{upload_id}
        return exact[0]
    return sorted({m for pattern, methods in table if pattern.match(path) for m in methods})


def create_app(
    settings: Settings | None = None,
    *,
    service: Widecube | None = None,
    upkeep: bool = True,
    upkeep_interval: float = 10.0,
    evict_after: float = 300.0,
    jobs: bool | None = None,
) -> FastAPI:
    """Build the app; the service (catalog + snapshots) is opened once per app (per process).

    With ``upkeep`` a background thread warms each newly live version into the decoded cache
    and evicts versions retired for ``evict_after`` seconds (see ``_upkeep``).

    With ``jobs`` (default: the ``serve_jobs`` setting) waiting ingest jobs, such as uploads,
    run in a separate ``widecube work`` process that the app starts, restarts when it dies and
    stops on shutdown (``pipeline.Jobs.supervisor``): a job that crashes its worker never takes
    the server down. With several server processes each supervises one; the catalog's job
    claims keep them from running a job twice. On start, the folders of killed jobs that will
    never resume are removed (``pipeline.Jobs.reclaim_orphans``).
    """
    wc = service or Widecube(settings)
    usage = Usage()
    jobs_facade = Jobs(wc.settings, wc.catalog)
    keeper = Upkeep(
        wc,
        usage,
        jobs=jobs_facade,
        interval=upkeep_interval,
        grace=evict_after,
        gc_interval=wc.settings.gc_interval,
    )
    worker = jobs_facade.supervisor(actor=_SERVER)
    run_jobs = wc.settings.serve_jobs if jobs is None else jobs

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if upkeep:
            keeper.start()
        if run_jobs:
            try:
                await to_thread.run_sync(lambda: jobs_facade.reclaim_orphans(actor=_SERVER))
            except Exception:  # the catalog is away: serving matters more; the worker retries
                log.exception("could not reclaim the folders of killed jobs")
            worker.start()
        yield
        await to_thread.run_sync(worker.stop)
        keeper.stop()
        wc.close()

    # every route may answer 401 (a credential that is not valid) and 403 (a role or the CSRF
    # header missing): the door decides in the facades, whatever the route
    app = FastAPI(
        title="widecube",
        version=__version__,
        lifespan=lifespan,
        default_response_class=JSON,
        responses=errors(401, 403),
        dependencies=[Depends(rate_limit)],
        docs_url=None,  # served by _docs from a package's copy of Swagger UI, not a CDN
        redoc_url=None,
    )
    app.state.widecube = wc
    app.state.usage = usage
    app.state.upkeep = keeper
    app.state.jobs = jobs_facade
    verifier = oidc_verifier(wc.settings)
    app.state.identities = Identities(wc.catalog, wc.settings, oidc=verifier)
    app.state.oidc_login = oidc_login(wc.settings, verifier)
    app.state.governance = Governance(wc.catalog, auth=wc.settings.auth, door=wc.door)
    # JSON (and the UI's text assets) are gzipped for clients that accept it, by ISA-L (_gzip) at
    # level 1: numeric JSON shrinks ~2-3× already and higher levels cost ms per 100 KB. Arrow is
    # sent as is: it is compact and clients want its buffers without inflating them.
    # Bodies under 1 MiB are compressed on the event loop: a thread hop costs more than that.
    app.add_middleware(
        FastGZipMiddleware,
        minimum_size=1024,
        compresslevel=1,
        thread_minimum_size=1 << 20,
        exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES, ARROW),
    )
    install_security(app, wc.settings)  # headers, CORS, rate limit (added last: outside gzip)

    # Every error is {"detail": "one line"} (models.Problem, as the OpenAPI document says),
    # and echoes what was sent cut to 80 characters (_responses.clip): never a 30 MB gene name.
    @app.exception_handler(WidecubeError)
    async def _widecube_error(request: Request, exc: WidecubeError) -> Response:
        status = _status(exc)
        headers = {"WWW-Authenticate": 'Bearer realm="widecube"'} if status == 401 else None
        # never a server path: absolute paths are cut to their last part (the user's file name)
        return JSONResponse(
            {"detail": clip(public_text(str(exc)) or "")}, status_code=status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        parts = [f"{'.'.join(short(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10]]
        return JSONResponse({"detail": clip("; ".join(parts))}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Allow: every method of the path, not of one route of it
            headers["Allow"] = ", ".join(_allowed(app, request.url.path)) or headers.get("Allow", "")
        if exc.status_code == 304 or exc.status_code < 200:
            return Response(status_code=exc.status_code, headers=headers)
        return JSONResponse({"detail": clip(str(exc.detail))}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        # the client left mid-request (an upload cut off): nothing to answer, nothing went wrong
        log.info("%s %s: the client disconnected", request.method, request.url.path)
        return Response(status_code=400)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:  # on the event loop: answered even when every thread computes
        return {"status": "ok", "version": __version__}

    app.include_router(_datasets.router)
    app.include_router(_analysis.router, prefix=PREFIX)
    app.include_router(_genes.router, prefix=PREFIX)
    app.include_router(_onthefly.router, prefix=PREFIX)
    app.include_router(_admin.router, max_body_size=MAX_BODY_BYTES, responses=errors(400, 404, 409, 413, 422))
    app.include_router(_jobs.router, responses=errors(400, 404, 422))
    app.include_router(_access.router, max_body_size=MAX_BODY_BYTES, responses=errors(400, 404, 413, 422))
    app.include_router(_uploads.router, responses=errors(404))
    install_docs(app)
    app.include_router(_lake.router)
    app.include_router(_lake.admin_router)
    app.include_router(
        _housekeeping.router, max_body_size=MAX_BODY_BYTES, responses=errors(400, 404, 409, 413, 422)
    )
    mount_ui(app)
    return app
