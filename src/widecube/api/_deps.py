"""The API's dependencies, one style everywhere: ``Annotated[X, Depends(get_x)]``.

Routes get the facades (reads and admin: :class:`~widecube.query.Widecube`; jobs:
:class:`~widecube.pipeline.Jobs`; uploads: :class:`~widecube.pipeline.Uploads`) from the app's
state, set once per process by ``app.create_app``, and the caller from :func:`current_actor`,
which they pass to every facade method.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from anyio import to_thread
from fastapi import Depends, HTTPException, Request, Response

from ..access import Actor, Governance, Identities, transport_of
from ..errors import AuthenticationFailed, PermissionDenied
from ..pipeline import Jobs, Uploads
from ..query import Widecube

__all__ = [
    "CSRF_HEADER",
    "Caller",
    "Gov",
    "SESSION_COOKIE",
    "JobsFacade",
    "UploadsFacade",
    "WC",
    "current_actor",
    "get_governance",
    "get_jobs",
    "get_uploads",
    "get_widecube",
]


async def get_widecube(request: Request) -> Widecube:  # async: no thread hop per request
    """The read and admin facade of this process."""
    wc: Widecube = request.app.state.widecube
    return wc


async def get_jobs(request: Request) -> Jobs:
    """The jobs facade of this process."""
    jobs: Jobs = request.app.state.jobs
    return jobs


SESSION_COOKIE = "widecube_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


async def current_actor(request: Request) -> Actor:
    """Who is asking, from ``Authorization: Bearer`` (an API token or an OIDC JWT) or the UI's
    session cookie; anonymous without either. Bad credentials answer 401 (never silently
    anonymous), and count against the client address's rate limit (guessing tokens is slowed
    like anything else); a state-changing request on a session must echo its CSRF secret (403).
    Authorization itself is the facades' door; this only says who it is.
    """
    known: Actor | None = getattr(request.state, "actor", None)
    if known is not None:
        return known
    client = request.client.host if request.client else None
    request_id = _request_id(request)
    server = request.scope.get("server")
    transport = transport_of(request.url.scheme, server[0] if server else None)
    actor = Actor.anonymous()
    if request.app.state.widecube.settings.auth:
        try:
            actor = await _authenticate(request, client, request_id)
        except AuthenticationFailed as exc:
            _count_failure(request, client)
            if "authorization" in request.headers or SESSION_COOKIE not in request.cookies:
                raise
            if "/api/" in request.url.path:
                raise _session_ended(exc) from exc
            # the UI's page holds no data: it loads, and its first API call ends the session
            actor = Actor.anonymous()
    actor = actor.came_from(client, request_id, transport)
    request.state.actor = actor
    return actor


async def _authenticate(request: Request, client: str | None, request_id: str) -> Actor:
    """The caller the request's credentials name (anonymous without any)."""
    identities: Identities = request.app.state.identities
    header = request.headers.get("authorization")
    cookie = request.cookies.get(SESSION_COOKIE)
    if header is not None:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise AuthenticationFailed("the Authorization header must be 'Bearer <token>'")
        credential = credential.strip()
        remembered = identities.bearer_from_memory(credential, client=client, request_id=request_id)
        if remembered is not None:  # the common case: no thread hop, no catalog read
            return remembered
        return await to_thread.run_sync(
            lambda: identities.bearer(credential, client=client, request_id=request_id)
        )
    if cookie is not None:
        known = identities.session_from_memory(cookie, client=client, request_id=request_id)
        if known is None:
            known = await to_thread.run_sync(
                lambda: identities.session(cookie, client=client, request_id=request_id)
            )
        actor, session = known
        if request.method not in _SAFE and not identities.csrf_ok(session, request.headers.get(CSRF_HEADER)):
            raise PermissionDenied(
                f"a signed-in browser request that changes something needs the {CSRF_HEADER} header"
            )
        request.state.session = session  # GET /session shows its CSRF secret without decoding again
        return actor
    return Actor.anonymous()


def _session_ended(exc: AuthenticationFailed) -> HTTPException:
    """The 401 of a session that ended (token revoked or expired, cookie too old or signed with
    another key): it also drops the cookie, which the page cannot (HttpOnly), so the browser is
    anonymous from the next request on and can sign in again."""
    drop = Response()
    drop.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return HTTPException(
        401,
        str(exc),
        headers={"WWW-Authenticate": 'Bearer realm="widecube"', "Set-Cookie": drop.headers["set-cookie"]},
    )


def _count_failure(request: Request, client: str | None) -> None:
    """Count a failed authentication against the client's address (429 beyond the limit)."""
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        limiter.enforce(f"addr:{client}")


def _request_id(request: Request) -> str:
    """The proxy's ``X-Request-ID`` if it sent a sane one, else a fresh id."""
    given = request.headers.get("x-request-id", "")
    if 0 < len(given) <= 64 and given.isascii() and given.replace("-", "").isalnum():
        return given
    return uuid.uuid4().hex[:16]


async def get_governance(request: Request) -> Governance:
    """The access administration facade of this process."""
    gov: Governance = request.app.state.governance
    return gov


async def get_uploads(
    jobs: Annotated[Jobs, Depends(get_jobs)], actor: Annotated[Actor, Depends(current_actor)]
) -> Uploads:
    """The uploads facade of this process."""
    return jobs.uploads(actor=actor)


WC = Annotated[Widecube, Depends(get_widecube)]
JobsFacade = Annotated[Jobs, Depends(get_jobs)]
UploadsFacade = Annotated[Uploads, Depends(get_uploads)]
Caller = Annotated[Actor, Depends(current_actor)]
Gov = Annotated[Governance, Depends(get_governance)]
