"""Fast JSON responses (orjson: numpy arrays, NaN → null) with version-keyed ETags."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from fastapi import Request, Response

__all__ = ["JSON", "etag_for", "respond"]


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC)


def etag_for(version: str, *parts: object) -> str:
    """A strong ETag naming the version, plus a digest of what was asked."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=6).hexdigest()
    return f'"{version}-{digest}"'


def respond(request: Request, content: Any, *, version: str, key: tuple[object, ...]) -> Response:
    """``content`` as JSON with an ETag, or 304 when the client already has it."""
    etag = etag_for(version, *key)
    headers = {"ETag": etag, "X-Widecube-Version": version}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return JSON(content, headers=headers)
