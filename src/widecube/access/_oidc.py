"""OpenID Connect bearer tokens: verify a JWT from an institute's identity provider (IdP)
and say who it names.

A token is accepted when its signature verifies with a key of the IdP's published key set
(JWKS), chosen by the token's ``kid``, under an asymmetric algorithm (RSA, RSA-PSS, ECDSA,
Ed25519: never ``none`` and never HMAC, so a public key can never serve as a shared secret),
and its claims say it was issued by the configured issuer (``iss``, exactly), for this
service (``aud``), and is valid now (``exp`` required; ``exp``/``nbf``/``iat`` within
``leeway`` seconds of clock skew). Signatures and claims are checked by ``joserfc``.

The key set is found through the issuer's discovery document
(``{issuer}/.well-known/openid-configuration``, whose ``issuer`` must match) unless
``jwks_url`` is given, and cached. A token whose ``kid`` is not in the cache makes the
verifier fetch the key set again (the IdP rotated its keys), at most once every
:attr:`OidcVerifier.refetch_interval` seconds, so junk tokens cannot make it hammer the IdP;
keys dropped from the set stop verifying once it is fetched again. The cache is also renewed
after :attr:`OidcVerifier.max_age` seconds. Safe to call from many threads.

Every refusal is an :class:`~widecube.errors.AuthenticationFailed` that says why and never
repeats the token::

    >>> verifier = OidcVerifier("https://idp.example.org/realms/lab", "widecube")
    >>> verifier.verify(request_bearer_token)
    Identity(user='ana', groups=frozenset({'lab'}), expires_at=datetime(...), issuer='https://...')
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx2 as httpx
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyCurveError,
    JoseError,
    KeyParameterError,
    MissingClaimError,
)
from joserfc.jwk import Key, import_key

from ..errors import AuthenticationFailed

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["ALGORITHMS", "Identity", "OidcVerifier"]

log = logging.getLogger("widecube.access")

ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "Ed25519"}
)
"""The signature algorithms accepted: asymmetric only (no ``none``, no ``HS*``)."""

_MAX_TOKEN = 16 * 1024  # bytes; an IdP's access token is a few KiB at most
_MAX_DOCUMENT = 1024 * 1024  # bytes of a discovery document or key set


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token names: the user, their groups, until when, and by whom."""

    user: str
    groups: frozenset[str]
    expires_at: datetime
    issuer: str


class OidcVerifier:
    """Verifies bearer JWTs issued by ``issuer`` for ``audience`` (see the module doc).

    ``http`` is the client used to reach the IdP (default: one of its own, 5 s timeout).
    """

    refetch_interval: float = 30.0
    """Seconds between two fetches of the key set (also after a failed one)."""
    max_age: float = 3600.0
    """Seconds after which the cached key set is fetched again before it is used."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        jwks_url: str | None = None,
        user_claim: str = "preferred_username",
        groups_claim: str = "groups",
        leeway: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.user_claim = user_claim
        self.groups_claim = groups_claim
        self.leeway = leeway
        self._http = http if http is not None else httpx.Client(timeout=5.0)
        self._owns_http = http is None
        self._monotonic: Callable[[], float] = time.monotonic
        self._lock = threading.Lock()  # guards the fields below
        self._fetch_lock = threading.Lock()  # one fetch at a time; the others wait for it
        self._jwks_url = jwks_url
        self._keys: dict[str | None, Key] | None = None
        self._fetched_at = 0.0  # monotonic time of the last success
        self._attempted_at: float | None = None  # ... of the last attempt
        self._failure: str | None = None  # why the last attempt failed
        self._discovered: tuple[dict[str, Any] | None, float] = (None, 0.0)

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcVerifier | None:
        """The verifier that ``settings`` configure, or None when no issuer is set."""
        if settings.oidc_issuer is None:
            return None
        if not settings.oidc_audience:
            raise ValueError("WIDECUBE_OIDC_ISSUER is set but WIDECUBE_OIDC_AUDIENCE is not: set both")
        return cls(
            settings.oidc_issuer,
            settings.oidc_audience,
            jwks_url=settings.oidc_jwks_url,
            user_claim=settings.oidc_user_claim,
            groups_claim=settings.oidc_groups_claim,
        )

    @property
    def http(self) -> httpx.Client:
        """The client that reaches the IdP (the UI's sign-in uses it too)."""
        return self._http

    def discovery(self) -> dict[str, Any]:
        """The issuer's discovery document (``/.well-known/openid-configuration``), checked to
        name this issuer, fetched once and again after :attr:`max_age` seconds."""
        with self._lock:
            doc, at = self._discovered
        if doc is None or self._monotonic() - at > self.max_age:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            doc = self._get_json(url)
            if doc.get("issuer") != self.issuer:
                raise AuthenticationFailed(
                    f"identity provider misconfigured: its discovery document names issuer "
                    f"{_short(doc.get('issuer'))}, not {self.issuer!r}"
                )
            with self._lock:
                self._discovered = (doc, self._monotonic())
        return doc

    def close(self) -> None:
        """Close the HTTP client if the verifier made it."""
        if self._owns_http:
            self._http.close()

    def verify(self, token: str, *, audience: str | None = None, nonce: str | None = None) -> Identity:
        """The :class:`Identity` that ``token`` names, or :class:`AuthenticationFailed`.

        ``audience``: expected instead of :attr:`audience` (an ID token is for the UI's client
        id); ``nonce``: the value the token's ``nonce`` claim must carry (the UI's sign-in).
        """
        header = _header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise AuthenticationFailed(f"OIDC token refused: algorithm {_short(alg)} is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthenticationFailed("OIDC token malformed: 'kid' is not a string")
        key = self._key(kid)
        if key.alg is not None and key.alg != alg:
            raise AuthenticationFailed(f"OIDC token refused: key {_short(kid)} is for {key.alg}, not {alg}")
        try:
            claims = jwt.decode(token, key, algorithms=[alg]).claims
        except BadSignatureError:
            raise AuthenticationFailed("OIDC token refused: bad signature") from None
        except (KeyParameterError, InvalidKeyCurveError):
            raise AuthenticationFailed(
                f"OIDC token refused: key {_short(kid)} ({key.key_type}) does not fit algorithm {alg}"
            ) from None
        except (JoseError, ValueError, TypeError) as exc:
            raise AuthenticationFailed(f"OIDC token malformed ({type(exc).__name__})") from None
        self._check_claims(claims, audience or self.audience, nonce)
        return Identity(
            user=self._user(claims),
            groups=self._groups(claims),
            expires_at=_utc(claims["exp"]),
            issuer=self.issuer,
        )

    def _check_claims(self, claims: dict[str, Any], audience: str, nonce: str | None) -> None:
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": self.issuer},
            "aud": {"essential": True, "value": audience},
            "exp": {"essential": True},
        }
        if nonce is not None:
            options["nonce"] = {"essential": True, "value": nonce}
        registry = jwt.JWTClaimsRegistry(leeway=max(0, round(self.leeway)), **options)
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise AuthenticationFailed(f"OIDC token expired at {_utc(claims['exp']).isoformat()}") from None
        except MissingClaimError as exc:
            raise AuthenticationFailed(f"OIDC token lacks the claim(s) {exc.claim}") from None
        except InvalidClaimError as exc:
            raise AuthenticationFailed(
                f"OIDC token refused: {_claim_problem(exc.claim, claims, self.issuer, audience)}"
            ) from None

    def _user(self, claims: Mapping[str, Any]) -> str:
        for name in (self.user_claim, "sub"):
            value = claims.get(name)
            if isinstance(value, str) and value:
                return value
        raise AuthenticationFailed(f"OIDC token names no user (no {self.user_claim!r} or 'sub' claim)")

    def _groups(self, claims: Mapping[str, Any]) -> frozenset[str]:
        value = claims.get(self.groups_claim)
        if value is None:
            return frozenset()
        if isinstance(value, str):
            return frozenset({value})
        if isinstance(value, list) and all(isinstance(g, str) for g in value):
            return frozenset(value)
        raise AuthenticationFailed(f"OIDC token malformed: {self.groups_claim!r} is not a list of names")

    # -- the key set ---------------------------------------------------------------------------

    def _key(self, kid: str | None) -> Key:
        with self._lock:
            keys, age = self._keys, self._monotonic() - self._fetched_at
        if keys is None or age > self.max_age:
            keys = self._refresh()
        key = _pick(keys, kid)
        if key is None:  # the IdP may have rotated its keys since we last looked
            key = _pick(self._refresh(), kid)
        if key is None:
            raise AuthenticationFailed(f"OIDC token refused: unknown signing key (kid {_short(kid)})")
        return key

    def _refresh(self) -> dict[str | None, Key]:
        """Fetch the key set unless it was fetched (or tried) in the last refetch_interval
        seconds; the key set now in force (the old one if the fetch failed)."""
        with self._fetch_lock:
            with self._lock:
                now = self._monotonic()
                recent = self._attempted_at is not None and now - self._attempted_at < self.refetch_interval
                if not recent:
                    self._attempted_at = now
                keys, failure = self._keys, self._failure
            if not recent:
                try:
                    keys = self._fetch_keys()
                    failure = None
                except AuthenticationFailed as exc:
                    failure = str(exc)
                    log.warning("%s", failure)
                with self._lock:
                    self._failure = failure
                    if failure is None:
                        self._keys, self._fetched_at = keys, now
                    keys = self._keys
            if keys is None:
                raise AuthenticationFailed(failure or "identity provider unreachable")
            return keys

    def _fetch_keys(self) -> dict[str | None, Key]:
        if self._jwks_url is None:
            jwks_uri = self.discovery().get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise AuthenticationFailed(
                    "identity provider misconfigured: no jwks_uri in the discovery document of "
                    + _redact(self.issuer)
                )
            self._jwks_url = jwks_uri
        return _import_keys(self._get_json(self._jwks_url), _redact(self._jwks_url))

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            # the exception's text may carry the URL's credentials: name its type only
            raise AuthenticationFailed(
                f"identity provider unreachable ({type(exc).__name__} at {_redact(url)})"
            ) from None
        if response.status_code != 200:
            raise AuthenticationFailed(
                f"identity provider unreachable (HTTP {response.status_code} at {_redact(url)})"
            )
        if len(response.content) > _MAX_DOCUMENT:
            raise AuthenticationFailed(f"identity provider misconfigured: {_redact(url)} is too large")
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise AuthenticationFailed(
                f"identity provider misconfigured: {_redact(url)} is not a JSON object"
            )
        return doc


def _header(token: str) -> dict[str, Any]:
    """The token's JOSE header, before anything is verified (to choose the key)."""
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or token.count(".") != 2:
        raise AuthenticationFailed("OIDC token malformed: not a compact JWS (three dot-separated parts)")
    try:
        return dict(jws.extract_compact(token.encode("ascii")).headers())
    except (JoseError, ValueError, TypeError) as exc:
        raise AuthenticationFailed(f"OIDC token malformed ({type(exc).__name__} in its header)") from None


def _import_keys(doc: Mapping[str, Any], where: str) -> dict[str | None, Key]:
    """The signature keys of a JWKS, by kid: asymmetric keys only (an ``oct`` key would be a
    shared secret), none marked for encryption; keys this library cannot read are skipped."""
    entries = doc.get("keys")
    if not isinstance(entries, list):
        raise AuthenticationFailed(f"identity provider misconfigured: {where} has no 'keys' list")
    keys: dict[str | None, Key] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if entry.get("use", "sig") != "sig" or "verify" not in entry.get("key_ops", ["verify"]):
            continue
        try:
            key = import_key(entry)
        except (JoseError, ValueError, TypeError):
            log.warning("skipped an unreadable key (kid %s) in %s", _short(entry.get("kid")), where)
            continue
        keys.setdefault(key.kid, key)
    return keys


def _pick(keys: Mapping[str | None, Key], kid: str | None) -> Key | None:
    """The key named ``kid``; a token without one may use the set's only key."""
    if kid is None and len(keys) == 1:
        return next(iter(keys.values()))
    return keys.get(kid)


def _claim_problem(claim: str, claims: Mapping[str, Any], issuer: str, audience: str) -> str:
    if claim == "iss":
        return f"wrong issuer {_short(claims.get('iss'))} (expected {issuer!r})"
    if claim == "aud":
        return f"wrong audience {_short(claims.get('aud'))} (expected {audience!r})"
    if claim == "nonce":
        return "its nonce does not belong to this sign-in (replayed?)"
    if claim in ("nbf", "iat"):
        return f"not yet valid ({claim} is in the future)"
    return f"invalid {claim!r} claim"


def _utc(timestamp: float) -> datetime:
    """A NumericDate as an aware UTC datetime (a malformed token if out of range)."""
    try:
        return datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):
        raise AuthenticationFailed("OIDC token malformed: a time claim is out of range") from None


def _short(value: object) -> str:
    """A value from the token, quoted and cut short (it is the sender's text)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _redact(url: str) -> str:
    """``url`` without user:password or query (either may hold a credential)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
