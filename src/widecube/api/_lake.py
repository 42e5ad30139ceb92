"""Data-lake routes: dataset metadata and search, genes across datasets, download links.

* ``GET /search?q=&organism=&tissue=&assay=&disease=&tag=``: live datasets the caller may read
  that match, with facet counts (hidden datasets are neither found nor counted).
* ``GET /datasets/{name}/metadata``; ``PATCH /admin/datasets/{name}/metadata`` (owners), a
  JSON merge patch.
* ``POST /atlas/expression``: asked genes × groups in every dataset the filter selects, and
  pooled from the summed moments.
* ``GET /datasets/{name}/download``: time-limited links to every file of a version: presigned
  URLs on an object store, else ``GET /files/{token}/{path}``, whose signed token is the
  credential (it names one version and its expiry).

Handlers translate HTTP to one facade call each; the door decides in the facade.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, Response

from ._admin import ADMIN_PREFIX
from ._datasets import PREFIX, DatasetName, Pinned
from ._deps import WC, Caller
from ._lakemodels import (
    AtlasRequest,
    AtlasResponse,
    DatasetSearchResponse,
    DownloadResponse,
    MetadataPatch,
    MetadataResponse,
)
from ._responses import JSON, documented, errors, respond
from .models import MAX_BODY_BYTES, Facet, facet_filters

__all__ = ["admin_router", "router"]

router = APIRouter(prefix=PREFIX, max_body_size=MAX_BODY_BYTES)
admin_router = APIRouter(prefix=ADMIN_PREFIX, tags=["admin"], max_body_size=MAX_BODY_BYTES)
_NO_STORE = {"Cache-Control": "no-store"}

Words = Annotated[
    str, Query(max_length=500, description="words, each a prefix of a word in the name or any field")
]


@router.get("/search", response_model=DatasetSearchResponse, responses=documented(422))
def search(
    request: Request,
    wc: WC,
    actor: Caller,
    organism: Facet,
    tissue: Facet,
    assay: Facet,
    disease: Facet,
    tag: Facet,
    q: Words = "",
) -> Response:
    """Full-text search over the metadata of the live datasets the caller may read, with
    facet counts (SQLite FTS5 or PostgreSQL full text; the same hits on both)."""
    wanted = facet_filters(organism=organism, tissue=tissue, assay=assay, disease=disease, tag=tag)
    found = wc.search(q, wanted, actor=actor)
    key = ("search", orjson.dumps(found, option=orjson.OPT_SERIALIZE_NUMPY))
    return respond(request, found, version="catalog", key=key, pinned=False, track=False)


@router.get("/datasets/{name}/metadata", response_model=MetadataResponse, responses=documented(404, 422))
def get_metadata(request: Request, name: DatasetName, wc: WC, actor: Caller) -> Response:
    """What is known about a dataset: title, description, organism, tissue, tags, ..."""
    found = wc.metadata(name, actor=actor)
    key = ("metadata", name, orjson.dumps(found))
    return respond(request, found, version="catalog", key=key, pinned=False, track=False)


@admin_router.patch(
    "/datasets/{name}/metadata", response_model=MetadataResponse, responses=errors(400, 404, 413, 422)
)
def patch_metadata(name: DatasetName, body: MetadataPatch, wc: WC, actor: Caller) -> Response:
    """Change a dataset's metadata (owners): fields sent are set, ``null`` removes one,
    ``extra`` merges key by key."""
    changes = body.model_dump(exclude_unset=True)
    return JSON(wc.describe(name, changes, actor=actor), headers=_NO_STORE)


@router.post("/atlas/expression", response_model=AtlasResponse, responses=documented(413, 422))
def atlas_expression(request: Request, body: AtlasRequest, wc: WC, actor: Caller) -> Response:
    """Genes across datasets: per dataset the filter selects (and the caller may read) each
    group's n_cells and stats, and the pooled value of every group across them (from the
    summed sums and counts, not averaged means). Genes match by symbol or stable ID; genes a
    dataset lacks are listed under its ``absent``."""
    spec = body.filter.model_dump(exclude_none=True) if body.filter is not None else None
    found = wc.atlas_expression(
        genes=body.genes, by=body.by, filter=spec, stats=body.stats, layer=body.layer, actor=actor
    )
    # the answer depends on every selected dataset's live version and metadata: digest it all
    key = ("atlas", orjson.dumps(found, option=orjson.OPT_SERIALIZE_NUMPY))
    return respond(request, found, version="atlas", key=key, pinned=False, track=False)


@router.get("/datasets/{name}/download", response_model=DownloadResponse, responses=errors(400, 404, 422))
def download(
    request: Request,
    name: DatasetName,
    wc: WC,
    actor: Caller,
    version: Pinned = None,
    expires_in: Annotated[int, Query(ge=1, le=7 * 24 * 3600, description="seconds the links work")] = 3600,
) -> Response:
    """Time-limited links to every file of a version (default: the live one), with sizes and
    sha256: presigned URLs on an object store, this server's signed ``/files`` links otherwise."""
    links = wc.download(name, version, expires_in=expires_in, actor=actor)
    base = str(request.base_url).rstrip("/") + f"{PREFIX}/files/{links['token']}/"
    files = [{**f, "url": f["url"] or base + quote(f["path"])} for f in links["files"]]
    body = {
        "dataset": links["dataset"],
        "version": links["version"],
        "expires": links["expires"],
        "files": files,
    }
    return JSON(body, headers=_NO_STORE)


@router.get(
    "/files/{token}/{path:path}",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **errors(400, 403, 404, 422)},
)
def download_file(
    token: Annotated[str, Path(max_length=1_000, description="from GET /datasets/{name}/download")],
    path: Annotated[str, Path(max_length=2_000, description="a file of the snapshot")],
    wc: WC,
    actor: Caller,
) -> Response:
    """One file of a snapshot, for whoever holds a link that has not expired."""
    local = wc.download_file(token, path, actor=actor)
    return FileResponse(
        local, media_type="application/octet-stream", headers={"Cache-Control": "private, no-store"}
    )
