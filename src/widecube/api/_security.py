"""Hardened HTTP: security headers on every answer, CORS only when configured, and a rate
limit per identity.

:func:`install_security` puts it on an app (``create_app`` calls it once):

* **headers** (:class:`SecurityHeaders`, outermost, so errors carry them too): a
  Content-Security-Policy that the UI satisfies as shipped (no inline script, style or event
  handler: everything comes from ``/static``), ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY`` (``frame-ancestors 'none'`` for
  older browsers) and, when the request came over TLS, ``Strict-Transport-Security``.
  The ``/docs`` and ``/redoc`` pages load Swagger UI and ReDoc from this server (``_docs``: a
  package's copy, no CDN) and start them with an inline script: those paths alone get
  :data:`DOCS_CSP`, which still allows no other origin;
* **CORS**: Starlette's middleware for exactly ``settings.cors_origins``; none when empty,
  so browsers keep the same-origin rule;
* **rate limit**: :func:`rate_limit`, an app-wide dependency (``/healthz`` is exempt), a
  moving window per identity from the ``limits`` library, in memory: each server process
  counts its own callers, so with ``--workers N`` a caller may make up to N times the limit.
  Beyond it: 429 with ``Retry-After`` (whole seconds until the window has room again).

The identity is ``actor.key`` (``token:<id>``, ``user:<name>``) when the caller is known, else
``addr:<client address>``; the address is the peer's, or what ``X-Forwarded-For`` says when the
peer is one of ``settings.trusted_proxies`` (uvicorn rewrites it; see ``widecube serve``).

    >>> app = FastAPI(dependencies=[Depends(rate_limit)])   # doctest: +SKIP
    >>> install_security(app, Settings(rate_limit="5/minute"))   # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from typing import Any

import limits
from fastapi import FastAPI, Request
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from ._deps import current_actor
from .models import Problem

__all__ = [
    "CSP",
    "DOCS_CSP",
    "RateLimiter",
    "SecurityHeaders",
    "install_security",
    "parse_rate_limit",
    "rate_limit",
]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
"""The policy of every answer but the API docs: the UI loads only its own files."""

DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
"""The policy of ``/docs`` and ``/redoc``: their assets come from this server (``_docs``) and an
inline script starts them; no other origin. Nothing of the data or the UI is served there."""

HSTS = "max-age=31536000"
_DOCS = ("/docs", "/redoc")
_UNLIMITED = frozenset({"/healthz"})
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders:
    """ASGI middleware: the security headers on every HTTP answer (a route's own win)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        csp = DOCS_CSP if path.startswith(_DOCS) else CSP
        tls = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", csp)
                for name, value in _HEADERS.items():
                    headers.setdefault(name, value)
                if tls:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def parse_rate_limit(text: str) -> list[limits.RateLimitItem]:
    """``WIDECUBE_RATE_LIMIT`` as ``limits`` items ("1200/minute", "20/second;1000/hour").

    >>> [str(item) for item in parse_rate_limit("5/minute")]
    ['5 per 1 minute']
    """
    try:
        items = limits.parse_many(text)
    except ValueError:
        items = []
    if not items:
        raise ValueError(
            f"WIDECUBE_RATE_LIMIT={text[:80]!r} is not a rate limit such as '1200/minute' "
            "or '20/second;1000/hour'"
        )
    return items


class RateLimiter:
    """Moving windows of ``limits`` in this process's memory, one per identity and item."""

    def __init__(self, text: str) -> None:
        self.items = parse_rate_limit(text)
        self.limiter = limits.strategies.MovingWindowRateLimiter(limits.storage.MemoryStorage())

    def hit(self, key: str) -> tuple[int, limits.RateLimitItem | None]:
        """Count one request of ``key``: ``(0, None)`` when allowed, else the seconds to wait
        (at least 1) and the item that is full (the request is then not counted)."""
        for item in self.items:
            if not self.limiter.test(item, key):
                reset = self.limiter.get_window_stats(item, key).reset_time
                return max(1, math.ceil(reset - time.time())), item
        for item in self.items:
            self.limiter.hit(item, key)
        return 0, None

    def enforce(self, key: str) -> None:
        """Count one request of ``key``, or refuse it: 429 with ``Retry-After``."""
        wait, full = self.hit(key)
        if full is not None:
            raise HTTPException(
                429,
                f"too many requests: at most {full} per caller; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )


async def rate_limit(request: Request) -> None:
    """App-wide dependency: 429 with ``Retry-After`` when this caller's identity is over the limit.
    ``/healthz`` is neither limited nor authenticated (the caller is not even looked at)."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None or request.url.path in _UNLIMITED:
        return
    actor = await current_actor(request)  # remembered on the request: routes get the same
    client = request.client.host if request.client is not None else "unknown"
    limiter.enforce(getattr(actor, "key", None) or f"addr:{client}")


_TOO_MANY: dict[str, Any] = {
    "description": "Too Many Requests: over the rate limit of this caller (WIDECUBE_RATE_LIMIT)",
    "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def _document_429(app: FastAPI) -> None:
    """Every operation may answer 429: say so in the OpenAPI document (routes that answer 429
    for their own reason, such as too many uploads open, keep their description)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(
            "Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if isinstance(operation, dict) and "responses" in operation:
                    operation["responses"].setdefault("429", _TOO_MANY)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_security(app: FastAPI, settings: Settings) -> None:
    """Add the security headers, CORS (when ``settings.cors_origins``) and the rate limiter
    of ``settings.rate_limit`` to ``app``, whose dependencies include :func:`rate_limit`."""
    app.state.rate_limiter = RateLimiter(settings.rate_limit)
    _document_429(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Content-Range",
                "If-None-Match",
                "Accept",
                "X-CSRF-Token",
                "X-Request-ID",
            ],
            expose_headers=["ETag", "X-Widecube-Version", "Location", "Retry-After"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders)  # last added: outermost, so CORS answers carry them too
