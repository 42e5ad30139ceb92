"""Signing the web UI in through an institute's identity provider: OpenID Connect's
authorization code flow, with PKCE (RFC 7636, ``S256``) and a nonce.

1. :meth:`OidcLogin.start` makes a fresh ``state``, ``nonce`` and PKCE verifier, and returns
   the IdP's authorization URL (from its discovery document) and the value of a short-lived
   *flow cookie* that holds the three, signed with the server's session key (itsdangerous), so
   any replica can finish the flow and nothing is kept in server memory.
2. The IdP sends the browser back to ``/api/v1/session/oidc/callback?code=…&state=…``.
   :meth:`OidcLogin.finish` checks ``state`` against the flow cookie (in constant time),
   exchanges the code at the IdP's token endpoint (with the PKCE verifier; with HTTP Basic
   client authentication when a client secret is configured, else as a public client), and
   verifies the returned ID token with :class:`~._oidc.OidcVerifier` (signature against the
   JWKS, issuer, audience = the client id, expiry, and the nonce).

The protocol's messages are formatted by authlib (``prepare_grant_uri``,
``prepare_token_request``, ``create_s256_code_challenge``); the HTTP is the verifier's client.
Every refusal is an :class:`~widecube.errors.AuthenticationFailed` saying why, never quoting
the code, the client secret or a token.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx2 as httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import SecretStr

from ..errors import AuthenticationFailed
from ._oidc import Identity, OidcVerifier, _redact

__all__ = ["FLOW_MAX_AGE", "LoginStart", "OidcLogin"]

FLOW_MAX_AGE = 600
"""Seconds a user has to finish signing in at the IdP."""


@dataclass(frozen=True, slots=True)
class LoginStart:
    """Where to send the browser, and the flow cookie's value to set on the way (for
    ``max_age`` seconds)."""

    url: str
    flow: str
    max_age: int = FLOW_MAX_AGE


class OidcLogin:
    """The UI's OIDC sign-in for one client registered at the verifier's issuer."""

    def __init__(
        self,
        verifier: OidcVerifier,
        *,
        client_id: str,
        client_secret: SecretStr | None,
        scopes: str,
        key: str,
    ) -> None:
        self.verifier, self.client_id, self.scopes = verifier, client_id, scopes
        self._secret = client_secret
        self._flows = URLSafeTimedSerializer(key, salt="widecube-oidc-flow")

    def start(self, redirect_uri: str) -> LoginStart:
        """The authorization URL to redirect to, and the flow cookie that goes with it."""
        endpoint = self._endpoint("authorization_endpoint")
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        url = prepare_grant_uri(
            endpoint,
            self.client_id,
            "code",
            redirect_uri=redirect_uri,
            scope=self.scopes,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        flow = self._flows.dumps({"s": state, "n": nonce, "v": verifier, "r": redirect_uri})
        return LoginStart(url=url, flow=flow)

    def finish(self, *, code: str | None, state: str | None, flow: str | None) -> Identity:
        """Who signed in, from the callback's ``code`` and ``state`` and the flow cookie."""
        if flow is None:
            raise AuthenticationFailed("the sign-in was not started here (no sign-in cookie): start again")
        try:
            data = self._flows.loads(flow, max_age=FLOW_MAX_AGE)
            expected, nonce, verifier, redirect_uri = (str(data[k]) for k in ("s", "n", "v", "r"))
        except (BadSignature, KeyError, TypeError):
            raise AuthenticationFailed(
                f"the sign-in took longer than {FLOW_MAX_AGE // 60} minutes or its cookie is not valid: "
                "start again"
            ) from None
        if not state or not hmac.compare_digest(state.encode(), expected.encode()):
            raise AuthenticationFailed(
                "the identity provider's answer does not belong to this sign-in (state)"
            )
        if not code:
            raise AuthenticationFailed("the identity provider sent no authorization code")
        tokens = self._exchange(code, verifier, redirect_uri)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise AuthenticationFailed(
                "the identity provider's token answer has no ID token (is 'openid' in scope?)"
            )
        return self.verifier.verify(id_token, audience=self.client_id, nonce=nonce)

    def _exchange(self, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
        endpoint = self._endpoint("token_endpoint")
        body = prepare_token_request(
            "authorization_code",
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=verifier,
            client_id=None if self._secret is not None else self.client_id,
        )
        # client_secret_basic: both halves form-encoded first (RFC 6749, 2.3.1)
        secret = None if self._secret is None else self._secret.get_secret_value()
        basic = (
            None
            if secret is None
            else httpx.BasicAuth(quote(self.client_id, safe=""), quote(secret, safe=""))
        )
        try:
            response = self.verifier.http.post(
                endpoint,
                content=body,
                headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                auth=httpx.USE_CLIENT_DEFAULT if basic is None else basic,
            )
        except httpx.HTTPError as exc:
            raise AuthenticationFailed(
                f"identity provider unreachable ({type(exc).__name__} at {_redact(endpoint)})"
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 200 or not isinstance(answer, dict):
            error = answer.get("error") if isinstance(answer, dict) else None
            sane = isinstance(error, str) and error.isascii() and error.isprintable() and len(error) < 64
            raise AuthenticationFailed(
                "the identity provider refused the authorization code "
                f"(HTTP {response.status_code}, {repr(error) if sane else 'no reason given'})"
            )
        return answer

    def _endpoint(self, name: str) -> str:
        url = self.verifier.discovery().get(name)
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise AuthenticationFailed(
                f"identity provider misconfigured: its discovery document has no {name}"
            )
        return url
