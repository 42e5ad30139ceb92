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

:func:`documented` declares all that in the OpenAPI document (``responses=`` of a route):
the Arrow media type, the headers, 304, and every error status with the :class:`Problem`
body; :func:`clip` cuts the values an error message echoes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ..errors import WidecubeError
from .models import Problem

__all__ = [
    "ARROW",
    "IMMUTABLE",
    "JSON",
    "REVALIDATE",
    "NotAcceptable",
    "body_key",
    "clip",
    "documented",
    "etag_for",
    "respond",
    "wants_arrow",
]

ARROW = "application/vnd.apache.arrow.stream"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


class NotAcceptable(WidecubeError):
    """The client asked for a format this route cannot produce (HTTP 406)."""


class JSON(JSONResponse):
    """JSON by orjson. A :class:`JSONResponse`, so that FastAPI documents a route's
    ``response_model`` as its body (for another response class it writes "a string")."""

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
        fields["filter"] = {
            c: sorted(set(v)) if isinstance(v, list) else v for c, v in sorted(fields["filter"].items())
        }
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
    named its version (default: whether the query string has ``version`` or ``release``); ``arrow`` builds
    the Arrow table (None: JSON only, and Arrow is 406); ``track`` records ``version`` as in
    use (off for listings, whose "version" is not a snapshot).
    """
    if pinned is None:
        pinned = "version" in request.query_params or "release" in request.query_params
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


_ECHO = 80  # characters of a value sent that an error message repeats
_MESSAGE = 1_000  # characters of an error message, at most
_QUOTED = re.compile(rf"'[^'\n]{{{_ECHO + 1},}}'|\"[^\"\n]{{{_ECHO + 1},}}\"")


def clip(message: str) -> str:
    """``message`` with every quoted value longer than 80 characters cut to its first 80 and
    "…", and the whole at most 1,000 characters: an error must not echo a 30 MB gene name.

    >>> clip("no gene '" + "A" * 100 + "' in 'pbmc'")
    "no gene 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA…' in 'pbmc'"
    """
    message = _QUOTED.sub(lambda m: m[0][: _ECHO + 1] + "…" + m[0][-1], message)
    return message if len(message) <= _MESSAGE else message[:_MESSAGE] + "…"


def short(value: object) -> str:
    """A value sent, as an error message names it: its first 80 characters and "…"."""
    text = str(value)
    return text if len(text) <= _ECHO else text[:_ECHO] + "…"


_STATUS = {
    304: "Not Modified: If-None-Match names the current ETag (no body)",
    400: "Bad Request: refused as sent: a body that is not JSON, an invalid file name, a URL longer "
    "than the HTTP server takes (text/plain; use the POST form), ...",
    401: "Unauthorized: the credentials are missing (and needed) or not valid: unknown, revoked or "
    "expired token, a JWT that fails its checks, an expired session",
    403: "Forbidden: the caller may see the dataset but not do this (the detail names the role "
    "needed), or a signed-in browser request without its CSRF header",
    404: "Not Found: no such dataset, version, job or upload",
    406: "Not Acceptable: Accept asks for Arrow, which this route does not produce",
    409: "Conflict: the state does not allow it (the detail says why), or the version is archived "
    "in cold storage (the detail says how to restore it)",
    410: "Gone: garbage collection removed that version (the detail names it and the policy)",
    413: "Content Too Large: the body is over its limit",
    422: "Unprocessable: a field is missing, malformed or over its limit, or names an unknown "
    "gene, groupby, stat, layer or category",
    429: "Too Many Requests: this client has too many uploads open, or is over the rate limit",
    503: "Service Unavailable: the version is out of service (a file failed its checksum)",
}
_HEADERS = {
    "ETag": "weak; names the version served",
    "X-Widecube-Version": "the version served",
    "Cache-Control": "immutable when the request pinned a version, no-cache otherwise",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of error statuses, each with the :class:`Problem` body.

    413 of a JSON body over its limit (FastAPI's ``max_body_size``) is ``text/plain``
    "Content Too Large" when ``Content-Length`` announced it, a :class:`Problem` when a chunked
    body ran over; 400 is ``text/plain`` when uvicorn refuses the request itself (a request
    line over its limit); both types are declared for both.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        out[code] = {"model": Problem, "description": _STATUS[code]}
        if code in (400, 413):  # also answered in text by the HTTP server or the body limit
            out[code]["content"] = {"text/plain": {"schema": {"type": "string"}}}
    return out


def documented(*codes: int, arrow: bool = False, cached: bool = True) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a route answered by :func:`respond`: 200's headers (and its
    Arrow media type when ``arrow``), 304 when ``cached``, 406 when it has no Arrow form,
    400, 409 (an archived version), 410 (a removed version) and 503, and the error ``codes``
    the route sends besides."""
    ok: dict[str, Any] = {
        "headers": {h: {"description": d, "schema": {"type": "string"}} for h, d in _HEADERS.items()}
    }
    if arrow:
        ok["content"] = {ARROW: {"schema": {"type": "string", "format": "binary"}}}
    out: dict[int | str, dict[str, Any]] = {200: ok}
    if cached:
        out[304] = {"description": _STATUS[304]}
    statuses = {*codes, 400, 409, 410, 503} | (set() if arrow else {406})
    return {**out, **errors(*sorted(statuses))}


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data
