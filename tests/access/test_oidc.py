"""OIDC bearer tokens (widecube.access._oidc) against a real identity provider on loopback.

The IdP is an http.server in a thread serving a discovery document and a JWKS; the tests
make their own RSA and EC keys with ``cryptography`` and sign tokens by hand (RFC 7515
compact serialization written out here, not by joserfc), so the verifier is checked
against an independent implementation of the format.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from _idp import SigningKey, b64, compact, hmac_signer
from widecube.access._oidc import Identity, OidcVerifier
from widecube.config import Settings
from widecube.errors import AuthenticationFailed

AUDIENCE = "widecube"
DISCOVERY = "/realms/lab/.well-known/openid-configuration"
JWKS = "/realms/lab/keys"


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey("rsa-1", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey("ec-1", ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def other_rsa_key() -> SigningKey:
    return SigningKey("rsa-2", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@dataclass
class IdP:
    """What the loopback identity provider serves, and how often each path was asked for."""

    base: str = ""
    issuer: str = ""
    keys: list[SigningKey] = field(default_factory=list)
    discovery_issuer: str | None = None  # None: the real issuer
    status: int = 200
    hits: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def document(self, path: str) -> dict[str, Any] | None:
        if path == DISCOVERY:
            issuer = self.issuer if self.discovery_issuer is None else self.discovery_issuer
            return {
                "issuer": issuer,
                "jwks_uri": self.base + JWKS,
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        if path == JWKS:
            return {"keys": [k.jwk() for k in self.keys]}
        return None


@pytest.fixture
def idp(rsa_key: SigningKey, ec_key: SigningKey) -> Iterator[IdP]:
    state = IdP(keys=[rsa_key, ec_key])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.hits[self.path] += 1
                doc = state.document(self.path)
                status = state.status if doc is not None else 404
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    state.issuer = state.base + "/realms/lab"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


class Clock:
    """A monotonic clock the test moves by hand (the refetch throttle reads it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(idp: IdP, clock: Clock) -> Iterator[OidcVerifier]:
    v = OidcVerifier(idp.issuer, AUDIENCE)
    v._monotonic = clock
    yield v
    v.close()


def claims(idp: IdP, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": idp.issuer,
        "aud": AUDIENCE,
        "sub": "f81d4fae-7dec",
        "preferred_username": "ana",
        "groups": ["lab", "admins"],
        "iat": now,
        "exp": now + 300,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def refused(verifier: OidcVerifier, token: str, why: str) -> AuthenticationFailed:
    """Verify that ``token`` is refused with a message containing ``why`` and none of it."""
    with pytest.raises(AuthenticationFailed) as info:
        verifier.verify(token)
    message = str(info.value)
    assert why in message, message
    for part in [token, *token.split(".")]:
        assert len(part) < 8 or part not in message, "the message repeats the token"
    return info.value


# -- accepted ----------------------------------------------------------------------------------


def test_rs256_token_names_user_groups_and_expiry(
    verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey
) -> None:
    c = claims(idp)
    identity = verifier.verify(rsa_key.sign(c))
    assert identity == Identity(
        user="ana",
        groups=frozenset({"lab", "admins"}),
        expires_at=datetime.fromtimestamp(c["exp"], tz=UTC),
        issuer=idp.issuer,
    )
    assert identity.expires_at.utcoffset() == timedelta(0)


def test_es256_token_with_audience_list_and_sub_fallback(
    verifier: OidcVerifier, idp: IdP, ec_key: SigningKey
) -> None:
    c = claims(idp, aud=["account", AUDIENCE], preferred_username=None, groups=None)
    identity = verifier.verify(ec_key.sign(c))
    assert (identity.user, identity.groups) == ("f81d4fae-7dec", frozenset())
    assert identity.expires_at == datetime.fromtimestamp(c["exp"], tz=UTC)


def test_configured_user_and_groups_claims(idp: IdP, rsa_key: SigningKey) -> None:
    v = OidcVerifier(idp.issuer, AUDIENCE, user_claim="email", groups_claim="roles")
    try:
        identity = v.verify(rsa_key.sign(claims(idp, email="ana@lab.org", roles=["curator"])))
    finally:
        v.close()
    assert (identity.user, identity.groups) == ("ana@lab.org", frozenset({"curator"}))


def test_explicit_jwks_url_skips_discovery(idp: IdP, rsa_key: SigningKey) -> None:
    v = OidcVerifier(idp.issuer, AUDIENCE, jwks_url=idp.base + JWKS)
    try:
        assert v.verify(rsa_key.sign(claims(idp))).user == "ana"
    finally:
        v.close()
    assert idp.hits == Counter({JWKS: 1})


def test_expiry_within_leeway_is_accepted(verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey) -> None:
    assert verifier.verify(rsa_key.sign(claims(idp, exp=int(time.time()) - 5))).user == "ana"


# -- refused: claims -----------------------------------------------------------------------------


def test_expired(verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey) -> None:
    exp = int(time.time()) - 120
    err = refused(verifier, rsa_key.sign(claims(idp, exp=exp)), "expired")
    assert datetime.fromtimestamp(exp, UTC).isoformat() in str(err)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_not_yet_valid(verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey, claim: str) -> None:
    refused(verifier, rsa_key.sign(claims(idp, **{claim: int(time.time()) + 600})), "not yet valid")


def test_wrong_issuer_must_match_exactly(verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey) -> None:
    refused(verifier, rsa_key.sign(claims(idp, iss=idp.issuer + "/")), "wrong issuer")
    refused(verifier, rsa_key.sign(claims(idp, iss="https://evil.example")), "wrong issuer")


def test_wrong_audience(verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey) -> None:
    refused(verifier, rsa_key.sign(claims(idp, aud="another-service")), "wrong audience")
    refused(verifier, rsa_key.sign(claims(idp, aud=["a", "b"])), "wrong audience")


@pytest.mark.parametrize("missing", ["exp", "aud", "iss"])
def test_required_claim_missing(verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey, missing: str) -> None:
    refused(verifier, rsa_key.sign(claims(idp, **{missing: None})), f"lacks the claim(s) {missing}")


def test_no_user_claim_at_all(verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey) -> None:
    refused(verifier, rsa_key.sign(claims(idp, sub=None, preferred_username=None)), "names no user")


# -- refused: signature and key ------------------------------------------------------------------


def test_tampered_payload(verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey) -> None:
    head, _, sig = rsa_key.sign(claims(idp)).split(".")
    forged = b64(json.dumps(claims(idp, preferred_username="root", groups=["admins"])).encode())
    refused(verifier, f"{head}.{forged}.{sig}", "bad signature")


def test_key_not_in_jwks(
    verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey, other_rsa_key: SigningKey
) -> None:
    # the stranger claims a published kid: the published key does not verify its signature
    refused(verifier, other_rsa_key.sign(claims(idp), kid=rsa_key.kid), "bad signature")
    refused(verifier, other_rsa_key.sign(claims(idp)), "unknown signing key")


def test_key_of_the_wrong_type_for_the_alg(
    verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    # rsa-1's JWK says alg RS256; ec-1's says no alg, but it is a P-256 key, not RSA
    refused(verifier, compact({"alg": "ES256", "kid": "rsa-1"}, claims(idp), ec_key.raw_sign), "is for RS256")
    refused(verifier, compact({"alg": "RS256", "kid": "ec-1"}, claims(idp), rsa_key.raw_sign), "does not fit")
    refused(verifier, compact({"alg": "ES384", "kid": "ec-1"}, claims(idp), ec_key.raw_sign), "does not fit")


@pytest.mark.parametrize("header", [{"alg": ["RS256"], "kid": "rsa-1"}, {"alg": "RS256", "kid": ["rsa-1"]}])
def test_malformed_header_values(
    verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey, header: dict[str, Any]
) -> None:
    with pytest.raises(AuthenticationFailed):
        verifier.verify(compact(header, claims(idp), rsa_key.raw_sign))


def test_alg_none(verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey) -> None:
    token = compact({"alg": "none", "kid": rsa_key.kid}, claims(idp), lambda _: b"")
    refused(verifier, token, "algorithm 'none' is not accepted")
    refused(verifier, token.rstrip(".") + ".", "algorithm 'none'")


def test_hs256_signed_with_the_public_key_is_refused(
    verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey
) -> None:
    """Algorithm confusion: the RSA public key (PEM, or its JWK's n) used as an HMAC secret."""
    for secret in (rsa_key.public_pem(), json.dumps(rsa_key.jwk()).encode()):
        token = compact({"alg": "HS256", "kid": rsa_key.kid}, claims(idp), hmac_signer(secret))
        refused(verifier, token, "algorithm 'HS256' is not accepted")


def test_oct_key_in_the_jwks_is_never_used(verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey) -> None:
    secret = b"shared-secret-0123456789abcdef01"

    class Oct(SigningKey):
        def jwk(self) -> dict[str, str]:
            return {"kty": "oct", "kid": "oct-1", "k": b64(secret), "alg": "RS256"}

    idp.keys.append(Oct("oct-1", rsa_key.private))
    token = compact({"alg": "HS256", "kid": "oct-1"}, claims(idp), hmac_signer(secret))
    refused(verifier, token, "algorithm 'HS256'")
    refused(verifier, rsa_key.sign(claims(idp), kid="oct-1"), "unknown signing key")


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "e30.e30.", "!!!.???.***", "é.é.é"])
def test_malformed(verifier: OidcVerifier, token: str) -> None:
    refused(verifier, token, "malformed")


# -- the key set: rotation, throttle, threads ------------------------------------------------------


def test_key_rotation(
    verifier: OidcVerifier, idp: IdP, clock: Clock, rsa_key: SigningKey, other_rsa_key: SigningKey
) -> None:
    old_token = rsa_key.sign(claims(idp))
    assert verifier.verify(old_token).user == "ana"
    assert idp.hits[JWKS] == 1
    idp.keys = [other_rsa_key]  # the IdP rotates: rsa-2 in, rsa-1 (and ec-1) out
    new_token = other_rsa_key.sign(claims(idp, preferred_username="bo"))

    clock.now += 10  # within the throttle window: the unknown kid cannot make us refetch
    refused(verifier, new_token, "unknown signing key")
    assert idp.hits[JWKS] == 1
    assert verifier.verify(old_token).user == "ana"  # still cached: nothing told us otherwise

    clock.now += 25
    assert verifier.verify(new_token).user == "bo"  # refetched
    assert idp.hits[JWKS] == 2
    refused(verifier, old_token, "unknown signing key")  # removed keys no longer verify
    assert idp.hits == Counter({DISCOVERY: 1, JWKS: 2})  # discovery is remembered


def test_unknown_kids_refetch_at_most_once_per_window(
    verifier: OidcVerifier, idp: IdP, clock: Clock, other_rsa_key: SigningKey
) -> None:
    with pytest.raises(AuthenticationFailed):
        verifier.verify(other_rsa_key.sign(claims(idp), kid="rsa-1"))  # warms the cache (bad signature)
    assert idp.hits[JWKS] == 1
    clock.now += 31
    junk = [other_rsa_key.sign(claims(idp), kid=f"junk-{i}") for i in range(10)]

    def attempt(token: str) -> str:
        try:
            verifier.verify(token)
        except AuthenticationFailed as exc:
            return str(exc)
        return "accepted"

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(attempt, junk))
    assert all("unknown signing key" in o for o in outcomes), outcomes
    assert idp.hits[JWKS] == 2  # exactly one refetch for ten unknown kids
    for token in junk:  # and none for more of them in the same window
        refused(verifier, token, "unknown signing key")
    assert idp.hits[JWKS] == 2


def test_cold_cache_from_many_threads_fetches_once(
    verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    tokens = [
        (rsa_key if i % 2 else ec_key).sign(claims(idp, sub=f"user-{i}", preferred_username=None))
        for i in range(32)
    ]
    with ThreadPoolExecutor(8) as pool:
        users = list(pool.map(lambda t: verifier.verify(t).user, tokens))
    assert users == [f"user-{i}" for i in range(32)]
    assert idp.hits == Counter({DISCOVERY: 1, JWKS: 1})


def test_keys_are_refreshed_after_max_age(
    verifier: OidcVerifier, idp: IdP, clock: Clock, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    token = rsa_key.sign(claims(idp))
    verifier.verify(token)
    idp.keys = [ec_key]  # rsa-1 withdrawn (say, compromised), and no token names an unknown kid
    clock.now += verifier.max_age + 1
    refused(verifier, token, "unknown signing key")
    assert idp.hits[JWKS] == 2


# -- the identity provider -----------------------------------------------------------------------


def test_discovery_issuer_mismatch(verifier: OidcVerifier, idp: IdP, rsa_key: SigningKey) -> None:
    idp.discovery_issuer = "https://evil.example/realms/lab"
    refused(
        verifier,
        rsa_key.sign(claims(idp)),
        "discovery document names issuer 'https://evil.example/realms/lab'",
    )
    assert idp.hits[JWKS] == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("discover", [True, False])
def test_idp_down_is_unreachable_and_leaks_no_credential(rsa_key: SigningKey, discover: bool) -> None:
    base = f"http://admin:s3cret-pw@127.0.0.1:{_closed_port()}"
    issuer = base + "/realms/lab"
    v = OidcVerifier(issuer, AUDIENCE, jwks_url=None if discover else base + "/keys?token=qs-secret")
    try:
        token = rsa_key.sign({"iss": issuer, "aud": AUDIENCE, "sub": "ana", "exp": int(time.time()) + 60})
        err = refused(v, token, "identity provider unreachable")
    finally:
        v.close()
    chain: list[BaseException] = []  # what a traceback would print: the error and its causes
    exc: BaseException | None = err
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    assert chain == [err]
    assert "s3cret" not in str(err) and "qs-secret" not in str(err)


def test_idp_errors_are_retried_only_after_the_window(
    verifier: OidcVerifier, idp: IdP, clock: Clock, rsa_key: SigningKey
) -> None:
    idp.status = 503
    token = rsa_key.sign(claims(idp))
    refused(verifier, token, "identity provider unreachable (HTTP 503")
    refused(verifier, token, "identity provider unreachable (HTTP 503")
    assert idp.hits == Counter({DISCOVERY: 1})
    idp.status = 200
    clock.now += 31
    assert verifier.verify(token).user == "ana"
    assert idp.hits == Counter({DISCOVERY: 2, JWKS: 1})


# -- settings ------------------------------------------------------------------------------------


def test_from_settings(tmp_path: Path) -> None:
    assert OidcVerifier.from_settings(Settings(storage=tmp_path)) is None
    with pytest.raises(ValueError, match="WIDECUBE_OIDC_AUDIENCE"):
        OidcVerifier.from_settings(Settings(storage=tmp_path, oidc_issuer="https://idp.example"))
    v = OidcVerifier.from_settings(
        Settings(
            storage=tmp_path,
            oidc_issuer="https://idp.example",
            oidc_audience="wc",
            oidc_jwks_url="https://idp.example/certs",
            oidc_user_claim="email",
            oidc_groups_claim="roles",
        )
    )
    assert v is not None
    try:
        assert (v.issuer, v.audience, v._jwks_url, v.user_claim, v.groups_claim) == (
            "https://idp.example",
            "wc",
            "https://idp.example/certs",
            "email",
            "roles",
        )
    finally:
        v.close()


def test_an_oidc_bearer_token_reaches_the_api_with_its_groups(
    idp: IdP, rsa_key: SigningKey, tmp_path: Path
) -> None:
    """End to end: the API takes the IdP's JWT, the user's groups from its claims meet a
    group grant, and a token that fails its checks is a 401 (never anonymous)."""
    import anndata  # noqa: F401  (the h5ad writer below needs it)
    from starlette.testclient import TestClient

    from _data import small_adata, write_h5ad
    from widecube.access import Actor, Governance
    from widecube.api import create_app
    from widecube.catalog import Catalog
    from widecube.pipeline import Jobs

    settings = Settings(storage=tmp_path / "store", auth=True, oidc_issuer=idp.issuer, oidc_audience=AUDIENCE)
    cli = Actor.cli("test-admin")
    source = write_h5ad(small_adata(), tmp_path / "d.h5ad")
    with Catalog(settings.catalog_url) as catalog:
        Jobs(settings, catalog).ingest(source, dataset="d1", groupbys=["donor"], actor=cli)
        Governance(catalog, auth=True).grant("d1", "group:lab", "reader", actor=cli)
    with TestClient(create_app(settings, upkeep=False, jobs=False)) as client:

        def get(path: str, token: str) -> Any:
            return client.get(path, headers={"Authorization": f"Bearer {token}"})

        member = rsa_key.sign(claims(idp))
        assert get("/api/v1/datasets/d1", member).status_code == 200
        me = get("/api/v1/session", member).json()
        assert (me["user"], me["via"], me["groups"]) == ("ana", "oidc", ["admins", "lab"])
        outsider = rsa_key.sign(claims(idp, preferred_username="bo", groups=["other"]))
        assert get("/api/v1/datasets/d1", outsider).status_code == 404
        assert {d["name"] for d in get("/api/v1/datasets", outsider).json()} == set()
        expired = rsa_key.sign(claims(idp, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200))
        answer = get("/api/v1/datasets/d1", expired)
        assert answer.status_code == 401 and "expired" in answer.json()["detail"]
        assert expired not in answer.text
        forged = member[: member.rindex(".") + 1] + "A" * 20
        assert get("/api/v1/datasets/d1", forged).status_code == 401
