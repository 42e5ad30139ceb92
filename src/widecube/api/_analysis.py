"""Routes over the analysis views: markers, per-gene statistics, per-cell statistics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from ..service import Widecube
from ._responses import respond
from .models import CellStatsResponse, GeneStatsResponse, MarkersResponse

__all__ = ["analysis_router"]


def analysis_router(wc: Widecube) -> APIRouter:
    """Routes bound to one service object."""
    router = APIRouter()

    @router.get("/datasets/{name}/markers", response_model=MarkersResponse)
    def markers(
        request: Request,
        name: str,
        groupby: str,
        group: str,
        layer: str | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 100,
        version: str | None = None,
    ) -> Response:
        """Top marker genes of one group against all other cells (ranked by Welch t)."""
        result = wc.markers(name, groupby=groupby, group=group, layer=layer, limit=limit, version=version)
        key = ("markers", groupby, group, result["layer"], limit)
        return respond(request, result, version=result["version"], key=key)

    @router.get("/datasets/{name}/genes/stats", response_model=GeneStatsResponse)
    def gene_stats(
        request: Request,
        name: str,
        genes: Annotated[list[str], Query(min_length=1)],
        layer: str | None = None,
        version: str | None = None,
    ) -> Response:
        """Per-gene statistics over all cells: n_cells_expressing, mean, var, min, max, dispersion."""
        result = wc.gene_stats(name, genes=genes, layer=layer, version=version)
        key = ("genes", tuple(genes), result["layer"])
        return respond(request, result, version=result["version"], key=key)

    @router.get("/datasets/{name}/cells/stats", response_model=CellStatsResponse)
    def cell_stats(request: Request, name: str, version: str | None = None) -> Response:
        """Per-cell total counts and detected genes, in obs order."""
        result = wc.cell_stats(name, version=version)
        return respond(request, result, version=result["version"], key=("cells",))

    return router
