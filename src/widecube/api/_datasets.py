"""Read routes: datasets, versions, genes, summaries and embeddings.

Each handler turns HTTP into one :class:`~widecube.service.Widecube` call and hands the
result to :func:`respond` (format, ETag, 304, cache headers). A request pins a version with
``version`` (query string, or the body of ``POST /summary``); pinned responses are cached
for ever, live ones are revalidated (see ``_responses``).

Handlers whose work is a sub-millisecond lookup in memory-mapped arrays are ``async``: they
run on the event loop, because handing them to the thread pool and back costs more than the
work itself (GIL hand-offs). The embedding handler, which may serialise millions of values,
stays in the thread pool, as do ``/aggregate`` and ``/expression``, which compute over the
gene-major view (their kernels release the GIL).

``POST /aggregate`` and ``POST /expression`` are cached like GETs: the ETag digests the JSON
body (``body_key``), a body that pins ``version`` is ``immutable``, ``If-None-Match`` is 304.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from ..service import Widecube
from . import _arrow
from ._responses import body_key, respond
from .models import (
    AggregateRequest,
    AggregateResponse,
    DatasetDetail,
    DatasetSummary,
    EmbeddingList,
    EmbeddingResponse,
    ExpressionRequest,
    ExpressionResponse,
    GeneList,
    SummaryRequest,
    SummaryResponse,
    VersionInfo,
)

__all__ = ["PREFIX", "router"]

PREFIX = "/api/v1"
router = APIRouter(prefix=PREFIX)
_DEFAULT_STATS = ["mean", "frac_expressing"]
_OPTIONAL = ("aggregate", "expression")  # routes that arrive with the gene-major view


async def _service(request: Request) -> Widecube:  # async: no thread hop per request
    wc: Widecube = request.app.state.widecube
    return wc


WC = Annotated[Widecube, Depends(_service)]
Version = Annotated[str | None, Query(description="pin a version; default: the live one")]


@router.get("/features")
async def features(request: Request) -> dict[str, bool]:
    """Which optional routes this server has; the web UI lights up panels by it."""
    paths = set(_paths(request.app.routes))
    return {name: f"{PREFIX}/datasets/{{name}}/{name}" in paths for name in _OPTIONAL}


def _paths(routes: Iterable[object]) -> Iterator[str]:
    """Every route path, into included routers too (FastAPI ≥ 0.16x keeps them as a wrapper
    around the ``original_router``, whose routes carry the paths of routers with a prefix)."""
    for route in routes:
        path = getattr(route, "path", None)
        if isinstance(path, str) and path:
            yield path
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _paths(inner.routes)


@router.get("/datasets", response_model=list[DatasetSummary])
async def list_datasets(request: Request, wc: WC) -> Response:
    found = wc.datasets()
    key = tuple((d["name"], d["version"]) for d in found)
    return respond(request, found, version="catalog", key=key, pinned=False, track=False,
                   arrow=lambda: _arrow.records_table(found))  # fmt: skip


@router.get("/datasets/{name}", response_model=DatasetDetail)
async def get_dataset(request: Request, name: str, wc: WC, version: Version = None) -> Response:
    detail = wc.dataset(name, version)
    return respond(request, detail, version=detail["version"], key=("dataset", name),
                   pinned=version is not None)  # fmt: skip


@router.get("/datasets/{name}/versions", response_model=list[VersionInfo])
async def list_versions(request: Request, name: str, wc: WC) -> Response:
    found = wc.versions(name)
    key = ("versions", name, tuple((v["version"], v["status"]) for v in found))
    return respond(request, found, version="catalog", key=key, pinned=False, track=False,
                   arrow=lambda: _arrow.records_table(found))  # fmt: skip


@router.get("/datasets/{name}/genes", response_model=GeneList)
async def list_genes(
    request: Request,
    name: str,
    wc: WC,
    prefix: str = "",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 20,
    version: Version = None,
) -> Response:
    resolved, genes = wc.genes(name, prefix, limit, version)
    return respond(request, {"genes": genes}, version=resolved, key=("genes", prefix, limit),
                   pinned=version is not None,
                   arrow=lambda: _arrow.genes_table(genes, dataset=name, version=resolved))  # fmt: skip


def _summary(request: Request, wc: Widecube, name: str, genes: list[str], groupby: str,
             stats: list[str], layer: str | None, version: str | None) -> Response:  # fmt: skip
    result = wc.summary(name, genes=genes, groupby=groupby, stats=stats, layer=layer, version=version)
    return respond(request, result, version=result["version"],
                   key=("summary", tuple(genes), groupby, tuple(stats), result["layer"]),
                   pinned=version is not None, arrow=lambda: _arrow.summary_table(result))  # fmt: skip


@router.post("/datasets/{name}/summary", response_model=SummaryResponse)
async def summary(request: Request, name: str, body: SummaryRequest, wc: WC) -> Response:
    """Per-group statistics of genes (JSON body; see ``GET`` for a cacheable URL)."""
    return _summary(request, wc, name, body.genes, body.groupby, body.stats, body.layer, body.version)


@router.get("/datasets/{name}/summary", response_model=SummaryResponse)
async def summary_get(
    request: Request,
    name: str,
    wc: WC,
    genes: Annotated[list[str], Query(min_length=1, max_length=5000, description="repeat: genes=A&genes=B")],
    groupby: str,
    stats: Annotated[list[str] | None, Query(description="repeatable; default mean, frac_expressing")] = None,
    layer: Annotated[str | None, Query(description="raw or normalized; default: the dataset's")] = None,
    version: Version = None,
) -> Response:
    """The same as ``POST /summary``, as a URL that browsers and proxies can cache."""
    return _summary(request, wc, name, genes, groupby, stats or _DEFAULT_STATS, layer, version)


@router.post("/datasets/{name}/aggregate", response_model=AggregateResponse)
def aggregate(request: Request, name: str, body: AggregateRequest, wc: WC) -> Response:
    """The summary of genes over the cells a filter keeps (any subset), exactly: the shape
    of ``/summary`` plus ``filter``, ``cells`` and ``source``. Groups the filter empties have
    ``n_cells`` 0, sums and counts 0, other stats null."""
    result = wc.aggregate(name, genes=body.genes, groupby=body.groupby, filter=body.filter,
                          stats=body.stats, layer=body.layer, version=body.version)  # fmt: skip
    return respond(request, result, version=result["version"], key=body_key("aggregate", body),
                   pinned=body.version is not None, arrow=lambda: _arrow.summary_table(result))  # fmt: skip


@router.post("/datasets/{name}/expression", response_model=ExpressionResponse)
def expression(request: Request, name: str, body: ExpressionRequest, wc: WC) -> Response:
    """Per-cell values of genes (float32, obs order) over the cells a filter keeps."""
    result = wc.expression(name, genes=body.genes, filter=body.filter, layer=body.layer, version=body.version)
    return respond(request, result, version=result["version"], key=body_key("expression", body),
                   pinned=body.version is not None,
                   arrow=lambda: _arrow.expression_table(result))  # fmt: skip


@router.get("/datasets/{name}/embedding", response_model=EmbeddingList)
async def list_embeddings(request: Request, name: str, wc: WC, version: Version = None) -> Response:
    found = wc.embeddings(name, version)
    return respond(request, found, version=found["version"], key=("embeddings", name),
                   pinned=version is not None)  # fmt: skip


@router.get("/datasets/{name}/embedding/{key}", response_model=EmbeddingResponse)
def embedding(
    request: Request,
    name: str,
    key: str,
    wc: WC,
    color: Annotated[str | None, Query(description="an obs column, or a gene")] = None,
    version: Version = None,
) -> Response:
    """Coordinates of obsm ``key`` per cell, and one value per cell to colour by."""
    result = wc.embedding(name, key, color=color, version=version)
    return respond(request, result, version=result["version"], key=("embedding", key, color),
                   pinned=version is not None, arrow=lambda: _arrow.embedding_table(result))  # fmt: skip
