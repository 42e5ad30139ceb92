"""The web UI's test harness, shared by every browser test file: a 3,000-cell × 500-gene demo
dataset ingested once per session, served by uvicorn in a thread, and pages of Debian's
Chromium driven by Playwright (fixtures ``served``, ``browser`` and ``ui``, through conftest).
``WIDECUBE_SCREENSHOTS=<folder>`` makes the dataset larger, for pictures (``make screenshots``).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anndata
import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn

from _io_writers import write_csv
from widecube.api import create_app
from widecube.config import Settings
from widecube.demo import make_demo
from widecube.pipeline import ingest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--enable-unsafe-swiftshader",
]
GROUPBYS = ["cell_type", "donor", "cell_type,donor"]
SHOTS = os.environ.get("WIDECUBE_SCREENSHOTS")
N_CELLS, N_GENES = (20_000, 2_000) if SHOTS else (3_000, 500)  # pictures want more cells

if not Path(CHROMIUM).exists():  # `make test` installs it; a bare pytest run may lack it
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


class Served:
    """The dataset, its numpy reference and the server's address."""

    def __init__(self, url: str, adata: anndata.AnnData, version: str, plain: np.ndarray) -> None:
        self.url, self.adata, self.version = url, adata, version
        self.plain = plain  # dataset "plain": a CSV of counts without any obs column
        self.x = np.asarray(adata.X.toarray(), dtype=np.float64)
        # the default layer of count data: counts per 10,000 per cell, then log1p
        self.lognorm = np.log1p(self.x / np.maximum(self.x.sum(axis=1, keepdims=True), 1) * 1e4)

    def api(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.url}/api/v1/datasets/demo{path}", params=params, timeout=30)
        r.raise_for_status()
        return r.json()

    def cells(self, **where: list[str]) -> np.ndarray:
        mask = np.ones(self.adata.n_obs, dtype=bool)
        for column, kept in where.items():
            mask &= self.adata.obs[column].astype(str).isin(kept).to_numpy()
        return mask


def _scaled_h5ad(path: Path) -> Path:
    """Scaled values (z-scores of log counts, dense, with negatives), as pbmc68k's X."""
    rng = np.random.default_rng(5)
    logged = np.log1p(rng.poisson(1.0, (120, 6)).astype(np.float64))
    logged[:60, 0] += 2.0  # gene S0 is up in type A
    z = (logged - logged.mean(0)) / logged.std(0)
    obs = {"cell_type": pd.Categorical(np.repeat(["A", "B"], 60))}
    adata = anndata.AnnData(z.astype(np.float32), obs=pd.DataFrame(obs, index=[f"s{i}" for i in range(120)]))
    adata.var_names = [f"S{j}" for j in range(6)]
    adata.write_h5ad(path)
    return path


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("web")
    path = make_demo(root / "demo.h5ad", n_cells=N_CELLS, n_genes=N_GENES, seed=3)
    settings = Settings(storage=root / "store")
    version = ingest(path, dataset="demo", groupbys=GROUPBYS, settings=settings).version
    plain = np.random.default_rng(4).poisson(1.5, (50, 8)).astype(np.float64)
    csv = write_csv(root / "plain.csv", plain, [f"c{i}" for i in range(50)], [f"Gene{j}" for j in range(8)])
    ingest(csv, dataset="plain", settings=settings)
    ingest(path, dataset="lean", groupbys=["cell_type"], views="quantiles", settings=settings)
    ingest(_scaled_h5ad(root / "scaled.h5ad"), dataset="scaled", groupbys=["cell_type"], settings=settings)
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
    # FastAPI builds the routes of included routers on the first request, silencing a pydantic
    # warning with warnings.catch_warnings, which is not thread-safe: under pytest's
    # filterwarnings=error a first request racing other threads' catch_warnings can answer
    # 500. One request now, while nothing else runs, builds them.
    httpx.post(f"http://127.0.0.1:{port}/api/v1/datasets/demo/genes/resolve", json={"query": []}, timeout=30)
    try:
        yield Served(f"http://127.0.0.1:{port}", anndata.read_h5ad(path), version, plain)
    finally:
        server.should_exit = True
        thread.join()


# per module: Playwright's sync API cannot run twice at once, and test_web_session.py starts its own
@pytest.fixture(scope="module")
def browser(served: Served) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A browser page that records console errors and knows when the UI is idle."""

    def __init__(self, page: Any, served: Served) -> None:
        self.page, self.served = page, served
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e} {e.stack}"))

    def open(self, query: str = "dataset=demo") -> None:
        self.page.goto(f"{self.served.url}/?{query}")
        self.idle()

    def idle(self) -> None:
        self.page.wait_for_selector("body[data-state=ready]", timeout=20_000)
        self.page.wait_for_load_state("networkidle")
        self.page.wait_for_selector("body[data-state=ready]", timeout=20_000)

    def add_gene(self, gene: str) -> None:
        box = self.page.get_by_role("combobox", name="Add gene")
        box.fill(gene[:-1])
        self.page.locator(f'#gene-options [role=option][data-gene="{gene}"]').click()
        self.idle()

    def dots(self, gene: str) -> dict[str, tuple[float, float]]:
        found = self.page.locator(f'#dotplot-chart circle[data-gene="{gene}"]').evaluate_all(
            "nodes => nodes.map(n => [n.dataset.group, Number(n.dataset.mean), Number(n.dataset.frac)])"
        )
        return {g: (m, f) for g, m, f in found}


@pytest.fixture
def ui(browser: Any, served: Served) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = Page(context.new_page(), served)
    yield page
    context.close()
    assert page.errors == [], f"console errors: {page.errors}"


def marker(served: Served) -> str:
    """The gene whose mean differs most between cell types (a readable dot plot)."""
    codes = served.adata.obs["cell_type"].cat.codes.to_numpy()
    means = np.stack([served.x[codes == k].mean(axis=0) for k in range(codes.max() + 1)])
    return str(served.adata.var_names[int(np.argmax(means.std(axis=0)))])


def chips(ui: Page, *, count: int | None = None) -> list[str]:
    """The gene chips, after waiting (up to 20 s) until there are ``count`` of them: a click
    or Enter starts its requests only after the handler runs, so ``idle`` alone can race it."""
    chips = ui.page.locator("#gene-chips li")
    if count is not None:
        expect(chips).to_have_count(count, timeout=20_000)
        ui.idle()
    return chips.evaluate_all("ns => ns.map(n => n.firstChild.textContent)")


def download(ui: Page, button: str) -> tuple[str, bytes]:
    with ui.page.expect_download() as info:
        ui.page.get_by_role("button", name=button).click()
    download = info.value
    return download.suggested_filename, Path(download.path()).read_bytes()
