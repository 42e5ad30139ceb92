"""Upload routes: send a matrix file over HTTP; it becomes an ingest job.

In one request (the body is the file, streamed to disk as it arrives, never held in memory)::

    curl --data-binary @pbmc.h5ad -H 'Content-Type: application/octet-stream' \\
         'http://host/api/v1/uploads?filename=pbmc.h5ad&groupby=cell_type&sha256=<hex>'

(``views=summary,quantiles`` builds only those views and what they require; an unknown view
is a 422 before any byte is kept; ``meta={"title": ..., "organism": ...}``, JSON, is the
dataset's metadata, checked at once like ``ingest --meta`` (a bad field is a 422 naming it,
nothing is kept) and set when the job publishes)

or resumable, in chunks, for large files over shaky links::

    POST /api/v1/uploads/resumable  {"filename": "pbmc.h5ad", "size": 123456789, "sha256": "...",
                                     "meta": {"title": "PBMC", "tags": ["demo"]}}
    PUT  /api/v1/uploads/{id}       Content-Range: bytes 0-8388607/123456789   (body: those bytes)
    GET  /api/v1/uploads/{id}       -> {"offset": ...}: where to resume after a broken connection

Both answer with the job's id once the last byte is in (201, ``Location: /api/v1/jobs/{id}``);
``413`` when the file is larger than ``WIDECUBE_UPLOAD_MAX_BYTES``, ``400`` when the bytes do
not have the sha256 given or the file name is not a plain one (NUL, control characters, over
255 bytes), ``409`` when a chunk does not start where the upload stands (the answer carries
the offset to resume from), ``429`` when the client has ``WIDECUBE_UPLOAD_MAX_OPEN``
unfinished uploads. An unfinished upload idle for ``WIDECUBE_UPLOAD_EXPIRY`` seconds is
removed by the server's upkeep. The server's job worker then runs the job.

A client that disconnects mid-body is not an error of the server: a resumable upload keeps
the bytes that arrived, a one-request upload is discarded, and nothing is logged as a failure.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from ..access import Actor
from ..errors import InvalidQuery, WidecubeError
from ..pipeline import JobRecord, TooManyUploads, UploadConflict, Uploads, UploadTooLarge, Writer, parse_views
from ._deps import Caller, UploadsFacade
from ._jobmodels import UploadStart, UploadStatus
from ._responses import clip, errors
from .models import (
    DATASET_PATTERN,
    INPUT_KIND_HELP,
    MAX_BODY_BYTES,
    ColumnName,
    InputKind,
    Name,
    UploadCreated,
    UploadProblem,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/uploads", tags=["uploads"])
Field = Annotated[Name | None, Query()]
log = logging.getLogger("widecube.uploads")
_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
_BATCH = 1 << 20  # bytes gathered before one write to disk (in a worker thread)
_NO_STORE = {"Cache-Control": "no-store"}


def _problem(status: int, exc: WidecubeError, **extra: object) -> Response:
    return JSONResponse({"detail": clip(str(exc)), **extra}, status_code=status, headers=_NO_STORE)


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


_FILENAME = (
    "the file's name; its suffixes tell archives apart (a plain name: no NUL or control "
    "character, at most 255 bytes)"
)
_VIEWS = (
    "views to build: 'summary,quantiles', or repeated; those they require come too; default: "
    "every view; an unknown name is a 422 that lists them"
)
_META = (
    "dataset metadata as a JSON object (title, description, organism, tissue, assay, disease, "
    "license, citation, doi, contact, tags, extra: as `ingest --meta` takes them), set when the "
    "job publishes; a bad field is a 422 naming it, before any byte is kept"
)
MAX_META_CHARS = 64 * 1024


def _metadata(meta: str | None) -> dict[str, Any] | None:
    """The ``meta`` query parameter as a mapping (its fields are checked by the store)."""
    if meta is None:
        return None
    try:
        found = json.loads(meta)
    except ValueError as exc:
        raise InvalidQuery(f"meta is not valid JSON: {exc}") from exc
    if not isinstance(found, dict):
        raise InvalidQuery(f"meta must be a JSON object of fields, not a {type(found).__name__}")
    return found


_CREATED: dict[int | str, dict[str, Any]] = {
    201: {"model": UploadCreated, "description": "the upload is complete: its job"}
}
_BINARY = {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}


def _created(job: JobRecord, upload: str) -> Response:
    body: dict[str, Any] = {
        "job": job.id,
        "upload": upload,
        "dataset": job.dataset,
        "state": job.state.value,
        "sha256": job.params.get("sha256"),
        "url": f"/api/v1/jobs/{job.id}",
    }
    return JSONResponse(body, status_code=201, headers={"Location": body["url"], **_NO_STORE})


async def _receive(request: Request, writer: Writer, most: int | None = None) -> None:
    """Stream the body into ``writer`` in batches; at most ``most`` bytes (a chunk's range)."""
    batch: list[bytes] = []
    held = received = 0
    try:
        async for data in request.stream():
            received += len(data)
            if most is not None and received > most:
                raise UploadConflict(f"the body is longer than its Content-Range ({most} bytes)")
            batch.append(data)
            held += len(data)
            if held >= _BATCH:
                await to_thread.run_sync(writer.write, b"".join(batch))
                batch, held = [], 0
    except ClientDisconnect:  # keep what arrived: a resumed upload continues after it
        if batch:
            await to_thread.run_sync(writer.write, b"".join(batch))
        raise
    if batch:
        await to_thread.run_sync(writer.write, b"".join(batch))


@router.post(
    "",
    status_code=201,
    response_model=UploadCreated,
    responses=errors(400, 413, 422, 429),
    openapi_extra={"requestBody": {"required": True, **_BINARY}},
)
async def upload(
    request: Request,
    store: UploadsFacade,
    actor: Caller,
    filename: Annotated[str, Query(max_length=1024, description=_FILENAME)],
    dataset: Annotated[
        str | None, Query(pattern=DATASET_PATTERN, description="dataset name; default: from the file name")
    ] = None,
    groupby: Annotated[
        list[ColumnName] | None, Query(max_length=64, description="repeatable: obs column(s) to group by")
    ] = None,
    layer: Field = None,
    format: Field = None,
    sha256: Annotated[
        str | None, Query(pattern=r"^[0-9a-fA-F]{64}$", description="hex digest the bytes must have")
    ] = None,
    views: Annotated[list[Name] | None, Query(max_length=64, description=_VIEWS)] = None,
    input_kind: Annotated[InputKind | None, Query(description=INPUT_KIND_HELP)] = None,
    meta: Annotated[str | None, Query(max_length=MAX_META_CHARS, description=_META)] = None,
    # HTTP's own header (the client sets it from the body), not a parameter of this API
    content_length: Annotated[int | None, Header(ge=0, include_in_schema=False)] = None,
) -> Response:
    """Upload a file in one request (the body); returns its job."""
    params = {
        "groupbys": groupby or [],
        "layer": layer,
        "format": format,
        "views": parse_views(views),
        "input_kind": input_kind,
    }
    metadata = _metadata(meta)
    try:
        if content_length is not None and content_length > store.limit:
            raise UploadTooLarge(
                f"{filename[:80]}: {content_length:,} bytes is more than the limit of {store.limit:,}"
            )
        up = await to_thread.run_sync(
            lambda: store.create(
                filename,
                size=None,
                sha256=sha256,
                params=params,
                dataset=dataset,
                client=_client(request),
                metadata=metadata,
                actor=actor,
            )
        )
    except UploadTooLarge as exc:
        return _problem(413, exc)
    except TooManyUploads as exc:
        return _problem(429, exc)
    try:
        with store.writer(up.id, offset=0, hash=True, actor=actor) as writer:
            await _receive(request, writer)
            digest = writer.hasher.hexdigest()
        job = await to_thread.run_sync(lambda: store.finish(up.id, sha256=digest, actor=actor))
    except UploadTooLarge as exc:
        store.remove(up.id, actor=actor)
        return _problem(413, exc)
    except ClientDisconnect:  # the client left: nothing to answer, nothing went wrong here
        store.remove(up.id, actor=actor)
        log.info("upload %s: the client disconnected; discarded", up.id)
        return Response(status_code=400)
    except WidecubeError:
        store.remove(up.id, actor=actor)
        raise
    return _created(job, up.id)


@router.post(
    "/resumable",
    status_code=201,
    response_model=UploadStatus,
    responses=errors(400, 413, 422, 429),
    max_body_size=MAX_BODY_BYTES,  # a small JSON body; the file's bytes come with PUT
)
def start(request: Request, body: UploadStart, store: UploadsFacade, actor: Caller) -> Response:
    """Start a resumable upload of ``size`` bytes; send them with ``PUT /uploads/{id}``."""
    params = {
        "groupbys": body.groupbys,
        "layer": body.layer,
        "format": body.format,
        "views": parse_views(body.views),
        "input_kind": body.input_kind,
    }
    try:
        up = store.create(
            body.filename,
            size=body.size,
            sha256=body.sha256,
            params=params,
            dataset=body.dataset,
            client=_client(request),
            metadata=body.meta,
            actor=actor,
        )
    except UploadTooLarge as exc:
        return _problem(413, exc)
    except TooManyUploads as exc:
        return _problem(429, exc)
    headers = {"Location": f"/api/v1/uploads/{up.id}", **_NO_STORE}
    return JSONResponse(_status(store, up.id, actor), status_code=201, headers=headers)


UploadId = Annotated[str, Path(max_length=64, description="the id the upload started with")]


@router.get("/{upload_id}", response_model=UploadStatus, responses=errors(400, 404, 422))
def status(upload_id: UploadId, store: UploadsFacade, actor: Caller) -> Response:
    """How many bytes arrived (where to resume), and the job once complete."""
    return JSONResponse(_status(store, upload_id, actor), headers=_NO_STORE)


@router.put(
    "/{upload_id}",
    response_model=UploadStatus,
    responses={
        **_CREATED,
        **errors(400, 404, 413, 422),
        409: {
            "model": UploadProblem,
            "description": "the chunk does not start where the "
            "upload stands (offset: where it does), or another request writes it",
        },
    },
    openapi_extra={"requestBody": {"required": True, **_BINARY}},
)
async def put_chunk(
    request: Request,
    upload_id: UploadId,
    content_range: Annotated[str, Header(max_length=100, description="bytes FIRST-LAST/SIZE")],
    store: UploadsFacade,
    actor: Caller,
) -> Response:
    """Append one chunk; 200 with the new offset, or 201 with the job after the last chunk."""
    up = store.get(upload_id, actor=actor)
    match = _RANGE.match(content_range.strip())
    if match is None or up.size is None:
        bad = UploadConflict(f"Content-Range {content_range!r} is not 'bytes FIRST-LAST/SIZE'")
        return _problem(400, bad)
    first, last, total = map(int, match.groups())
    if total != up.size or last < first or last >= total:
        return _problem(
            400, UploadConflict(f"Content-Range {content_range!r} does not fit an upload of {up.size} bytes")
        )
    if up.job is not None:
        return _created(store.job(up.job, actor=actor), upload_id)
    try:
        with store.writer(upload_id, offset=first, actor=actor) as writer:
            try:
                await _receive(request, writer, most=last - first + 1)
            except ClientDisconnect:
                return _problem(400, UploadConflict(f"connection lost at byte {writer.offset}"))
    except UploadConflict as exc:
        return _problem(409, exc, offset=store.get(upload_id, actor=actor).offset)
    if store.get(upload_id, actor=actor).offset < up.size:
        return JSONResponse(_status(store, upload_id, actor), headers=_NO_STORE)
    job = await to_thread.run_sync(lambda: store.finish(upload_id, actor=actor))
    return _created(job, upload_id)


def _status(store: Uploads, upload_id: str, actor: Actor) -> dict[str, object]:
    up = store.get(upload_id, actor=actor)
    return UploadStatus(
        upload=up.id,
        filename=up.filename,
        dataset=up.dataset,
        size=up.size,
        offset=up.offset,
        complete=up.job is not None,
        job=up.job,
    ).model_dump()
