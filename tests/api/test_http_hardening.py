"""Hardened HTTP (api/_security.py, ``widecube serve``): security headers and a CSP the UI
satisfies, CORS only when configured, a rate limit per identity with 429 and Retry-After,
body limits on every route, TLS, forwarded headers only from trusted proxies, and no
unauthenticated server on a non-loopback address.

The unit layer drives the app in process (TestClient); the marked layers start ``widecube
serve`` (TLS with a CA and certificate made by trustme, proxies) and headless Chromium.
"""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from _cli import invoke
from widecube.api import create_app
from widecube.config import Settings
from widecube.web import STATIC

# the policy as the brief states it, directive by directive (an independent reference)
EXPECTED_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:", "blob:"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}
MIB = 1 << 20


def _csp(header: str) -> dict[str, list[str]]:
    parts = [p.split() for p in header.split(";") if p.strip()]
    return {p[0]: p[1:] for p in parts}


@pytest.fixture(autouse=True)
def _auth_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about HTTP, not credentials: single-user mode."""
    monkeypatch.setenv("WIDECUBE_AUTH", "off")


def _client(tmp_path: Path, **settings: Any) -> TestClient:
    app = create_app(Settings(storage=tmp_path / "store", **settings), upkeep=False, jobs=False)
    return TestClient(app)


# -- headers --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/static/js/main.js", "/api/v1/datasets", "/api/v1/datasets/nope"])
def test_security_headers_on_the_ui_the_api_and_errors(tmp_path: Path, path: str) -> None:
    with _client(tmp_path) as http:
        r = http.get(path)
    assert r.status_code == (404 if path.endswith("nope") else 200)
    assert _csp(r.headers["content-security-policy"]) == EXPECTED_CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" not in r.headers  # plain HTTP: HSTS would be ignored anyway


def test_hsts_only_when_the_request_came_over_tls(tmp_path: Path) -> None:
    app = create_app(Settings(storage=tmp_path / "store"), upkeep=False, jobs=False)
    with TestClient(app, base_url="https://testserver") as https:
        r = https.get("/api/v1/datasets")
    assert r.status_code == 200 and r.headers["strict-transport-security"].startswith("max-age=")
    max_age = int(r.headers["strict-transport-security"].split("=")[1].split(";")[0])
    assert max_age >= 180 * 24 * 3600


def test_the_api_docs_get_their_own_policy_for_their_inline_start(tmp_path: Path) -> None:
    """Swagger UI (/docs) loads from this server (tests/api/test_docs.py: no CDN) and starts
    with an inline script; only that page's policy allows it, the UI's does not."""
    with _client(tmp_path) as http:
        docs = http.get("/docs")
    assert "/docs/static/swagger-ui-bundle.js" in docs.text and "<script>" in docs.text
    policy = _csp(docs.headers["content-security-policy"])
    assert "'unsafe-inline'" in policy["script-src"] and policy["frame-ancestors"] == ["'none'"]
    assert not [s for p in policy.values() for s in p if "://" in s]  # no other origin
    assert "'unsafe-inline'" not in EXPECTED_CSP["script-src"]


class _Inline(HTMLParser):
    """What a CSP without 'unsafe-inline' refuses in a page: inline scripts, <style>,
    style="" and on*="" attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {k.lower() for k, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style>")
        self.found += [f"{tag} {n}=" for n in names if n == "style" or n.startswith("on")]
        scripted = [k for k, v in attrs if (v or "").strip().lower().startswith("javascript:")]
        self.found += [f"{tag} {k}=javascript:" for k in scripted]


def test_the_ui_has_no_inline_script_style_or_handler() -> None:
    parser = _Inline()
    parser.feed((STATIC / "index.html").read_text())
    assert parser.found == []
    for js in (STATIC / "js").glob("*.js"):  # nor does its code add what the policy refuses
        code = js.read_text()
        assert not re.search(r"setAttribute\(\s*['\"](style|on\w+)['\"]", code), js.name
        assert not re.search(r"\beval\(|new Function\(|\.innerHTML\s*=|insertAdjacentHTML", code), js.name


def test_the_inline_check_catches_what_it_looks_for() -> None:
    parser = _Inline()
    parser.feed('<form onsubmit="return false"><p style="color:red"></p><script>x()</script></form>')
    assert parser.found == ["form onsubmit=", "p style=", "inline <script>"]


# -- CORS -----------------------------------------------------------------------------------

PREFLIGHT = {"Origin": "https://lab.example.org", "Access-Control-Request-Method": "POST"}


def test_cors_is_off_by_default(tmp_path: Path) -> None:
    with _client(tmp_path) as http:
        preflight = http.options("/api/v1/datasets/pbmc/summary", headers=PREFLIGHT)
        get = http.get("/api/v1/datasets", headers={"Origin": "https://lab.example.org"})
    assert preflight.status_code == 405
    assert not any(h.startswith("access-control-") for h in preflight.headers)
    assert get.status_code == 200 and "access-control-allow-origin" not in get.headers


def test_cors_answers_exactly_the_configured_origins(tmp_path: Path) -> None:
    with _client(tmp_path, cors_origins=["https://lab.example.org"]) as http:
        ok = http.options(
            "/api/v1/datasets/pbmc/summary",
            headers={**PREFLIGHT, "Access-Control-Request-Headers": "content-type"},
        )
        other = http.options(
            "/api/v1/datasets/pbmc/summary", headers={**PREFLIGHT, "Origin": "https://evil.test"}
        )
        get = http.get("/api/v1/datasets", headers={"Origin": "https://lab.example.org"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://lab.example.org"
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert "content-type" in ok.headers["access-control-allow-headers"].lower()
    assert ok.headers["content-security-policy"]  # the preflight's answer carries the headers too
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    assert get.headers["access-control-allow-origin"] == "https://lab.example.org"


# -- rate limit -----------------------------------------------------------------------------


def test_the_sixth_request_in_a_minute_is_429_with_retry_after(tmp_path: Path) -> None:
    app = create_app(Settings(storage=tmp_path / "store", rate_limit="5/minute"), upkeep=False, jobs=False)
    one = TestClient(app, client=("192.0.2.1", 40000))
    other = TestClient(app, client=("192.0.2.2", 40000))
    with one, other:
        codes = [one.get("/api/v1/datasets").status_code for _ in range(5)]
        started = time.time()
        sixth = one.get("/api/v1/datasets")
        assert codes == [200] * 5
        assert sixth.status_code == 429
        assert sixth.headers["content-type"] == "application/json"
        assert "too many requests" in sixth.json()["detail"] and set(sixth.json()) == {"detail"}
        wait = int(sixth.headers["retry-after"])
        assert 55 <= wait <= 60 + math.ceil(time.time() - started)  # the first hit leaves in ~60 s
        assert sixth.headers["x-content-type-options"] == "nosniff"
        assert one.get("/api/v1/datasets/pbmc").status_code == 429  # every route, not one
        assert other.get("/api/v1/datasets").status_code == 200  # another address: its own window
        assert all(one.get("/healthz").status_code == 200 for _ in range(20))  # never limited


def test_retry_after_is_when_the_window_has_room_again(tmp_path: Path) -> None:
    with _client(tmp_path, rate_limit="2/2second") as http:
        assert [http.get("/api/v1/datasets").status_code for _ in range(2)] == [200, 200]
        r = http.get("/api/v1/datasets")
        assert r.status_code == 429 and r.headers["retry-after"] in {"1", "2"}
        time.sleep(int(r.headers["retry-after"]) + 0.05)
        assert http.get("/api/v1/datasets").status_code == 200


def test_the_limit_is_per_identity_not_per_address(tmp_path: Path) -> None:
    """Two tokens from one address count apart (``actor.key`` is ``token:<id>``)."""
    from widecube.access import Actor, Governance
    from widecube.catalog import Catalog

    settings = Settings(storage=tmp_path / "store", rate_limit="3/minute", auth=True)
    with Catalog(settings.catalog_url) as catalog:
        gov = Governance(catalog, auth=True)
        a, b = (gov.create_token(user=u, actor=Actor.cli()).text for u in ("ana", "bo"))
    with TestClient(create_app(settings, upkeep=False, jobs=False)) as http:
        first = [
            http.get("/api/v1/datasets", headers={"Authorization": f"Bearer {a}"}).status_code
            for _ in range(4)
        ]
        second = [
            http.get("/api/v1/datasets", headers={"Authorization": f"Bearer {b}"}).status_code
            for _ in range(3)
        ]
    assert first == [200, 200, 200, 429] and second == [200, 200, 200]


def test_every_operation_documents_429_with_retry_after(tmp_path: Path) -> None:
    with _client(tmp_path) as http:
        paths = http.get("/openapi.json").json()["paths"]
    operations = [op for methods in paths.values() for op in methods.values()]
    assert len(operations) > 15
    for op in operations:
        assert "429" in op["responses"], op["operationId"]
    assert "Retry-After" in paths["/api/v1/datasets"]["get"]["responses"]["429"]["headers"]


def test_a_bad_rate_limit_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="WIDECUBE_RATE_LIMIT='lots'"):
        create_app(Settings(storage=tmp_path / "store", rate_limit="lots"), upkeep=False, jobs=False)


# -- body limits ----------------------------------------------------------------------------


def _json_operations(paths: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method, re.sub(r"\{[^}]+\}", "x", path))
        for path, methods in paths.items()
        for method, op in methods.items()
        if "application/json" in op.get("requestBody", {}).get("content", {})
    ]


def test_every_json_route_refuses_a_3_mib_body(tmp_path: Path) -> None:
    body = b'{"genes": ["' + b"A" * (3 * MIB) + b'"]}'
    with _client(tmp_path) as http:
        operations = _json_operations(http.get("/openapi.json").json()["paths"])
        assert ("post", "/api/v1/uploads/resumable") in operations and len(operations) >= 8
        for method, path in operations:
            r = http.request(method, path, content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 413, (method, path, r.status_code)


def test_a_chunked_json_body_over_the_limit_is_413(tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"genes": ["'
        for _ in range(3):
            yield b"A" * MIB
        yield b'"]}'

    with _client(tmp_path) as http:
        r = http.post(
            "/api/v1/uploads/resumable", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert r.status_code == 413


def test_uploads_stop_at_their_own_limit(tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(3):
            yield b"\0" * MIB

    with _client(tmp_path, upload_max_bytes=2 * MIB) as http:
        announced = http.post("/api/v1/uploads?filename=a.h5ad", content=b"\0" * (3 * MIB))
        streamed = http.post("/api/v1/uploads?filename=a.h5ad", content=chunks())
    assert announced.status_code == 413 and streamed.status_code == 413


# -- widecube serve -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "WIDECUBE_STORAGE": str(tmp_path / "store"),
        "WIDECUBE_AUTH": "off",
        "WIDECUBE_SERVE_JOBS": "false",
        **extra,
    }


class Server:
    """``widecube serve`` in its own process group; stopped on exit."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.port = _free_port()
        cmd = [sys.executable, "-m", "widecube.cli", "serve", "--port", str(self.port), *args]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.log = ""

    def wait(self, url: str, **client: Any) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1, **client).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and self.proc.poll() is None, self.stop()
            time.sleep(0.2)

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        self.log = out.decode(errors="replace")
        return self.log[-3000:]


@pytest.mark.slow
@pytest.mark.subprocess
def test_serve_over_tls_with_a_certificate(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(tmp_path / "cert.pem"), append=True)
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    server = Server(
        ["--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")], _env(tmp_path)
    )
    url = f"https://127.0.0.1:{server.port}"
    try:
        server.wait(url, verify=trusted)
        r = httpx.get(f"{url}/api/v1/datasets", verify=trusted, timeout=10)
        assert r.status_code == 200 and r.url.scheme == "https"
        assert r.headers["strict-transport-security"].startswith("max-age=")
        assert _csp(r.headers["content-security-policy"]) == EXPECTED_CSP
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/healthz", timeout=10)  # the system's CAs do not know the test CA
        with pytest.raises(httpx.TransportError):  # plain HTTP on the TLS port: no answer
            httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=10)
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("trusted", [False, True], ids=["no-proxy", "trusted-proxy"])
def test_forwarded_headers_are_believed_only_from_trusted_proxies(tmp_path: Path, trusted: bool) -> None:
    """The rate limit counts per client address: two addresses behind one proxy count apart only
    when the proxy is trusted; otherwise the peer (127.0.0.1) is the client, whatever it claims."""
    extra = {"WIDECUBE_RATE_LIMIT": "2/minute"}
    if trusted:
        extra["WIDECUBE_TRUSTED_PROXIES"] = '["127.0.0.1"]'
    server = Server(["--no-access-log"], _env(tmp_path, **extra))
    url = f"http://127.0.0.1:{server.port}"
    try:
        server.wait(url)

        def get(client: str) -> httpx.Response:
            headers = {"X-Forwarded-For": client, "X-Forwarded-Proto": "https"}
            return httpx.get(f"{url}/api/v1/datasets", headers=headers, timeout=10)

        first = [get("203.0.113.7").status_code for _ in range(2)]
        other = get("198.51.100.9")
        assert first == [200, 200]
        assert other.status_code == (200 if trusted else 429)
        # X-Forwarded-Proto alike: HSTS only when a trusted proxy says the client used TLS
        assert ("strict-transport-security" in get("192.0.2.55").headers) is trusted
    finally:
        server.stop()


@pytest.mark.subprocess
def test_serve_refuses_a_non_loopback_address_without_auth(tmp_path: Path) -> None:
    """The real command, in its own process: exit 2, the reason, and nothing bound (the other
    addresses go through the same check in process, below)."""
    host, port = "0.0.0.0", _free_port()
    cmd = [sys.executable, "-m", "widecube.cli", "serve", "--host", host, "--port", str(port)]
    done = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "auth is off: serve only on 127.0.0.1/::1/localhost" in done.stderr
    assert "Uvicorn running" not in done.stdout + done.stderr
    with socket.socket() as s:  # nothing was bound
        s.bind(("127.0.0.1", port))


@pytest.fixture
def no_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """For refusals tested in process: failing, not serving, if the refusal does not come."""
    import uvicorn

    def run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("widecube serve started a server")

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setenv("WIDECUBE_STORAGE", str(tmp_path / "store"))


@pytest.mark.usefixtures("no_server")
@pytest.mark.parametrize("host", ["::", "10.1.2.3", "example.org"])
def test_serve_refuses_other_non_loopback_addresses_without_auth(host: str) -> None:
    done = invoke({}, "serve", "--host", host, "--port", str(_free_port()))
    assert done.exit_code == 2, done.output
    assert "auth is off: serve only on 127.0.0.1/::1/localhost" in done.output


@pytest.mark.usefixtures("no_server")
def test_serve_takes_tls_cert_and_key_together(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    done = invoke({}, "serve", "--tls-cert", str(tmp_path / "cert.pem"))
    assert done.exit_code == 2 and "--tls-cert and --tls-key go together" in done.output


@pytest.mark.usefixtures("no_server")
def test_serve_refuses_a_bad_rate_limit_before_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIDECUBE_RATE_LIMIT", "often")
    done = invoke({}, "serve")
    assert done.exit_code == 2 and "WIDECUBE_RATE_LIMIT='often'" in done.output


# -- the UI under its policy, in Chromium ---------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""


@pytest.fixture
def served_ui(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A small demo dataset behind uvicorn in a thread: (the server's URL, a gene name)."""
    import threading

    import uvicorn

    from widecube.demo import make_demo
    from widecube.pipeline import ingest

    settings = Settings(storage=tmp_path / "store")
    path = make_demo(tmp_path / "demo.h5ad", n_cells=600, n_genes=60, seed=3)
    ingest(path, dataset="demo", groupbys=["cell_type"], settings=settings)
    app = create_app(settings, upkeep=False, jobs=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.config.port}"
    # build the included routers' routes before any concurrent request (see tests/web/test_web.py)
    httpx.post(f"{url}/api/v1/datasets/demo/genes/resolve", json={"query": []}, timeout=30)
    gene = httpx.get(f"{url}/api/v1/datasets/demo/genes", params={"limit": 1}, timeout=30).json()["genes"][0]
    try:
        yield url, gene
    finally:
        server.should_exit = True
        thread.join()


@pytest.mark.slow
@pytest.mark.browser
def test_the_ui_draws_a_dot_plot_without_a_policy_violation(served_ui: tuple[str, str]) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    url, gene = served_ui
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
            page.add_init_script(RECORD_VIOLATIONS)
            response = page.goto(f"{url}/?dataset=demo&gene={gene}")
            assert response is not None and _csp(response.headers["content-security-policy"]) == EXPECTED_CSP
            page.wait_for_selector("body[data-state=ready]", timeout=20_000)
            page.wait_for_selector(f'#dotplot-chart circle[data-gene="{gene}"]', timeout=20_000)
            page.wait_for_load_state("networkidle")
            with page.expect_download() as info:  # the PNG export draws an SVG blob into a canvas
                page.get_by_role("button", name="Download PNG").click()
            assert Path(info.value.path()).read_bytes()[:4] == b"\x89PNG"
            page.keyboard.press("Escape")
            page.get_by_role("combobox", name="Add gene").press("Enter")  # the form is not submitted
            # the legend's colour bar is styled through the CSSOM, which the policy allows
            bar = page.locator(".color-bar .bar").first.evaluate("n => getComputedStyle(n).backgroundImage")
            assert bar.startswith("linear-gradient")
            assert page.evaluate("window.__violations") == [] and errors == []
            assert page.url.startswith(f"{url}/?dataset=demo")
            # and the recorder sees what the policy refuses: an inline style attribute
            page.evaluate("document.body.setAttribute('style', 'color: red')")
            page.wait_for_function("window.__violations.length > 0", timeout=5_000)
            assert page.evaluate("window.__violations")[0].startswith("style-src")
        finally:
            browser.close()
