"""The FastAPI application: thin routes over :class:`widecube.service.Widecube`, and the UI.

Route handlers only translate HTTP to library calls; every :class:`WidecubeError` is
rendered by one handler with its status (404 for unknown datasets and versions, 422 for
unknown genes, groupbys and stats, 406 for a format a route cannot produce, 409 for a
refused publish or rollback, 503 for a version out of service because a file of it failed
its checksum, 400 for other refusals). OpenAPI lives at ``/docs``, the web UI
at ``/``.

``create_app`` is also an app factory for ``uvicorn --factory`` (settings from the
``WIDECUBE_*`` environment), which is how ``widecube serve --workers N`` starts each worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES

from .. import __version__
from ..config import Settings
from ..errors import CatalogError, InvalidQuery, NotFound, SnapshotCorrupt, WidecubeError
from ..pipeline import JobRunner, JobWorker
from ..service import Widecube
from ..web import mount_ui
from . import _admin, _datasets, _jobs, _uploads
from ._analysis import analysis_router
from ._genes import genes_router
from ._gzip import FastGZipMiddleware
from ._responses import ARROW, JSON, NotAcceptable
from ._upkeep import Upkeep, Usage

__all__ = ["create_app"]

PREFIX = _datasets.PREFIX


def _status(exc: WidecubeError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, InvalidQuery):
        return 422
    if isinstance(exc, NotAcceptable):
        return 406
    if isinstance(exc, CatalogError):
        return 409
    if isinstance(exc, SnapshotCorrupt):
        return 503
    return 400


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

    With ``jobs`` (default: the ``serve_jobs`` setting) a background thread runs waiting ingest
    jobs, such as uploads (``pipeline.JobWorker``); with several server processes each runs
    one, and the catalog's job claims keep them from running a job twice.
    """
    wc = service or Widecube(settings)
    usage = Usage()
    keeper = Upkeep(wc, usage, interval=upkeep_interval, grace=evict_after)
    runner = JobRunner(wc.settings, wc.catalog)
    worker = JobWorker(runner, poll=wc.settings.job_poll)
    run_jobs = wc.settings.serve_jobs if jobs is None else jobs

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if upkeep:
            keeper.start()
        if run_jobs:
            worker.start()
        yield
        worker.stop()
        keeper.stop()
        wc.close()

    app = FastAPI(title="widecube", version=__version__, lifespan=lifespan,
                  default_response_class=JSON)  # fmt: skip
    app.state.widecube = wc
    app.state.usage = usage
    app.state.upkeep = keeper
    app.state.jobs = runner
    # JSON (and the UI's text assets) are gzipped for clients that accept it, by ISA-L (_gzip) at
    # level 1: numeric JSON shrinks ~2-3× already and higher levels cost ms per 100 KB. Arrow is
    # sent as is: it is compact and clients want its buffers without inflating them.
    # Bodies under 1 MiB are compressed on the event loop: a thread hop costs more than that.
    app.add_middleware(FastGZipMiddleware, minimum_size=1024, compresslevel=1, thread_minimum_size=1 << 20,
                       exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES, ARROW))  # fmt: skip

    @app.exception_handler(WidecubeError)
    async def _widecube_error(request: Request, exc: WidecubeError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=_status(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        parts = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.include_router(_datasets.router)
    app.include_router(analysis_router(wc), prefix=PREFIX)
    app.include_router(genes_router(wc), prefix=PREFIX)
    app.include_router(_admin.router)
    app.include_router(_jobs.router)
    app.include_router(_uploads.router)
    mount_ui(app)
    return app
