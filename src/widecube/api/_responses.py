"""Data responses: JSON or Arrow IPC, version-keyed ETags, 304s and cache headers.

Every data route ends in :func:`respond`, which

* negotiates the format: Arrow IPC stream when ``Accept`` names
  ``application/vnd.apache.arrow.stream`` (and the route can build a table), else JSON
  (orjson: numpy arrays serialized natively, NaN → null);
* sets a weak ``ETag`` ``W/"<version>-<digest of the query and format>"``. Weak, because
  the GZip middleware may re-encode the JSON body: the bytes change, the meaning does not.
  For a POST the query is its body (:func:`body_key`: the JSON body, keys sorted, with the
  version left out since the ETag names the version it resolved to);
* answers ``If-None-Match`` with 304 (weak comparison, lists and ``*`` understood);
* sets ``Cache-Control``: ``public, max-age=31536000, immutable`` when the request pinned a
  version (a pinned URL names immutable content, for ever); ``no-cache`` otherwise, because
  an unpinned URL follows the live pointer and changes on publish — ``immutable`` would be a
  lie there. Clients still revalidate cheaply with the ETag. The web UI always pins;
* records the version as used, so the upkeep loop does not evict it from under its readers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa
from fastapi import Request, Response
from pydantic import BaseModel

from ..errors import WidecubeError

__all__ = [
    "ARROW",
    "IMMUTABLE",
    "JSON",
    "REVALIDATE",
    "NotAcceptable",
    "body_key",
    "etag_for",
    "respond",
    "wants_arrow",
]

ARROW = "application/vnd.apache.arrow.stream"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


class NotAcceptable(WidecubeError):
    """The client asked for a format this route cannot produce (HTTP 406)."""


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC)


def wants_arrow(request: Request) -> bool:
    """Whether ``Accept`` asks for an Arrow IPC stream (with a non-zero quality)."""
    for part in request.headers.get("accept", "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media.lower() == ARROW:
            q = next((p[2:] for p in params if p.startswith("q=")), "1")
            try:
                return float(q) > 0
            except ValueError:
                return True
    return False


def etag_for(version: str, *parts: object) -> str:
    """A weak ETag naming the version, plus a digest of what was asked (and in which format)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=6).hexdigest()
    return f'W/"{version}-{digest}"'


def body_key(route: str, body: BaseModel) -> tuple[str, str]:
    """The ETag key of a POST: the route and its JSON body (keys sorted, ``version`` left out).

    Two bodies that differ only in key order or in whether they pinned the version they
    resolved to get the same ETag; filters are canonical already (sorted by the service).
    """
    fields = body.model_dump(exclude={"version"})
    if isinstance(fields.get("filter"), dict):
        fields["filter"] = {c: sorted(set(v)) for c, v in sorted(fields["filter"].items())}
    return route, orjson.dumps(fields, option=orjson.OPT_SORT_KEYS).decode()


def _matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    opaque = etag.removeprefix("W/")
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == opaque:
            return True
    return False


def respond(
    request: Request,
    content: Any,
    *,
    version: str,
    key: tuple[object, ...],
    pinned: bool | None = None,
    arrow: Callable[[], pa.Table] | None = None,
    track: bool = True,
) -> Response:
    """``content`` as JSON, or ``arrow()`` as Arrow IPC, with caching headers; 304 if fresh.

    ``key`` names the query (the ETag digests it); ``pinned`` says whether the request
    named its version (default: whether the query string has ``version``); ``arrow`` builds
    the Arrow table (None: JSON only, and Arrow is 406); ``track`` records ``version`` as in
    use (off for listings, whose "version" is not a snapshot).
    """
    if pinned is None:
        pinned = "version" in request.query_params
    as_arrow = wants_arrow(request)
    if as_arrow and arrow is None:
        raise NotAcceptable(f"{request.url.path} is available as JSON only, not as {ARROW}")
    usage = getattr(request.app.state, "usage", None)
    if track and usage is not None:
        usage.touch(version)
    etag = etag_for(version, *key, "arrow" if as_arrow else "json")
    headers = {
        "ETag": etag,
        "X-Widecube-Version": version,
        "Cache-Control": IMMUTABLE if pinned else REVALIDATE,
        "Vary": "Accept",
    }
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    if as_arrow:
        assert arrow is not None
        return Response(_ipc(arrow()), media_type=ARROW, headers=headers)
    return JSON(content, headers=headers)


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data
