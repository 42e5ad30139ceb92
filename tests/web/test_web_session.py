"""Signing the web UI in and out, in headless Chromium (Debian's, driven by Playwright) over a
real server with authentication on.

A small demo dataset is ingested as ``restricted`` and granted to one reader, whose API token
the tests type into the sign-in form or pass as a sign-in link's ``?token=``. What the browser
keeps is checked from outside the page: the session cookie's flags and value, the requests it
sent (every state-changing one carries the CSRF header and none is refused), the address bar,
and the Content-Security-Policy violations it recorded.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa

from _idp import CLIENT, LoginIdP, SigningKey, serving
from widecube.access import Actor, Governance
from widecube.api import create_app
from widecube.catalog import Catalog
from widecube.config import Settings
from widecube.demo import make_demo
from widecube.pipeline import ingest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
CLI = Actor.cli("test-admin")
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@dataclass(frozen=True)
class Served:
    url: str
    token: str  # the reader's API token
    gene: str
    settings: Settings


@pytest.fixture(scope="module")
def idp() -> Iterator[LoginIdP]:
    """The institute's identity provider: it signs ``ida`` (group ``lab``) in at once."""
    key = SigningKey("rsa-ui", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with serving(LoginIdP(key, user="ida", groups=["lab"])) as state:
        yield state


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, idp: LoginIdP) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("web-session")
    settings = Settings(
        storage=root / "store", auth=True, oidc_issuer=idp.issuer, oidc_audience="api", oidc_client_id=CLIENT
    )
    path = make_demo(root / "demo.h5ad", n_cells=600, n_genes=60, seed=3)
    ingest(path, dataset="lab", groupbys=["cell_type"], settings=settings)
    with Catalog(settings.catalog_url) as catalog:
        gov = Governance(catalog, auth=True)
        gov.set_policy("lab", visibility="restricted", actor=CLI)
        gov.grant("lab", "rita", "reader", actor=CLI)
        gov.grant("lab", "group:lab", "reader", actor=CLI)
        token = gov.create_token(user="rita", scope="read", actor=CLI).text
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    app = create_app(settings, upkeep=False, jobs=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    bearer = {"Authorization": f"Bearer {token}"}
    # build the included routers' routes before any concurrent request (see tests/web/test_web.py)
    httpx.post(f"{url}/api/v1/datasets/lab/genes/resolve", json={"query": []}, headers=bearer, timeout=30)
    gene = httpx.get(f"{url}/api/v1/datasets/lab/genes", params={"limit": 1}, headers=bearer, timeout=30)
    # the reference, from outside the UI: anonymous callers do not see the dataset, rita does
    assert httpx.get(f"{url}/api/v1/datasets", timeout=30).json() == []
    assert [d["name"] for d in httpx.get(f"{url}/api/v1/datasets", headers=bearer, timeout=30).json()] == [
        "lab"
    ]
    try:
        yield Served(url, token, gene.json()["genes"][0], settings)
    finally:
        server.should_exit = True
        thread.join()


@pytest.fixture(scope="module")
def browser(served: Served) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A page in a fresh browser context that records console errors, policy violations and
    every API response (method, URL, status, the CSRF header it was sent with)."""

    def __init__(self, context: Any, served: Served) -> None:
        self.context, self.served = context, served
        self.page = context.new_page()
        self.errors: list[str] = []
        self.responses: list[tuple[str, str, int, str | None]] = []
        self.page.add_init_script(RECORD_VIOLATIONS)
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on(
            "response",
            lambda r: self.responses.append(
                (r.request.method, r.url, r.status, r.request.headers.get("x-csrf-token"))
            ),
        )

    def open(self, query: str = "") -> None:
        self.page.goto(f"{self.served.url}/{query}")
        self.idle()

    def idle(self) -> None:
        self.page.wait_for_selector("body[data-state=ready]", timeout=20_000)
        self.page.wait_for_load_state("networkidle")
        self.page.wait_for_selector("body[data-state=ready]", timeout=20_000)

    def datasets(self) -> list[str]:
        return [str(v) for v in self.page.locator("#dataset option").evaluate_all("o => o.map(x => x.value)")]

    def sign_in(self, token: str) -> None:
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_label("API token").fill(token)
        self.page.locator("#sign-in-form").get_by_role("button", name="Sign in").click()

    def cookie(self) -> dict[str, Any] | None:
        found = [c for c in self.context.cookies() if c["name"] == "widecube_session"]
        return found[0] if found else None

    def violations(self) -> list[str]:
        return [str(v) for v in self.page.evaluate("window.__violations")]


@pytest.fixture
def ui(browser: Any, served: Served) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = Page(context, served)
    yield page
    violations = page.violations()
    context.close()
    assert violations == [], f"policy violations: {violations}"
    assert page.errors == [], f"console errors: {page.errors}"
    assert all(status < 500 for _, _, status, _ in page.responses), page.responses


def test_an_anonymous_visitor_sees_no_restricted_dataset_and_is_asked_to_sign_in(ui: Page) -> None:
    ui.open("?dataset=lab")
    assert ui.datasets() == []
    expect(ui.page.locator("#no-dataset")).to_contain_text("sign in")
    expect(ui.page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(ui.page.get_by_role("button", name="Sign out")).to_be_hidden()
    assert ui.cookie() is None
    ui.page.get_by_role("button", name="Sign in").click()
    box = ui.page.get_by_label("API token")
    expect(box).to_be_visible()
    assert box.get_attribute("type") == "password"


def test_signing_in_with_the_form_lists_the_dataset_and_queries_pass_the_csrf_check(
    ui: Page, served: Served
) -> None:
    ui.open()
    ui.sign_in(served.token)
    expect(ui.page.locator("#session-user")).to_have_text("Signed in as rita")
    expect(ui.page.get_by_role("button", name="Sign out")).to_be_visible()
    ui.idle()
    assert ui.datasets() == ["lab"]
    expect(ui.page.locator("#layout")).to_be_visible()
    expect(ui.page.locator("#no-dataset")).to_be_hidden()
    assert ui.page.get_by_label("API token").input_value() == ""  # the secret left the page
    box = ui.page.get_by_role("combobox", name="Add gene")
    box.fill(served.gene[:-1])
    ui.page.locator(f'#gene-options [role=option][data-gene="{served.gene}"]').click()
    ui.idle()
    circles = ui.page.locator(f'#dotplot-chart circle[data-gene="{served.gene}"]')
    assert circles.count() > 0
    # the cookie: HttpOnly, SameSite=Strict, and it does not hold the token
    cookie = ui.cookie()
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    secret = served.token.split("_", 2)[2]  # wc_<id>_<secret>; the secret may hold "_" itself
    assert len(secret) > 20 and served.token not in cookie["value"] and secret not in cookie["value"]
    assert ui.page.evaluate("document.cookie") == ""  # the page's scripts cannot read it
    # every state-changing request carried the session's CSRF secret; none was refused
    csrf = httpx.get(
        f"{served.url}/api/v1/session", cookies={"widecube_session": cookie["value"]}, timeout=30
    ).json()["csrf"]
    changing = [r for r in ui.responses if r[0] not in ("GET", "HEAD") and "/api/v1/datasets/" in r[1]]
    assert any(url.endswith("/genes/resolve") for _, url, _, _ in changing)  # the gene search's POST
    assert [(m, u, s) for m, u, s, sent in changing if sent != csrf or s != 200] == []
    assert [r for r in ui.responses if r[2] in (401, 403)] == []
    # reloading the page keeps the session (the CSRF secret comes back from GET /session)
    ui.open(f"?dataset=lab&gene={served.gene}")
    expect(ui.page.locator("#session-user")).to_have_text("Signed in as rita")
    assert circles.count() > 0
    ui.page.get_by_role("checkbox", name="Scale colour per gene").check()
    ui.idle()
    assert [r for r in ui.responses if r[2] in (401, 403)] == []


def test_a_sign_in_link_signs_in_and_leaves_the_address_bar(ui: Page, served: Served) -> None:
    ui.open(f"?token={served.token}&dataset=lab")
    expect(ui.page.locator("#session-user")).to_have_text("Signed in as rita")
    assert ui.datasets() == ["lab"]
    assert served.token not in ui.page.url and "token=" not in ui.page.url
    assert "dataset=lab" in ui.page.url
    ui.page.go_back()  # the entry was replaced, not pushed: Back leads to the blank page before it
    assert ui.page.url == "about:blank"
    # the secret went out once in the sign-in request's body, in no other request's address
    assert [url for _, url, _, _ in ui.responses[1:] if served.token in url] == []
    assert ("POST", f"{served.url}/api/v1/session") in {(m, u) for m, u, _, _ in ui.responses}
    cookie = ui.cookie()
    assert cookie is not None and served.token not in cookie["value"]


def test_signing_out_hides_the_dataset_again(ui: Page, served: Served) -> None:
    ui.open(f"?token={served.token}")
    ui.page.get_by_role("combobox", name="Add gene").fill(served.gene[:-1])
    ui.page.locator(f'#gene-options [role=option][data-gene="{served.gene}"]').click()
    ui.idle()
    assert ui.datasets() == ["lab"]
    ui.page.get_by_role("button", name="Sign out").click()
    expect(ui.page.get_by_role("button", name="Sign in")).to_be_visible()
    ui.idle()
    assert ui.datasets() == []
    expect(ui.page.locator("#no-dataset")).to_contain_text("sign in")
    expect(ui.page.locator("#layout")).to_be_hidden()
    expect(ui.page.locator("#session-user")).to_be_hidden()
    assert ui.cookie() is None
    assert "gene=" not in ui.page.url and "dataset=" not in ui.page.url
    signed_out = [r for r in ui.responses if r[0] == "DELETE"]
    assert [(status, sent is not None) for _, _, status, sent in signed_out] == [(204, True)]


def test_a_wrong_token_shows_the_error_line(ui: Page, served: Served) -> None:
    ui.open()
    wrong = "wc_000000000000_" + "y" * 43
    ui.sign_in(wrong)
    line = ui.page.locator("#sign-in-error")
    expect(line).to_be_visible()
    expect(line).to_contain_text("Sign-in failed")
    assert wrong not in line.inner_text() and "y" * 10 not in ui.page.content()
    assert ui.datasets() == [] and ui.cookie() is None
    expect(ui.page.locator("#session-user")).to_be_hidden()
    # the browser reports the refused request itself on its console: that one, and only it
    assert all("status of 401" in e for e in ui.errors), ui.errors
    ui.errors.clear()
    # and the right one still works from the same form
    ui.page.get_by_label("API token").fill(served.token)
    ui.page.locator("#sign-in-form").get_by_role("button", name="Sign in").click()
    expect(ui.page.locator("#session-user")).to_have_text("Signed in as rita")
    expect(line).to_be_hidden()


def test_an_ended_session_falls_back_to_anonymous_and_offers_to_sign_in(ui: Page, served: Served) -> None:
    """The server drops the cookie of a session that ended (token revoked or expired, cookie
    too old or forged): the page cannot (HttpOnly), and would otherwise fail on every request."""
    ui.context.add_cookies([{"name": "widecube_session", "value": "not.a.session", "url": served.url}])
    ui.open()
    expect(ui.page.locator("#sign-in-error")).to_contain_text("sign in again")
    assert ui.cookie() is None
    assert ui.datasets() == []
    assert all("status of 401" in e for e in ui.errors), ui.errors  # the browser's own report
    ui.errors.clear()


def test_revoking_the_token_ends_the_open_page_s_session(ui: Page, served: Served) -> None:
    with Catalog(served.settings.catalog_url) as catalog:
        issued = Governance(catalog, auth=True).create_token(user="rita", scope="read", actor=CLI)
    ui.open(f"?token={issued.text}&dataset=lab")
    expect(ui.page.locator("#session-user")).to_have_text("Signed in as rita")
    with Catalog(served.settings.catalog_url) as catalog:
        Governance(catalog, auth=True).revoke_token(issued.record.id, actor=CLI)
    ui.page.locator("summary", has_text="Paste a list").click()  # its next request: 401
    ui.page.get_by_label("Gene symbols or Ensembl IDs").fill(served.gene)
    ui.page.get_by_role("button", name="Add genes").click()
    expect(ui.page.locator("#message")).to_contain_text("revoked")
    expect(ui.page.get_by_role("button", name="Sign in")).to_be_visible()
    ui.idle()
    assert ui.datasets() == [] and ui.cookie() is None
    expect(ui.page.locator("#no-dataset")).to_contain_text("sign in")
    assert all("status of 401" in e for e in ui.errors), ui.errors  # the browser's own report
    ui.errors.clear()


def test_signing_in_through_the_institute_s_identity_provider(
    ui: Page, served: Served, idp: LoginIdP
) -> None:
    """The form's "Sign in with your institute" goes to the IdP and comes back signed in as the
    user it names (the dataset is granted to that user's IdP group), with a Strict cookie."""
    ui.open()
    assert ui.datasets() == []
    ui.page.get_by_role("button", name="Sign in").click()
    link = ui.page.get_by_role("link", name="Sign in with your institute")
    expect(link).to_be_visible()
    link.click()
    ui.idle()
    expect(ui.page.locator("#session-user")).to_have_text("Signed in as ida")
    assert ui.datasets() == ["lab"]
    cookie = ui.cookie()
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    url = ui.page.url  # the UI's own state only: nothing of the flow is left in the address bar
    assert url.startswith(f"{served.url}/?dataset=lab") and "code=" not in url and "state=" not in url
    assert len(idp.exchanges) >= 1 and idp.exchanges[-1]["code_verifier"]


def test_a_failed_institute_sign_in_says_why(ui: Page, served: Served) -> None:
    ui.open("?signin_error=the+identity+provider+answered+%27access_denied%27")
    expect(ui.page.locator("#sign-in-error")).to_have_text(
        "Sign-in failed: the identity provider answered 'access_denied'"
    )
    assert "signin_error" not in ui.page.url
    assert ui.datasets() == []
