"""A release-pinned page in headless Chromium (Debian's, driven by Playwright) over a real
server: ``?release=r1`` asks every dataset route for the version release ``r1`` names, lists
the release's datasets, shows that version read-only, and keeps drawing its numbers (numpy on
its input) after a newer version of the dataset is published; the release picker moves the
page from the live versions to a release.

Datasets: ``d`` (release ``r1`` names its first version; a second, with other counts, is
published during the test) and ``e`` (not in the release).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import anndata as ad
import httpx2 as httpx
import numpy as np
import pytest
import uvicorn

from _lake import GENE, tiny_input
from widecube.access import Actor
from widecube.api import create_app
from widecube.config import Settings
from widecube.pipeline import Jobs
from widecube.query import Widecube

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
CLI = Actor.cli("test")
PINNED = f"release=r1&dataset=d&gene={GENE}&groupby=cell_type&layer=input"


@dataclass
class World:
    url: str
    settings: Settings
    root: Path
    versions: list[str] = field(default_factory=list)  # of d, oldest first
    inputs: dict[str, ad.AnnData] = field(default_factory=dict)  # by version

    def publish(self, seed: int) -> str:
        """A new version of d from input ``seed`` (other counts for each seed), published."""
        path, adata = tiny_input(self.root, seed)
        with Jobs.open(self.settings) as jobs:
            version = jobs.ingest(path, dataset="d", groupbys=["cell_type"], actor=CLI).version
        self.versions.append(version)
        self.inputs[version] = adata
        return version


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("web-release")
    settings = Settings(storage=root / "store")
    w = World("", settings, root)
    w.publish(0)
    path, _ = tiny_input(root / "..", 7)
    with Jobs.open(settings) as jobs:
        jobs.ingest(path, dataset="e", groupbys=["cell_type"], actor=CLI)
    wc = Widecube(settings)
    wc.create_release("r1", ["d"], actor=CLI)
    wc.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    w.url = f"http://127.0.0.1:{port}"
    httpx.post(f"{w.url}/api/v1/datasets/d/genes/resolve", json={"query": []}, timeout=30)  # see _web
    try:
        yield w
    finally:
        server.should_exit = True
        thread.join()


@dataclass
class Tab:
    page: Any
    asked: list[str]  # every API request's URL

    def open(self, url: str) -> None:
        self.asked.clear()
        self.page.goto(url)
        self.page.wait_for_selector("body[data-state=ready]", timeout=20_000)
        self.page.wait_for_load_state("networkidle")
        self.page.wait_for_selector("body[data-state=ready]", timeout=20_000)

    def dots(self) -> dict[str, tuple[float, float]]:
        sync_api.expect(self.page.locator(f'#dotplot-chart circle[data-gene="{GENE}"]').first).to_be_visible(
            timeout=20_000
        )
        found = self.page.locator(f'#dotplot-chart circle[data-gene="{GENE}"]').evaluate_all(
            "ns => ns.map(n => [n.dataset.group, Number(n.dataset.mean), Number(n.dataset.frac)])"
        )
        return {g: (m, f) for g, m, f in found}


@pytest.fixture
def tab(world: World) -> Iterator[Tab]:
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
        asked: list[str] = []
        page.on("request", lambda r: "/api/v1/" in r.url and asked.append(r.url))
        yield Tab(page, asked)
        browser.close()
    assert errors == [], errors


def _expected(adata: ad.AnnData) -> dict[str, tuple[float, float]]:
    """numpy: each cell type's mean count of GENE and fraction of cells expressing it."""
    x = np.asarray(adata.X, dtype=np.float64)[:, list(adata.var_names).index(GENE)]
    types = adata.obs["cell_type"].astype(str).to_numpy()
    return {t: (float(x[types == t].mean()), float((x[types == t] > 0).mean())) for t in sorted(set(types))}


def _draws(tab: Tab, adata: ad.AnnData) -> bool:
    drawn = tab.dots()
    return all(np.allclose(drawn.get(g, (np.nan, np.nan)), v) for g, v in _expected(adata).items())


def _assert_draws(tab: Tab, adata: ad.AnnData) -> None:
    drawn = tab.dots()
    expected = _expected(adata)
    assert expected and set(expected) <= set(drawn)
    for group, (mean, frac) in expected.items():
        assert drawn[group] == pytest.approx((mean, frac), rel=1e-6), group


def test_a_release_pinned_page_keeps_the_released_numbers_after_a_newer_version(
    world: World, tab: Tab
) -> None:
    old = world.versions[0]
    tab.open(f"{world.url}/?{PINNED}")
    page = tab.page
    _assert_draws(tab, world.inputs[old])
    version = page.locator("#version")
    sync_api.expect(version).to_be_disabled()
    assert version.locator("option").all_inner_texts() == [f"{old[:8]} · release r1"]
    sync_api.expect(page.locator("#release-box")).to_be_visible()
    sync_api.expect(page.locator("#release")).to_have_value("r1")
    assert page.locator("#dataset option").all_inner_texts() == ["d"]  # e is not in the release
    dataset_calls = [u for u in tab.asked if "/api/v1/datasets/" in u]
    assert dataset_calls and all(parse_qs(urlparse(u).query).get("release") == ["r1"] for u in dataset_calls)

    newer = world.publish(1)  # the live version moves on, with other numbers
    assert newer != old
    live = _expected(world.inputs[newer])
    assert any(live[t][0] != pytest.approx(m) for t, (m, _) in _expected(world.inputs[old]).items())
    tab.open(f"{world.url}/?{PINNED}")  # reloaded: asks the server again
    _assert_draws(tab, world.inputs[old])
    assert version.locator("option").all_inner_texts() == [f"{old[:8]} · release r1"]
    assert "release=r1" in page.url

    # without the release: the live version, editable; choosing r1 in the picker pins it again
    tab.open(f"{world.url}/?dataset=d&gene={GENE}&groupby=cell_type&layer=input")
    _assert_draws(tab, world.inputs[newer])
    sync_api.expect(version).to_be_enabled()
    assert not any("release=" in u for u in tab.asked)
    page.locator("#release").select_option("r1")
    sync_api.expect(version.locator("option")).to_have_text([f"{old[:8]} · release r1"], timeout=20_000)
    sync_api.expect(version).to_be_disabled()
    deadline = time.monotonic() + 20  # the dot plot is redrawn after the pickers: until it is
    while not _draws(tab, world.inputs[old]) and time.monotonic() < deadline:
        time.sleep(0.1)
    _assert_draws(tab, world.inputs[old])
    assert "release=r1" in page.url and f"gene={GENE}" in page.url
