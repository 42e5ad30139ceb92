"""Routes over any set of cells, computed on the fly from the gene-major view: two sets
compared gene by gene, violins, the hierarchical order of groups, the cells a selection keeps
and one cell's metadata. Plain ``def`` handlers (the thread pool), cached like ``/aggregate``
(the ETag digests the JSON body; a body that pins ``version`` is immutable); see ``_datasets``.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import pyarrow as pa
from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel

from ._datasets import DatasetName, FromRelease, Pinned, pick
from ._deps import WC, Caller
from ._responses import body_key, documented, respond
from .models import (
    MAX_BODY_BYTES,
    CellResponse,
    CellsRequest,
    CellsResponse,
    CompareRequest,
    CompareResponse,
    DendrogramRequest,
    DendrogramResponse,
    ViolinRequest,
    ViolinResponse,
)

__all__ = ["router"]

router = APIRouter(max_body_size=MAX_BODY_BYTES)


def _parts(model: BaseModel | None) -> dict[str, Any] | None:
    """A cell set (or a body's filter and lasso) as the facade takes it: None bounds left out."""
    return None if model is None else model.model_dump(exclude_none=True)


def _filter(body: ViolinRequest | DendrogramRequest) -> dict[str, Any]:
    found: dict[str, Any] = body.model_dump(include={"filter"}, exclude_none=True)["filter"]
    return found


@router.post("/datasets/{name}/compare", response_model=CompareResponse, responses=documented(404, 413, 422))
def compare(
    request: Request,
    name: DatasetName,
    body: CompareRequest,
    wc: WC,
    actor: Caller,
    released: FromRelease = None,
) -> Response:
    """Two sets of cells compared gene by gene, exactly: Welch's t, p, Benjamini-Hochberg,
    log2 fold change, means and fractions expressing. Each set is a group, a filter, a lasso,
    obs positions or cell ids (AND of the parts); ``b`` defaults to the rest."""
    result = wc.compare(
        name,
        a=_parts(body.a) or {},
        b=_parts(body.b),
        within=_parts(body.within),
        genes=body.genes,
        top=body.top,
        rank=body.rank,
        layer=body.layer,
        version=pick(body.version, released),
        actor=actor,
    )
    key = body_key("compare", body)
    return respond(
        request,
        result,
        version=result["version"],
        key=key,
        pinned=body.version is not None or released is not None,
    )


@router.post("/datasets/{name}/violin", response_model=ViolinResponse, responses=documented(404, 413, 422))
def violin(
    request: Request,
    name: DatasetName,
    body: ViolinRequest,
    wc: WC,
    actor: Caller,
    released: FromRelease = None,
) -> Response:
    """Per group: the exact histogram of each gene's non-zero values (edges shared by the
    groups) and the cell counts, over the cells a filter (and lasso) keeps."""
    result = wc.violin(
        name,
        genes=body.genes,
        groupby=body.groupby,
        bins=body.bins,
        filter=_filter(body),
        lasso=_parts(body.lasso),
        layer=body.layer,
        version=pick(body.version, released),
        actor=actor,
    )
    key = body_key("violin", body)
    return respond(
        request,
        result,
        version=result["version"],
        key=key,
        pinned=body.version is not None or released is not None,
    )


@router.post(
    "/datasets/{name}/dendrogram", response_model=DendrogramResponse, responses=documented(404, 413, 422)
)
def dendrogram(
    request: Request,
    name: DatasetName,
    body: DendrogramRequest,
    wc: WC,
    actor: Caller,
    released: FromRelease = None,
) -> Response:
    """The groups in hierarchical order by their mean expression of the genes (complete
    linkage of 1 - Pearson correlation, as ``scanpy.pl.dotplot(dendrogram=True)``)."""
    result = wc.dendrogram(
        name,
        genes=body.genes,
        groupby=body.groupby,
        filter=_filter(body),
        lasso=_parts(body.lasso),
        layer=body.layer,
        version=pick(body.version, released),
        actor=actor,
    )
    key = body_key("dendrogram", body)
    return respond(
        request,
        result,
        version=result["version"],
        key=key,
        pinned=body.version is not None or released is not None,
    )


@router.post(
    "/datasets/{name}/cells", response_model=CellsResponse, responses=documented(404, 413, 422, arrow=True)
)
def cells(
    request: Request,
    name: DatasetName,
    body: CellsRequest,
    wc: WC,
    actor: Caller,
    released: FromRelease = None,
) -> Response:
    """The obs positions of the cells a cell set keeps (Arrow: one uint32 column ``index``)."""
    select = body.model_dump(exclude_none=True, exclude={"version"})
    result = wc.cells(name, select=select, version=pick(body.version, released), actor=actor)

    def table() -> pa.Table:
        indices = pa.array(np.asarray(result.indices, dtype=np.uint32))
        meta = {"dataset": name, "version": result.version, "n_cells": str(result.n_cells)}
        return pa.table({"index": indices}).replace_schema_metadata(meta)

    key = body_key("cells", body)
    return respond(
        request,
        result,
        version=result["version"],
        key=key,
        pinned=body.version is not None or released is not None,
        arrow=table,
    )


@router.get("/datasets/{name}/obs/{index}", response_model=CellResponse, responses=documented(404, 422))
def cell(
    request: Request,
    name: DatasetName,
    index: Annotated[int, Path(ge=0, description="obs position, 0-based")],
    wc: WC,
    actor: Caller,
    version: Pinned = None,
) -> Response:
    """One cell: its id and every obs value (what the embedding's hover shows)."""
    result = wc.cell(name, index, version=version, actor=actor)
    return respond(request, result, version=result["version"], key=("obs", index))
