"""Signing keys, JWTs and a loopback identity provider for tests of OIDC: keys made with
``cryptography``, tokens in the RFC 7515 compact serialization written out here (not by
joserfc), so widecube's verifier is checked against an independent implementation of the
format; :class:`LoginIdP` answers the authorization code flow with PKCE as a real IdP does
(the PKCE verifier checked against the challenge with hashlib, the redirect URI, the client's
secret, one use per code), signing the user in at once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64int(n: int, size: int | None = None) -> str:
    return b64(n.to_bytes(size or (n.bit_length() + 7) // 8, "big"))


def compact(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def hmac_signer(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


@dataclass
class SigningKey:
    """A key the test IdP signs with: its private half, and its public JWK."""

    kid: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    @property
    def alg(self) -> str:
        return "RS256" if isinstance(self.private, rsa.RSAPrivateKey) else "ES256"

    def jwk(self) -> dict[str, str]:
        if isinstance(self.private, rsa.RSAPrivateKey):
            pub = self.private.public_key().public_numbers()
            return {
                "kty": "RSA",
                "kid": self.kid,
                "use": "sig",
                "alg": "RS256",
                "n": b64int(pub.n),
                "e": b64int(pub.e),
            }
        point = self.private.public_key().public_numbers()
        return {
            "kty": "EC",
            "kid": self.kid,
            "use": "sig",
            "crv": "P-256",
            "x": b64int(point.x, 32),
            "y": b64int(point.y, 32),
        }

    def raw_sign(self, data: bytes) -> bytes:
        if isinstance(self.private, rsa.RSAPrivateKey):
            return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JWS wants r || s, not DER

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, **header: Any) -> str:
        head = {"alg": self.alg, "typ": "JWT", "kid": self.kid if kid is None else kid, **header}
        return compact(head, claims, self.raw_sign)

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


CLIENT = "widecube-ui"
REALM = "/realms/lab"


@dataclass
class LoginIdP:
    """An IdP that signs the user in at once (as when the user already has an IdP session)."""

    key: SigningKey
    base: str = ""
    user: str = "ana"
    groups: list[str] = field(default_factory=lambda: ["lab"])
    secret: str | None = None  # the confidential client's secret
    nonce_override: str | None = None  # sign a wrong nonce (a replayed ID token)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    exchanges: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def issuer(self) -> str:
        return self.base + REALM

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": self.issuer + "/keys",
            "authorization_endpoint": self.issuer + "/auth",
            "token_endpoint": self.issuer + "/token",
        }

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str]]:
        """302 back to the client's redirect URI with a fresh code and the state."""
        assert query["response_type"] == "code" and query["client_id"] == CLIENT
        assert "openid" in query["scope"].split()
        assert query["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.codes[code] = query
        target = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
        return 302, {"Location": target}

    def token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.exchanges.append(form)
            asked = self.codes.pop(form.get("code", ""), None)  # a code works once
        if self.secret is not None:  # client_secret_basic: form-encoded halves (RFC 6749, 2.3.1)
            scheme, _, encoded = (authorization or "").partition(" ")
            pair = base64.b64decode(encoded).decode() if scheme == "Basic" else ":"
            client_id, _, secret = pair.partition(":")
            if (unquote_plus(client_id), unquote_plus(secret)) != (
                CLIENT,
                self.secret,
            ) or "client_secret" in form:
                return 401, {"error": "invalid_client"}
        elif form.get("client_id") != CLIENT:
            return 401, {"error": "invalid_client"}
        if asked is None or form.get("grant_type") != "authorization_code":
            return 400, {"error": "invalid_grant"}
        if form.get("redirect_uri") != asked["redirect_uri"]:
            return 400, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != asked["code_challenge"]:
            return 400, {"error": "invalid_grant"}
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT,
            "sub": "f81d4fae",
            "preferred_username": self.user,
            "groups": self.groups,
            "iat": now,
            "exp": now + 300,
            "nonce": self.nonce_override or asked["nonce"],
        }
        return 200, {"id_token": self.key.sign(claims), "access_token": "opaque", "token_type": "Bearer"}


@contextmanager
def serving(state: LoginIdP) -> Iterator[LoginIdP]:
    """Serve ``state``'s IdP on a free loopback port for the block."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == REALM + "/.well-known/openid-configuration":
                self._send(200, state.discovery())
            elif url.path == REALM + "/keys":
                self._send(200, {"keys": [state.key.jwk()]})
            elif url.path == REALM + "/auth":
                status, headers = state.authorize({k: v[0] for k, v in parse_qs(url.query).items()})
                self._send(status, None, headers)
            else:
                self._send(404, {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if urlsplit(self.path).path != REALM + "/token":
                return self._send(404, {})
            status, body = state.token(form, self.headers.get("Authorization"))
            self._send(status, body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()
