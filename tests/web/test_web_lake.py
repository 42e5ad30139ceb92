"""The dataset browser and the cross-dataset dot plots in headless Chromium (Debian's, driven
by Playwright) over a real server: search, facets with counts, opening a dataset, and the
genes of the datasets found as one dot plot per dataset plus the pooled one, whose numbers are
compared with numpy over the concatenated cells."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anndata as ad
import httpx2 as httpx
import numpy as np
import pytest
import uvicorn

from _data import small_adata, write_h5ad
from widecube.access import Actor
from widecube.api import create_app
from widecube.config import Settings
from widecube.pipeline import Jobs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

META = {
    "blood1": {"title": "Blood one", "organism": "human", "tissue": "blood", "tags": ["pbmc"]},
    "lung2": {"title": "Lung two", "organism": "human", "tissue": "lung"},
    "mouse3": {"title": "Mouse blood", "organism": "mouse", "tissue": "blood", "tags": ["pbmc"]},
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, ad.AnnData]]]:
    root = tmp_path_factory.mktemp("web-lake")
    settings = Settings(storage=root / "store")
    inputs = {
        name: small_adata(n_cells=120, n_genes=25 if name == "lung2" else 30, seed=i)
        for i, name in enumerate(META)
    }
    with Jobs.open(settings) as jobs:
        for name, adata in inputs.items():
            path = write_h5ad(adata, root / f"{name}.h5ad")
            jobs.ingest(path, dataset=name, groupbys=["cell_type"], metadata=META[name], actor=Actor.cli())
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
    url = f"http://127.0.0.1:{port}"
    httpx.post(f"{url}/api/v1/datasets/blood1/genes/resolve", json={"query": []}, timeout=30)  # see test_web
    try:
        yield url, inputs
    finally:
        server.should_exit = True
        thread.join()


@pytest.fixture
def page(served: tuple[str, dict[str, ad.AnnData]]) -> Iterator[Any]:
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
        yield page
        browser.close()
    assert errors == [], errors


def _cards(page: Any) -> list[str]:
    return [
        str(n)
        for n in page.locator("#browser-results li.dataset-card").evaluate_all(
            "ns => ns.map(n => n.dataset.dataset)"
        )
    ]


def test_the_page_opens_on_the_browser_with_search_and_facets(page: Any, served: tuple[str, Any]) -> None:
    url, _ = served
    page.goto(f"{url}/")
    sync_api.expect(page.locator("#browser-count")).to_have_text("3 datasets", timeout=20_000)
    assert _cards(page) == ["blood1", "lung2", "mouse3"]
    organism = page.locator('#browser-facets fieldset[data-facet="organism"]')
    assert [t.strip() for t in organism.inner_text().split("\n")[1:]] == ["human (2)", "mouse (1)"]
    page.get_by_role("checkbox", name="human").check()
    sync_api.expect(page.locator("#browser-count")).to_have_text("2 datasets")
    assert _cards(page) == ["blood1", "lung2"]
    assert "mouse (1)" in organism.inner_text()  # the alternative stays offered
    tissue = page.locator('#browser-facets fieldset[data-facet="tissue"]').inner_text()
    assert "blood (1)" in tissue and "lung (1)" in tissue
    page.get_by_role("searchbox", name="Search").fill("lun")
    sync_api.expect(page.locator("#browser-count")).to_have_text("1 dataset")
    assert _cards(page) == ["lung2"]
    assert "Lung two" in page.locator('li[data-dataset="lung2"] h3').inner_text()
    page.get_by_role("button", name="Open lung2").click()
    sync_api.expect(page.locator("#dataset")).to_have_value("lung2")
    page.wait_for_selector("body[data-state=ready]")


def test_genes_across_the_datasets_found_as_dot_plots(
    page: Any, served: tuple[str, dict[str, ad.AnnData]]
) -> None:
    url, inputs = served
    page.goto(f"{url}/")
    sync_api.expect(page.locator("#browser-count")).to_have_text("3 datasets", timeout=20_000)
    page.get_by_role("checkbox", name="human").check()
    sync_api.expect(page.locator("#browser-count")).to_have_text("2 datasets")
    page.locator("#atlas summary").click()
    page.get_by_label("Genes to find").fill("Gene4, Gene27")  # Gene27: not in lung2 (25 genes)
    page.get_by_label("Values in every dataset").select_option("input")
    page.get_by_role("button", name="Query across datasets").click()
    sync_api.expect(page.locator("#atlas-status")).to_have_text("2 datasets")
    facets = page.locator("section.atlas-facet").evaluate_all("ns => ns.map(n => n.dataset.atlas)")
    assert facets == ["pooled", "blood1", "lung2"]
    assert "Absent here: Gene27" in page.locator('section[data-atlas="lung2"]').inner_text()
    dots = page.locator('section[data-atlas="pooled"] circle.dot').evaluate_all(
        "ns => ns.map(n => [n.dataset.group, n.dataset.gene, Number(n.dataset.mean), Number(n.dataset.frac)])"
    )
    assert dots
    for group, gene, mean, frac in dots:
        cells = [
            np.asarray(a[(a.obs["cell_type"] == group).to_numpy(), gene].X, dtype=np.float64).ravel()
            for name, a in inputs.items()
            if name != "mouse3" and gene in a.var_names
        ]
        values = np.concatenate(cells)
        if not len(values):
            continue
        assert mean == pytest.approx(values.mean(), rel=1e-12)
        assert frac == pytest.approx(np.mean(values > 0), rel=1e-12)
