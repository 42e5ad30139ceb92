"""Starlette's gzip middleware with ISA-L's deflate, ~3× faster than zlib at the same ratio.

A summary answer is ~190 KB of JSON (float64 numbers); zlib at level 1 spends 2.6 ms on it,
ISA-L (``isal``, already the readers' inflater) 0.86 ms for a slightly smaller body, which is
most of the difference between the plain and the gzip HTTP latency. Only the compressor is
swapped: buffering, streaming, thresholds and headers stay Starlette's.
"""

from __future__ import annotations

import zlib
from typing import cast

from isal import isal_zlib
from starlette.datastructures import Headers
from starlette.middleware.gzip import GZipMiddleware, GZipResponder, IdentityResponder
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["FastGZipMiddleware"]

_ISAL_MAX_LEVEL = 3  # ISA-L has levels 0-3; zlib-style levels above map to its best


class _IsalGZipResponder(GZipResponder):
    @property
    def compressor(self) -> zlib._Compress:
        if self._compressor is None:
            level = min(self.compresslevel, _ISAL_MAX_LEVEL)
            # isal's Compress has zlib's compress/flush: the responder uses nothing else
            compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, 16 + isal_zlib.MAX_WBITS)
            self._compressor = cast("zlib._Compress", compressor)
        return self._compressor


class FastGZipMiddleware(GZipMiddleware):
    """:class:`~starlette.middleware.gzip.GZipMiddleware`, compressing with ISA-L."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # pragma: no cover - lifespan and websockets pass through
            await self.app(scope, receive, send)
            return
        responder: ASGIApp
        if "gzip" in Headers(scope=scope).get("Accept-Encoding", ""):
            responder = _IsalGZipResponder(
                self.app,
                self.minimum_size,
                compresslevel=self.compresslevel,
                thread_minimum_size=self.thread_minimum_size,
                exclude_content_types=self.exclude_content_types,
            )
        else:
            responder = IdentityResponder(
                self.app, self.minimum_size, exclude_content_types=self.exclude_content_types
            )
        await responder(scope, receive, send)
