"""``/docs`` and ``/redoc`` work offline (api/_docs.py): every asset they load comes from the
server itself (a package's copy of Swagger UI and ReDoc), their policy allows no other origin,
and in Chromium with every non-loopback request refused Swagger UI draws the API's title and
operations, and ReDoc its title."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from widecube.api import create_app
from widecube.config import Settings

CHROMIUM = "/usr/bin/chromium"


class _Links(HTMLParser):
    """Every URL a page loads (script src, link href, img src)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def _loaded(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    # Swagger UI's initializer names the bundle in JS (url: '...'): those count too
    return parser.urls + re.findall(r"""url:\s*['"]([^'"]+)['"]""", html)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(storage=tmp_path / "store"), upkeep=False, jobs=False)) as c:
        yield c


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_load_only_this_servers_files(client: TestClient, page: str) -> None:
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    urls = _loaded(r.text)
    assert urls, "the page loads nothing?"
    assert not [u for u in urls if "://" in u or u.startswith("//")], urls  # no CDN, no font host
    scripts = [u for u in urls if u.endswith(".js")]
    assert scripts and all(u.startswith("/docs/static/") for u in scripts)
    for url in urls:
        if url.startswith("/docs/static/"):
            asset = client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 1000, url
    policy = r.headers["content-security-policy"]
    assert "http" not in policy and "default-src 'self'" in policy  # no other origin allowed
    assert client.get("/openapi.json").json()["info"]["title"] == "widecube"
    assert "/docs" not in client.get("/openapi.json").json()["paths"]


def test_the_docs_assets_are_not_the_uis_policy(client: TestClient) -> None:
    """Only the docs' paths allow an inline script (Swagger UI's initializer); the UI's stays strict."""
    assert "'unsafe-inline'" in client.get("/docs").headers["content-security-policy"]
    assert "'unsafe-inline'" not in client.get("/").headers["content-security-policy"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    app = create_app(Settings(storage=tmp_path / "store"), upkeep=False, jobs=False)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join()


@pytest.mark.slow
@pytest.mark.browser
def test_swagger_ui_and_redoc_draw_with_the_network_cut_off(server: str) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    refused: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()

            def route(r: object) -> None:  # anything but this server is "offline"
                request = r.request  # type: ignore[attr-defined]
                if request.url.startswith(server) or request.url.startswith(("data:", "blob:")):
                    r.continue_()  # type: ignore[attr-defined]
                else:
                    refused.append(request.url)
                    r.abort()  # type: ignore[attr-defined]

            page.route("**/*", route)
            page.goto(f"{server}/docs")
            title = page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
            assert title is not None and title.inner_text().startswith("widecube")
            page.wait_for_selector(".opblock-summary-path", timeout=20_000)
            assert page.locator(".opblock").count() > 20  # every operation listed
            page.goto(f"{server}/redoc")
            heading = page.wait_for_selector("h1", timeout=20_000)
            assert heading is not None and heading.inner_text().startswith("widecube")
        finally:
            browser.close()
    assert refused == []  # and nothing even tried to leave
