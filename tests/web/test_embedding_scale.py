"""The embedding at scale in Debian's Chromium (issue 15, item 4): 200,000 cells are drawn, as
many as the API counts, on one canvas (no element per cell), and a drag redraws them moved by
the drag; the WebGL painter, forced, draws them too. A dataset of its own (the session's demo
has 3,000 cells), served in a thread; ``benchmarks/embedding.py`` times the same page at a
million cells.
"""

from __future__ import annotations

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
import scipy.sparse as sp
import uvicorn
from _web import ARGS, CHROMIUM, sync_api

from widecube.api import create_app
from widecube.config import Settings
from widecube.pipeline import ingest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

N_CELLS = 200_000
DRAG_PX = 60

# Non-white pixels of the scatter: their number and their centre (device pixels), read from a
# copy of the canvas (a WebGL canvas keeps its drawing: preserveDrawingBuffer).
PIXELS = """c => {
  const g = document.createElement('canvas'); g.width = c.width; g.height = c.height;
  const x = g.getContext('2d'); x.drawImage(c, 0, 0);
  const d = x.getImageData(0, 0, c.width, c.height).data;
  let n = 0, sx = 0, sy = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] > 249 && d[i + 1] > 249 && d[i + 2] > 249) continue;
    const p = i / 4; n++; sx += p % c.width; sy += Math.floor(p / c.width);
  }
  return [n, sx / n, sy / n];
}"""


def _blobs(path: Path) -> Path:
    """N_CELLS cells in 8 types, each type a blob of the X_umap embedding; 10 sparse genes."""
    rng = np.random.default_rng(2)
    types = rng.integers(0, 8, N_CELLS)
    centres = rng.uniform(-10, 10, (8, 2))
    umap = (centres[types] + rng.normal(0, 1.2, (N_CELLS, 2))).astype(np.float32)
    x = sp.random(N_CELLS, 10, density=0.05, format="csr", dtype=np.float32, random_state=rng)
    x.data = np.ceil(x.data * 5)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical.from_codes(types, [f"type{k}" for k in range(8)])},
        index=[f"c{i}" for i in range(N_CELLS)],
    )
    adata = anndata.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"G{j}" for j in range(10)]))
    adata.obsm["X_umap"] = umap
    adata.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("scale")
    settings = Settings(storage=root / "store")
    path = _blobs(root / "big.h5ad")
    ingest(path, dataset="big", groupbys=["cell_type"], views="summary", settings=settings)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    app = create_app(settings, upkeep=False, jobs=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()


@pytest.fixture(scope="module")
def chromium(url: str) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def _open(chromium: Any, url: str, n: int, renderer: str | None = None) -> tuple[Any, list[str]]:
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    if renderer:
        context.add_init_script(f"localStorage.setItem('widecube.renderer', '{renderer}');")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/?dataset=big&tab=embedding&color=cell_type")
    page.wait_for_selector(f"#scatter[data-drawn='{n}']", state="attached", timeout=60_000)
    return page, errors


def _wait_for_more(page: Any, attribute: str, than: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while (now := int(page.locator("#scatter").get_attribute(attribute) or 0)) <= than:
        assert time.monotonic() < deadline, f"{attribute} stayed at {now}"
        page.wait_for_timeout(20)
    return now


def test_every_cell_is_drawn_on_one_canvas_and_a_drag_redraws_them_moved(chromium: Any, url: str) -> None:
    started = time.monotonic()
    n = httpx.get(f"{url}/api/v1/datasets/big", timeout=60).json()["n_cells"]
    assert n == N_CELLS
    page, errors = _open(chromium, url, n)
    canvas = page.locator("#scatter")
    assert canvas.get_attribute("data-points") == canvas.get_attribute("data-drawn") == str(n)
    assert canvas.get_attribute("data-renderer") == "cpu"  # Chromium's WebGL here is software
    assert page.evaluate("document.querySelectorAll('*').length") < 2_000  # no element per cell
    painted, x0, y0 = canvas.evaluate(PIXELS)
    assert painted > 20_000  # discs of a few pixels over the whole embedding
    frames, full = int(canvas.get_attribute("data-frames")), int(canvas.get_attribute("data-full"))
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(cx + DRAG_PX * k / 10, cy)
    page.mouse.up()
    assert _wait_for_more(page, "data-frames", frames) > frames  # the drag drew frames
    _wait_for_more(page, "data-full", full)  # then every point again, once the view is still
    page.wait_for_timeout(300)
    assert canvas.get_attribute("data-drawn") == str(n)
    moved, x1, y1 = canvas.evaluate(PIXELS)
    ratio = page.evaluate("window.devicePixelRatio")
    assert x1 - x0 == pytest.approx(DRAG_PX * ratio, abs=3) and y1 == pytest.approx(y0, abs=1)
    assert moved == pytest.approx(painted, rel=0.02)  # the same points, nothing lost at the edges
    assert errors == []
    assert time.monotonic() - started < 20


def test_the_webgl_painter_when_asked_draws_every_cell(chromium: Any, url: str) -> None:
    page, errors = _open(chromium, url, N_CELLS, renderer="webgl")
    canvas = page.locator("#scatter")
    assert canvas.get_attribute("data-renderer") == "webgl"
    painted, _, _ = canvas.evaluate(PIXELS)
    assert painted > 20_000 and errors == []
    cpu, _ = _open(chromium, url, N_CELLS)
    reference, _, _ = cpu.locator("#scatter").evaluate(PIXELS)
    assert painted == pytest.approx(reference, rel=0.25)  # the same discs, by two painters
