"""The web UI's sign-in through an identity provider (OIDC authorization code flow with PKCE
and a nonce), end to end: a loopback IdP with real authorization and token endpoints, the
browser's part played by the test (following each redirect by hand), the API in-process.

The IdP checks what a real one checks (the PKCE verifier against the challenge, computed here
with hashlib; the redirect URI; the client's secret; one use per code) and signs the ID token
with the test's own key (tests/_idp.py), so widecube's side is checked against independent code.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2 as httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient

from _data import small_adata, write_h5ad
from _idp import CLIENT, LoginIdP, SigningKey, serving
from widecube.access import Actor, Governance
from widecube.api import create_app
from widecube.catalog import Catalog
from widecube.config import Settings
from widecube.pipeline import Jobs


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey("rsa-login", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture
def idp(key: SigningKey) -> Iterator[LoginIdP]:
    with serving(LoginIdP(key)) as state:
        yield state


def _settings(tmp_path: Path, idp: LoginIdP, **more: Any) -> Settings:
    return Settings(
        storage=tmp_path / "store",
        auth=True,
        oidc_issuer=idp.issuer,
        oidc_audience="widecube-api",
        oidc_client_id=CLIENT,
        **more,
    )


@pytest.fixture(scope="module")
def restricted_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A storage root (files and catalog) holding a restricted dataset ``d1`` readable by group
    ``lab``, ingested once for the module into a folder no test touches."""
    root = tmp_path_factory.mktemp("restricted")
    settings = Settings(storage=root / "store", auth=True)
    cli = Actor.cli("test-admin")
    source = write_h5ad(small_adata(), root / "d.h5ad")
    with Catalog(settings.catalog_url) as catalog:
        Jobs(settings, catalog).ingest(source, dataset="d1", groupbys=["donor"], actor=cli)
        gov = Governance(catalog, auth=True)
        gov.set_policy("d1", visibility="restricted", actor=cli)
        gov.grant("d1", "group:lab", "reader", actor=cli)
    return settings.storage


@pytest.fixture
def restricted(tmp_path: Path, idp: LoginIdP, restricted_store: Path) -> Settings:
    """A copy of the module's storage root for each test (tests add and remove members and open
    sessions), served with this test's IdP: a copy costs far less than an ingest."""
    settings = _settings(tmp_path, idp)
    shutil.copytree(restricted_store, settings.storage)
    return settings


def _sign_in(browser: TestClient, idp: LoginIdP) -> httpx.Response:
    """Play the browser: start, follow the IdP's redirect, land on the callback."""
    start = browser.get("/api/v1/session/oidc/login", follow_redirects=False)
    assert start.status_code == 303, start.text
    to_idp = start.headers["location"]
    assert to_idp.startswith(idp.issuer + "/auth?")
    back = httpx.get(to_idp, follow_redirects=False)
    assert back.status_code == 302
    callback = urlsplit(back.headers["location"])
    assert callback.path == "/api/v1/session/oidc/callback"
    return browser.get(f"{callback.path}?{callback.query}", follow_redirects=False)


def _error_of(answer: httpx.Response) -> str:
    assert answer.status_code == 303
    location = urlsplit(answer.headers["location"])
    assert location.path == "/"
    return parse_qs(location.query)["signin_error"][0]


def test_sign_in_through_the_idp_opens_a_strict_session_with_the_idp_groups(
    restricted: Settings, idp: LoginIdP
) -> None:
    with TestClient(create_app(restricted, upkeep=False, jobs=False)) as browser:
        assert browser.get("/api/v1/session").json()["oidc"] is True
        assert browser.get("/api/v1/datasets/d1").status_code == 404  # anonymous: hidden
        start = browser.get("/api/v1/session/oidc/login", follow_redirects=False)
        flow_cookie = start.headers["set-cookie"]
        assert "HttpOnly" in flow_cookie and "SameSite=lax" in flow_cookie
        assert "Path=/api/v1/session/oidc" in flow_cookie
        asked = parse_qs(urlsplit(start.headers["location"]).query)
        assert asked["redirect_uri"] == ["http://testserver/api/v1/session/oidc/callback"]
        assert len(asked["nonce"][0]) >= 32 and len(asked["state"][0]) >= 32
        browser.cookies.clear()

        landed = _sign_in(browser, idp)
        assert landed.status_code == 303 and landed.headers["location"] == "/"
        session_cookie = next(c for c in landed.headers.get_list("set-cookie") if "widecube_session=" in c)
        assert "HttpOnly" in session_cookie and "SameSite=strict" in session_cookie
        assert "Max-Age=3600" in session_cookie  # WIDECUBE_OIDC_SESSION_SECONDS' default

        me = browser.get("/api/v1/session").json()
        assert (me["user"], me["via"], me["groups"]) == ("ana", "session", ["lab"])
        assert me["csrf"]
        assert browser.get("/api/v1/datasets/d1").status_code == 200  # the group grant applies
        # the token endpoint got the PKCE verifier (its S256 matched the challenge, else no session)
        assert len(idp.exchanges) == 1 and len(idp.exchanges[0]["code_verifier"]) >= 43
        # state changes still need the CSRF header
        assert browser.delete("/api/v1/session").status_code == 403
        assert browser.delete("/api/v1/session", headers={"X-CSRF-Token": me["csrf"]}).status_code == 204


def test_a_local_group_revocation_applies_to_an_open_idp_session(restricted: Settings, idp: LoginIdP) -> None:
    idp.groups = []  # the IdP names no group: access comes from a local group only
    cli = Actor.cli("test-admin")
    with Catalog(restricted.catalog_url) as catalog:
        Governance(catalog, auth=True).add_member("lab", "ana", actor=cli)
        with TestClient(create_app(restricted, upkeep=False, jobs=False)) as browser:
            _sign_in(browser, idp)
            assert browser.get("/api/v1/datasets/d1").status_code == 200
            Governance(catalog, auth=True).remove_member("lab", "ana", actor=cli)
            assert browser.get("/api/v1/datasets/d1").status_code == 404  # the very next request


def test_a_replayed_callback_or_a_foreign_state_is_refused_and_audited(
    restricted: Settings, idp: LoginIdP
) -> None:
    with TestClient(create_app(restricted, upkeep=False, jobs=False)) as browser:
        start = browser.get("/api/v1/session/oidc/login", follow_redirects=False)
        back = httpx.get(start.headers["location"], follow_redirects=False)
        callback = urlsplit(back.headers["location"])
        params = parse_qs(callback.query)
        forged = f"{callback.path}?" + urlencode({"code": params["code"][0], "state": "x" * 43})
        assert "does not belong to this sign-in" in _error_of(browser.get(forged, follow_redirects=False))
        # the flow cookie is gone after any callback: the genuine one cannot finish it either
        genuine = browser.get(f"{callback.path}?{callback.query}", follow_redirects=False)
        assert "start again" in _error_of(genuine)
        assert browser.get("/api/v1/session").json()["user"] is None
    with Catalog(restricted.catalog_url) as catalog:
        reasons = [r.event.detail.get("reason", "") for r in catalog.audit.rows(action="authenticate")]
    assert sum("OIDC sign-in" in r for r in reasons) == 2
    assert not any(params["code"][0] in r for r in reasons)


def test_an_id_token_with_another_nonce_is_refused(restricted: Settings, idp: LoginIdP) -> None:
    idp.nonce_override = "a-nonce-from-another-sign-in"
    with TestClient(create_app(restricted, upkeep=False, jobs=False)) as browser:
        assert "nonce" in _error_of(_sign_in(browser, idp))
        assert browser.get("/api/v1/datasets/d1").status_code == 404


def test_a_confidential_client_authenticates_with_its_secret(
    tmp_path: Path, idp: LoginIdP, restricted: Settings
) -> None:
    idp.secret = "s3cr/t:with+odd=chars%"  # the characters form-encoding changes
    good = _settings(tmp_path, idp, oidc_client_secret=idp.secret)
    with TestClient(create_app(good, upkeep=False, jobs=False)) as browser:
        assert _sign_in(browser, idp).headers["location"] == "/"
        assert browser.get("/api/v1/session").json()["user"] == "ana"
    wrong = _settings(tmp_path, idp, oidc_client_secret="not-it")
    with TestClient(create_app(wrong, upkeep=False, jobs=False)) as browser:
        problem = _error_of(_sign_in(browser, idp))
        assert "HTTP 401" in problem and "invalid_client" in problem and "not-it" not in problem


def test_the_idp_refusing_is_shown_in_the_ui(restricted: Settings, idp: LoginIdP) -> None:
    with TestClient(create_app(restricted, upkeep=False, jobs=False)) as browser:
        start = browser.get("/api/v1/session/oidc/login", follow_redirects=False)
        state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
        answer = browser.get(
            "/api/v1/session/oidc/callback",
            params={"error": "access_denied", "state": state},
            follow_redirects=False,
        )
        assert "access_denied" in _error_of(answer)


def test_an_ended_idp_session_is_a_401(restricted: Settings, idp: LoginIdP) -> None:
    with TestClient(create_app(restricted, upkeep=False, jobs=False)) as browser:
        identities = browser.app.state.identities  # type: ignore[attr-defined]
        from widecube.access._oidc import Identity

        who = Identity(user="ana", groups=frozenset({"lab"}), expires_at=None, issuer=idp.issuer)  # type: ignore[arg-type]
        _, ended, _ = identities.open_oidc_session(who, -1)
        browser.cookies.set("widecube_session", ended)
        answer = browser.get("/api/v1/datasets/d1")
        assert answer.status_code == 401 and "sign in again" in answer.json()["detail"]
        _, live, _ = identities.open_oidc_session(who, 60)
        browser.cookies.clear()
        browser.cookies.set("widecube_session", live)
        assert browser.get("/api/v1/datasets/d1").status_code == 200


def test_without_an_issuer_there_is_no_idp_sign_in(tmp_path: Path) -> None:
    settings = Settings(storage=tmp_path / "store", auth=True)
    with TestClient(create_app(settings, upkeep=False, jobs=False)) as browser:
        assert browser.get("/api/v1/session").json()["oidc"] is False
        assert browser.get("/api/v1/session/oidc/login", follow_redirects=False).status_code == 404
