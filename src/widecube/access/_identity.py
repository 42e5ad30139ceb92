"""Who a request comes from: API tokens, OpenID Connect bearer JWTs, the web UI's session.

:class:`Identities` turns what a request presents into an :class:`~._actor.Actor`, checking
it against the catalog on every request (a revoked or expired token fails on its next use,
in every process), and records every refusal in the audit log.

* ``Authorization: Bearer wc_<id>_<secret>``: an API token (see ``_tokens``);
* ``Authorization: Bearer <JWT>``: an OIDC token, when an issuer is configured (``_oidc``);
* the session cookie: the UI's sign-in, a value signed with the server's session key
  (itsdangerous) that names the token it was made from, so revoking the token ends the
  session too. It also carries the CSRF secret that state-changing browser requests must
  echo in the ``X-CSRF-Token`` header.

The session key is ``WIDECUBE_SESSION_SECRET`` or, by default, a random key kept in
``<storage>/.session-key`` (created with mode 0600), so every process of one storage shares it.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..catalog import AuditEvent, Catalog, NotInMemory, TokenRecord
from ..config import Settings
from ..errors import AuthenticationFailed
from . import _tokens
from ._actor import Actor, Transport

if TYPE_CHECKING:
    from ._oidc import Identity
    from ._oidc_login import OidcLogin

__all__ = ["SESSION_MAX_AGE", "Identities", "Session", "session_key"]

SESSION_MAX_AGE = 12 * 3600
"""Seconds a UI session lasts (its token's own expiry and revocation apply too)."""


class Verifier(Protocol):
    """An OIDC verifier (``_oidc.OidcVerifier``)."""

    def verify(self, token: str) -> Any: ...


class Session:
    """What the session cookie holds: the CSRF secret, and either the API token's id (a
    sign-in with a token) or the user, the groups the identity provider named and the end of
    the session (a sign-in through the IdP)."""

    __slots__ = ("csrf", "ends", "groups", "token", "user")

    def __init__(
        self,
        csrf: str,
        *,
        token: str | None = None,
        user: str | None = None,
        groups: frozenset[str] = frozenset(),
        ends: float = 0.0,
    ) -> None:
        self.csrf, self.token, self.user, self.groups, self.ends = csrf, token, user, groups, ends

    def dump(self) -> dict[str, Any]:
        if self.token is not None:
            return {"t": self.token, "c": self.csrf}
        return {"u": self.user, "g": sorted(self.groups), "e": self.ends, "c": self.csrf}

    @classmethod
    def load(cls, data: Any) -> Session:
        """From a verified cookie's payload (KeyError, TypeError or ValueError if malformed)."""
        if "t" in data:
            return cls(str(data["c"]), token=str(data["t"]))
        groups = data["g"]
        if not isinstance(groups, list):
            raise TypeError("groups")
        return cls(
            str(data["c"]), user=str(data["u"]), groups=frozenset(map(str, groups)), ends=float(data["e"])
        )


class Identities:
    """Authentication over one catalog (and an optional OIDC verifier)."""

    def __init__(self, catalog: Catalog, settings: Settings, oidc: Verifier | None = None) -> None:
        self.catalog, self.oidc = catalog, oidc
        self._sessions = URLSafeTimedSerializer(session_key(settings), salt="widecube-session")

    # -- credentials ------------------------------------------------------------------------

    def bearer(self, text: str, *, client: str | None = None, request_id: str | None = None) -> Actor:
        """The caller presenting ``text`` as a bearer credential, or AuthenticationFailed."""
        parsed = _tokens.parse(text)
        if parsed is not None:
            return self._token_actor(*parsed, via="token", client=client, request_id=request_id)
        if self.oidc is not None and text.count(".") == 2:
            try:
                identity = self.oidc.verify(text)
            except AuthenticationFailed as exc:
                self._reject(str(exc), client, request_id)
                raise
            groups = frozenset(identity.groups) | self.catalog.access.groups_of(identity.user)
            return Actor(user=identity.user, via="oidc", groups=groups, client=client, request_id=request_id)
        self._reject(
            "not a widecube API token" + (" or an OIDC token" if self.oidc else ""), client, request_id
        )
        raise AuthenticationFailed(
            "the bearer credential is not a widecube API token (wc_…)"
            + (" nor a JWT from the configured identity provider" if self.oidc else "")
        )

    def bearer_from_memory(
        self, text: str, *, client: str | None = None, request_id: str | None = None
    ) -> Actor | None:
        """The caller presenting the API token ``text`` when the catalog answers from memory
        (nothing committed since the token and its user's groups were last read) and the token
        is valid; None otherwise, and then :meth:`bearer` decides (it may read the catalog and
        record a refusal, so the API runs it in a worker thread, and this on its event loop)."""
        parsed = _tokens.parse(text)
        if parsed is None:
            return None
        return self._remembered(parsed[0], parsed[1], "token", client, request_id)

    def session_from_memory(
        self, cookie: str, *, client: str | None = None, request_id: str | None = None
    ) -> tuple[Actor, Session] | None:
        """:meth:`session` when the catalog answers from memory and the session is valid; None
        otherwise (as :meth:`bearer_from_memory`)."""
        session = self._decode(cookie)
        if session is None:
            return None
        if session.token is not None:
            actor = self._remembered(session.token, None, "session", client, request_id)
            return None if actor is None else (actor, session)
        if session.ends <= time.time():
            return None
        try:
            with self.catalog.access.memory_only():
                return self._oidc_actor(session, client, request_id), session
        except NotInMemory:
            return None

    def session(
        self, cookie: str, *, client: str | None = None, request_id: str | None = None
    ) -> tuple[Actor, Session]:
        """The caller whose UI session cookie is ``cookie``, and the session."""
        session = self._decode(cookie)
        if session is None or (session.token is None and session.ends <= time.time()):
            self._reject("invalid or expired session cookie", client, request_id)
            raise AuthenticationFailed("the session has expired or is not valid: sign in again")
        if session.token is None:
            return self._oidc_actor(session, client, request_id), session
        record = self._checked(session.token, None, client, request_id)
        return self._actor(record, "session", client, request_id), session

    def open_session(
        self, text: str, *, client: str | None = None, request_id: str | None = None
    ) -> tuple[Actor, str, str]:
        """Sign in to the UI with an API token: the actor, the cookie value and its CSRF secret."""
        parsed = _tokens.parse(text)
        if parsed is None:
            self._reject("sign-in with something that is not an API token", client, request_id)
            raise AuthenticationFailed("sign in with a widecube API token (wc_…)")
        actor = self._token_actor(*parsed, via="session", client=client, request_id=request_id)
        session = Session(secrets.token_urlsafe(24), token=parsed[0])
        return actor, self._sessions.dumps(session.dump()), session.csrf

    def open_oidc_session(
        self, identity: Identity, seconds: float, *, client: str | None = None, request_id: str | None = None
    ) -> tuple[Actor, str, str]:
        """Sign in to the UI as ``identity`` (verified by the IdP) for ``seconds``: the actor,
        the cookie value and its CSRF secret."""
        session = Session(
            secrets.token_urlsafe(24),
            user=identity.user,
            groups=frozenset(identity.groups),
            ends=time.time() + seconds,
        )
        return (
            self._oidc_actor(session, client, request_id),
            self._sessions.dumps(session.dump()),
            session.csrf,
        )

    def reject(self, reason: str, *, client: str | None = None, request_id: str | None = None) -> None:
        """Record a refused sign-in (the UI's OIDC callback) in the audit log."""
        self._reject(reason, client, request_id)

    @staticmethod
    def csrf_ok(session: Session, header: str | None) -> bool:
        """Whether a state-changing browser request echoed the session's CSRF secret."""
        return header is not None and hmac.compare_digest(header.encode(), session.csrf.encode())

    # -- inside -------------------------------------------------------------------------------

    def _token_actor(
        self, id: str, secret: str, *, via: Any, client: str | None, request_id: str | None
    ) -> Actor:
        record = self._checked(id, secret, client, request_id)
        return self._actor(record, via, client, request_id)

    def _checked(
        self, id: str, secret: str | None, client: str | None, request_id: str | None
    ) -> TokenRecord:
        record, problem = self._verdict(id, secret)
        if record is None:
            self._reject("unknown API token", client, request_id, token=id)
            raise AuthenticationFailed("unknown API token")
        if problem is not None:
            self._reject(f"{problem} API token", client, request_id, token=id, user=record.user)
            raise AuthenticationFailed(f"this API token is {problem}")
        return record

    def _remembered(
        self, id: str, secret: str | None, via: Any, client: str | None, request_id: str | None
    ) -> Actor | None:
        try:
            with self.catalog.access.memory_only():
                record, problem = self._verdict(id, secret)
                if record is None or problem is not None:
                    return None  # refusals are :meth:`_checked`'s, which records them
                return self._actor(record, via, client, request_id)
        except NotInMemory:
            return None

    def _verdict(self, id: str, secret: str | None) -> tuple[TokenRecord | None, str | None]:
        """Token ``id`` (None: unknown, or ``secret`` does not match it) and, unless it is
        active, its state (``expired``, ``revoked``)."""
        found = self.catalog.access.token(id)
        if found is None or (secret is not None and not _tokens.matches(secret, found[1])):
            return None, None
        state = found[0].state(datetime.now(UTC))
        return found[0], None if state == "active" else state

    def _decode(self, cookie: str) -> Session | None:
        try:
            return Session.load(self._sessions.loads(cookie, max_age=SESSION_MAX_AGE))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None

    def _oidc_actor(self, session: Session, client: str | None, request_id: str | None) -> Actor:
        user = str(session.user)
        return Actor(
            user=user,
            via="session",
            groups=session.groups | self.catalog.access.groups_of(user),
            client=client,
            request_id=request_id,
        )

    def _actor(self, record: TokenRecord, via: Any, client: str | None, request_id: str | None) -> Actor:
        return Actor(
            user=record.user,
            via=via,
            groups=self.catalog.access.groups_of(record.user),
            scope=record.scope,  # type: ignore[arg-type]
            datasets=None if record.datasets is None else frozenset(record.datasets),
            token=record.id,
            client=client,
            request_id=request_id,
        )

    def _reject(
        self,
        reason: str,
        client: str | None,
        request_id: str | None,
        *,
        token: str | None = None,
        user: str | None = None,
    ) -> None:
        detail: dict[str, Any] = {"reason": reason}
        if token is not None:
            detail["token"] = token  # the public id, never the secret
        self.catalog.audit.append(
            AuditEvent(
                action="authenticate",
                outcome="rejected",
                actor=user,
                via="anonymous",
                detail=detail,
                client=client,
                request_id=request_id,
            )
        )


def session_key(settings: Settings) -> str:
    """The key that signs session cookies (see the module docstring)."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value()
    path = settings.local / ".session-key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(key)
    return key


def transport_of(scheme: str, server_host: str | None) -> Transport:
    """How a request arrived: over TLS, plain on loopback, or plain on a network."""
    if scheme == "https":
        return "tls"
    if server_host in ("127.0.0.1", "::1", "localhost"):
        return "loopback"
    return "plain"


def oidc_verifier(settings: Settings) -> Verifier | None:
    """The OIDC verifier the settings configure (None: no issuer, OIDC is off)."""
    if settings.oidc_issuer is None:
        return None
    from ._oidc import OidcVerifier

    return OidcVerifier.from_settings(settings)


def oidc_login(settings: Settings, verifier: Verifier | None) -> OidcLogin | None:
    """The UI's sign-in through the IdP (None when no issuer is configured)."""
    if verifier is None:
        return None
    from ._oidc import OidcVerifier
    from ._oidc_login import OidcLogin

    assert isinstance(verifier, OidcVerifier)
    return OidcLogin(
        verifier,
        client_id=settings.oidc_client_id or verifier.audience,
        client_secret=settings.oidc_client_secret,
        scopes=settings.oidc_scopes,
        key=session_key(settings),
    )
