"""Routes over the analysis views: markers, per-gene statistics, per-cell statistics.

Plain ``def`` handlers (the thread pool), bounded parameters, and a ``POST`` form of
``/genes/stats`` for gene lists too long for a URL; see ``_datasets``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from ..access import Actor
from ..query import Widecube
from ._datasets import Column, DatasetName, FromRelease, Layer, Pinned, pick
from ._deps import WC, Caller
from ._responses import documented, respond
from .models import (
    MAX_BODY_BYTES,
    MAX_GENES,
    CellStatsResponse,
    ColumnName,
    GeneStatsRequest,
    GeneStatsResponse,
    MarkersResponse,
    Name,
)

__all__ = ["router"]

router = APIRouter(max_body_size=MAX_BODY_BYTES)


@router.get("/datasets/{name}/markers", response_model=MarkersResponse, responses=documented(404, 422))
def markers(
    request: Request,
    name: DatasetName,
    wc: WC,
    actor: Caller,
    groupby: Column,
    group: Annotated[
        ColumnName | None,
        Query(examples=["B"], description="a group (category) of groupby; default: every group"),
    ] = None,
    layer: Layer = None,
    limit: Annotated[int, Query(ge=1, le=100, description="genes per group")] = 100,
    version: Pinned = None,
) -> Response:
    """Top marker genes of one group against all other cells (ranked by Welch t); without
    ``group``, of every group at once (grouping order, best first within each, each record
    naming its ``group``)."""
    result = wc.markers(
        name, groupby=groupby, group=group, layer=layer, limit=limit, version=version, actor=actor
    )
    key = ("markers", groupby, group, result["layer"], limit)
    return respond(request, result, version=result["version"], key=key)


def _gene_stats(
    request: Request,
    wc: Widecube,
    actor: Actor,
    name: str,
    genes: list[str],
    layer: str | None,
    version: str | None,
) -> Response:
    result = wc.gene_stats(name, genes=genes, layer=layer, version=version, actor=actor)
    key = ("genes", tuple(genes), result["layer"])
    return respond(request, result, version=result["version"], key=key, pinned=version is not None)


@router.get("/datasets/{name}/genes/stats", response_model=GeneStatsResponse, responses=documented(404, 422))
def gene_stats(
    request: Request,
    name: DatasetName,
    wc: WC,
    actor: Caller,
    genes: Annotated[
        list[Name],
        Query(
            min_length=1,
            max_length=MAX_GENES,
            description="repeat: genes=A&genes=B",
            examples=[["CD3E", "MS4A1"]],
        ),
    ],
    layer: Layer = None,
    version: Pinned = None,
) -> Response:
    """Per-gene statistics over all cells: n_cells_expressing, mean, var, min, max, dispersion."""
    return _gene_stats(request, wc, actor, name, genes, layer, version)


@router.post(
    "/datasets/{name}/genes/stats", response_model=GeneStatsResponse, responses=documented(404, 413, 422)
)
def gene_stats_post(
    request: Request,
    name: DatasetName,
    body: GeneStatsRequest,
    wc: WC,
    actor: Caller,
    released: FromRelease = None,
) -> Response:
    """``GET /genes/stats`` with a JSON body, for gene lists too long for a URL (up to
    5,000); the same answer and ETag as the GET."""
    return _gene_stats(request, wc, actor, name, body.genes, body.layer, pick(body.version, released))


@router.get("/datasets/{name}/cells/stats", response_model=CellStatsResponse, responses=documented(404, 422))
def cell_stats(
    request: Request, name: DatasetName, wc: WC, actor: Caller, version: Pinned = None
) -> Response:
    """Per-cell total counts and detected genes, in obs order."""
    result = wc.cell_stats(name, version=version, actor=actor)
    return respond(request, result, version=result["version"], key=("cells",))
