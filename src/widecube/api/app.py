"""The FastAPI application: thin routes over :class:`widecube.service.Widecube`.

Route handlers only translate HTTP to library calls; every :class:`WidecubeError` is
rendered by one handler with its status (404 for unknown datasets and versions, 422 for
unknown genes, groupbys and stats, 400 for other refusals). OpenAPI lives at ``/docs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from .. import __version__
from ..config import Settings
from ..errors import InvalidQuery, NotFound, WidecubeError
from ..service import Widecube
from ._analysis import analysis_router
from ._responses import JSON, respond
from .models import (
    DatasetDetail,
    DatasetSummary,
    GeneList,
    SummaryRequest,
    SummaryResponse,
    VersionInfo,
)

__all__ = ["create_app"]

PREFIX = "/api/v1"


def _status(exc: WidecubeError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, InvalidQuery):
        return 422
    return 400


def create_app(settings: Settings | None = None, *, service: Widecube | None = None) -> FastAPI:
    """Build the app; the service (catalog + snapshots) is opened once per app."""
    wc = service or Widecube(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        wc.close()

    app = FastAPI(title="widecube", version=__version__, lifespan=lifespan,
                  default_response_class=JSON)  # fmt: skip
    app.state.widecube = wc

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

    @app.get(f"{PREFIX}/datasets", response_model=list[DatasetSummary])
    def list_datasets() -> Response:
        return JSON(wc.datasets())

    @app.get(f"{PREFIX}/datasets/{{name}}", response_model=DatasetDetail)
    def get_dataset(request: Request, name: str, version: str | None = None) -> Response:
        detail = wc.dataset(name, version)
        return respond(request, detail, version=detail["version"], key=("dataset", name))

    @app.get(f"{PREFIX}/datasets/{{name}}/versions", response_model=list[VersionInfo])
    def list_versions(name: str) -> Response:
        records = wc.catalog.versions(name)
        current = next((r.version for r in records if r.status == "published"), None)
        return JSON([
            {"version": r.version, "status": str(r.status), "created": r.created,
             "n_cells": r.n_cells, "n_genes": r.n_genes, "reason": r.reason,
             "current": r.version == current}
            for r in records
        ])  # fmt: skip

    @app.get(f"{PREFIX}/datasets/{{name}}/genes", response_model=GeneList)
    def list_genes(
        request: Request,
        name: str,
        prefix: str = "",
        limit: Annotated[int, Query(ge=1, le=10_000)] = 20,
        version: str | None = None,
    ) -> Response:
        resolved, genes = wc.genes(name, prefix, limit, version)
        return respond(request, {"genes": genes}, version=resolved, key=("genes", prefix, limit))

    @app.post(f"{PREFIX}/datasets/{{name}}/summary", response_model=SummaryResponse)
    def summary(request: Request, name: str, body: SummaryRequest) -> Response:
        result = wc.summary(name, genes=body.genes, groupby=body.groupby, stats=body.stats,
                            layer=body.layer, version=body.version)  # fmt: skip
        key = ("summary", tuple(body.genes), body.groupby, tuple(body.stats), result["layer"])
        return respond(request, result, version=result["version"], key=key)

    app.include_router(analysis_router(wc), prefix=PREFIX)
    return app
