"""Read routes: datasets, versions, genes, summaries and embeddings.

Each handler turns HTTP into one :class:`~widecube.query.Widecube` call and hands the
result to :func:`respond` (format, ETag, 304, cache headers). A request pins a version with
``version`` (query string, or the body of ``POST /summary``); pinned responses are cached
for ever, live ones are revalidated (see ``_responses``).

Every handler but ``/features`` is a plain ``def``: FastAPI runs it in its thread pool, so a
heavy query (5,000 genes, many stats, a first decode into the cache) never holds the event
loop, and a health probe or a small query is answered meanwhile. The hop adds a little
latency to each request (not re-measured with this change: see ``make bench-serve``); a
blocked event loop costs every other request the whole query.

``POST /aggregate`` and ``POST /expression`` are cached like GETs: the ETag digests the JSON
body (``body_key``), a body that pins ``version`` is ``immutable``, ``If-None-Match`` is 304.
``POST /summary`` and ``POST /genes/stats`` are the GET queries with a JSON body (5,000 gene
names do not fit in a URL): same answer, same ETag as the GET.

Every parameter is bounded (``models``: lengths of lists and strings, dataset names as ingest
allows them); JSON bodies are at most ``MAX_BODY_BYTES`` (413 beyond).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from ..access import Actor
from ..errors import InvalidQuery
from ..query import Widecube
from . import _arrow
from ._deps import WC, Caller
from ._responses import body_key, documented, respond
from .models import (
    DATASET_PATTERN,
    MAX_BODY_BYTES,
    MAX_GENES,
    MAX_STATS,
    AggregateRequest,
    AggregateResponse,
    DatasetDetail,
    DatasetSummary,
    EmbeddingList,
    EmbeddingResponse,
    ExpressionRequest,
    ExpressionResponse,
    Facet,
    GeneList,
    SummaryRequest,
    SummaryResponse,
    VersionInfo,
    facet_filters,
)
from .models import ColumnName as ColumnText
from .models import Name as NameText

__all__ = ["PREFIX", "Column", "DatasetName", "FromRelease", "Layer", "Pinned", "Version", "pick", "router"]

PREFIX = "/api/v1"
router = APIRouter(prefix=PREFIX, max_body_size=MAX_BODY_BYTES)
_DEFAULT_STATS = ["mean", "frac_expressing"]
_OPTIONAL = ("aggregate", "expression")  # routes that arrive with the gene-major view


Version = Annotated[NameText | None, Query(description="pin a version; default: the live one")]
DatasetName = Annotated[str, Path(pattern=DATASET_PATTERN, description="the dataset", examples=["pbmc"])]
Column = Annotated[ColumnText, Query(examples=["cell_type"])]
Release = Annotated[
    NameText | None,
    Query(description="read the version this release names (see /releases); it never changes"),
]


async def _released(name: DatasetName, wc: WC, actor: Caller, release: Release = None) -> str | None:
    """The version of dataset ``name`` that the request's ``release`` names (None without one);
    on the event loop only when there is nothing to look up."""
    if release is None:
        return None
    return await to_thread.run_sync(lambda: wc.release_version(release, name, actor=actor))


FromRelease = Annotated[str | None, Depends(_released)]
"""The version a request's ``release=NAME`` names (a POST route combines it with its body's)."""


def pick(version: str | None, released: str | None) -> str | None:
    """The version a request reads: ``version`` or the release's (both: they must agree)."""
    if released is None:
        return version
    if version is not None and version != released:
        raise InvalidQuery(f"version {version} is not the version the release names ({released})")
    return released


async def _pinned(released: FromRelease, version: Version = None) -> str | None:
    return pick(version, released)


Pinned = Annotated[str | None, Depends(_pinned)]
"""The version a GET request reads: ``version=``, or the one ``release=`` names (None: live)."""
Layer = Annotated[
    NameText | None, Query(description="input (the values as given) or normalized; default: the dataset's")
]


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


@router.get("/datasets", response_model=list[DatasetSummary], responses=documented(422, arrow=True))
def list_datasets(
    request: Request,
    wc: WC,
    actor: Caller,
    organism: Facet,
    tissue: Facet,
    assay: Facet,
    disease: Facet,
    tag: Facet,
    q: Annotated[
        str, Query(max_length=500, description="full-text search of the metadata (see /search)")
    ] = "",
) -> Response:
    """The live datasets the caller may read; with ``q`` or a facet, those a search finds
    (``GET /search`` answers the same hits with their metadata and the facet counts)."""
    wanted = facet_filters(organism=organism, tissue=tissue, assay=assay, disease=disease, tag=tag)
    found: list[Any]
    if q or wanted:
        hits = wc.search(q, wanted, actor=actor)["datasets"]
        found = [{k: v for k, v in h.items() if k != "metadata"} for h in hits]
    else:
        found = wc.datasets(actor=actor)
    key = tuple((d["name"], d["version"]) for d in found)
    return respond(
        request,
        found,
        version="catalog",
        key=key,
        pinned=False,
        track=False,
        arrow=lambda: _arrow.records_table(found),
    )


@router.get("/datasets/{name}", response_model=DatasetDetail, responses=documented(404, 422))
def get_dataset(
    request: Request, name: DatasetName, wc: WC, actor: Caller, version: Pinned = None
) -> Response:
    detail = wc.dataset(name, version, actor=actor)
    return respond(
        request, detail, version=detail["version"], key=("dataset", name), pinned=version is not None
    )


@router.get(
    "/datasets/{name}/versions", response_model=list[VersionInfo], responses=documented(404, 422, arrow=True)
)
def list_versions(request: Request, name: DatasetName, wc: WC, actor: Caller) -> Response:
    found = wc.versions(name, actor=actor)
    key = ("versions", name, tuple((v["version"], v["status"]) for v in found))
    return respond(
        request,
        found,
        version="catalog",
        key=key,
        pinned=False,
        track=False,
        arrow=lambda: _arrow.records_table(found),
    )


@router.get("/datasets/{name}/genes", response_model=GeneList, responses=documented(404, 422, arrow=True))
def list_genes(
    request: Request,
    name: DatasetName,
    wc: WC,
    actor: Caller,
    prefix: Annotated[NameText, Query(description="case-insensitive start of the names")] = "",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 20,
    version: Pinned = None,
) -> Response:
    resolved, genes = wc.genes(name, prefix, limit, version, actor=actor)
    return respond(
        request,
        {"genes": genes},
        version=resolved,
        key=("genes", prefix, limit),
        pinned=version is not None,
        arrow=lambda: _arrow.genes_table(genes, dataset=name, version=resolved),
    )


def _summary(
    request: Request,
    wc: Widecube,
    actor: Actor,
    name: str,
    genes: list[str],
    groupby: str,
    stats: list[str],
    layer: str | None,
    version: str | None,
) -> Response:
    result = wc.summary(
        name, genes=genes, groupby=groupby, stats=stats, layer=layer, version=version, actor=actor
    )
    return respond(
        request,
        result,
        version=result["version"],
        key=("summary", tuple(genes), groupby, tuple(stats), result["layer"]),
        pinned=version is not None,
        arrow=lambda: _arrow.summary_table(result),
    )


@router.post(
    "/datasets/{name}/summary",
    response_model=SummaryResponse,
    responses=documented(404, 413, 422, arrow=True),
)
def summary(
    request: Request,
    name: DatasetName,
    body: SummaryRequest,
    wc: WC,
    actor: Caller,
    released: FromRelease = None,
) -> Response:
    """Per-group statistics of genes: ``GET /summary`` with a JSON body, for gene lists too
    long for a URL (up to 5,000); the same answer and ETag as the GET."""
    version = pick(body.version, released)
    return _summary(request, wc, actor, name, body.genes, body.groupby, body.stats, body.layer, version)


@router.get(
    "/datasets/{name}/summary", response_model=SummaryResponse, responses=documented(404, 422, arrow=True)
)
def summary_get(
    request: Request,
    name: DatasetName,
    wc: WC,
    actor: Caller,
    genes: Annotated[
        list[NameText],
        Query(
            min_length=1,
            max_length=MAX_GENES,
            description="repeat: genes=A&genes=B",
            examples=[["CD3E", "MS4A1"]],
        ),
    ],
    groupby: Column,
    stats: Annotated[
        list[NameText] | None,
        Query(max_length=MAX_STATS, description="repeatable; default mean, frac_expressing"),
    ] = None,
    layer: Layer = None,
    version: Pinned = None,
) -> Response:
    """Per-group statistics of genes, as a URL that browsers and proxies can cache (a long
    gene list may not fit in a URL: ``POST /summary`` takes it as a JSON body)."""
    return _summary(request, wc, actor, name, genes, groupby, stats or _DEFAULT_STATS, layer, version)


def _selection(body: AggregateRequest | ExpressionRequest) -> dict[str, Any]:
    """The body's filter (ranges without their unset bounds) and lasso, as the facade takes them."""
    parts = body.model_dump(include={"filter", "lasso"}, exclude_none=True)
    return {"filter": parts.get("filter", {}), "lasso": parts.get("lasso")}


@router.post(
    "/datasets/{name}/aggregate",
    response_model=AggregateResponse,
    responses=documented(404, 413, 422, arrow=True),
)
def aggregate(
    request: Request,
    name: DatasetName,
    body: AggregateRequest,
    wc: WC,
    actor: Caller,
    released: FromRelease = None,
) -> Response:
    """The summary of genes over the cells a filter keeps (any subset), exactly: the shape
    of ``/summary`` plus ``filter``, ``cells`` and ``source``. Groups the filter empties have
    ``n_cells`` 0, sums and counts 0, other stats null."""
    result = wc.aggregate(
        name,
        genes=body.genes,
        groupby=body.groupby,
        stats=body.stats,
        layer=body.layer,
        version=pick(body.version, released),
        actor=actor,
        **_selection(body),
    )
    return respond(
        request,
        result,
        version=result["version"],
        key=body_key("aggregate", body),
        pinned=body.version is not None or released is not None,
        arrow=lambda: _arrow.summary_table(result),
    )


@router.post(
    "/datasets/{name}/expression",
    response_model=ExpressionResponse,
    responses=documented(404, 413, 422, arrow=True),
)
def expression(
    request: Request,
    name: DatasetName,
    body: ExpressionRequest,
    wc: WC,
    actor: Caller,
    released: FromRelease = None,
) -> Response:
    """Per-cell values of genes (float32, obs order) over the cells a filter keeps."""
    result = wc.expression(
        name,
        genes=body.genes,
        layer=body.layer,
        version=pick(body.version, released),
        cell_ids=body.cell_ids,
        actor=actor,
        **_selection(body),
    )
    return respond(
        request,
        result,
        version=result["version"],
        key=body_key("expression", body),
        pinned=body.version is not None or released is not None,
        arrow=lambda: _arrow.expression_table(result),
    )


@router.get("/datasets/{name}/embedding", response_model=EmbeddingList, responses=documented(404, 422))
def list_embeddings(
    request: Request, name: DatasetName, wc: WC, actor: Caller, version: Pinned = None
) -> Response:
    found = wc.embeddings(name, version, actor=actor)
    return respond(
        request, found, version=found["version"], key=("embeddings", name), pinned=version is not None
    )


@router.get(
    "/datasets/{name}/embedding/{key}",
    response_model=EmbeddingResponse,
    responses=documented(404, 422, arrow=True),
)
def embedding(
    request: Request,
    name: DatasetName,
    key: Annotated[NameText, Path(description="an obsm key, such as X_umap", examples=["X_umap"])],
    wc: WC,
    actor: Caller,
    color: Annotated[ColumnText | None, Query(description="an obs column, or a gene")] = None,
    version: Pinned = None,
) -> Response:
    """Coordinates of obsm ``key`` per cell, and one value per cell to colour by."""
    result = wc.embedding(name, key, color=color, version=version, actor=actor)
    return respond(
        request,
        result,
        version=result["version"],
        key=("embedding", key, color),
        pinned=version is not None,
        arrow=lambda: _arrow.embedding_table(result),
    )
