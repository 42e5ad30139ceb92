"""The embedding tab at a million points (issue 15, item 4: "smooth at 1 M points"), measured in
Debian's headless Chromium driven by Playwright.

A demo dataset of ``--cells`` (1,000,000) cells × ``--genes`` (200) genes (``make_demo``: sparse
counts, ``cell_type`` categorical, an ``X_umap`` with one blob per type) is ingested with the
summary and gene-major views, served by uvicorn on loopback, and its embedding tab opened
(coloured by ``cell_type``). Measured, all from the page's own clock (``performance.now()``):

* **first draw**: from the navigation's start to the first frame that drew every point
  (``#scatter[data-drawn=N]``) being on screen (the second ``requestAnimationFrame`` after it: a
  WebGL frame is only queued when its call returns), on a server that just started (*cold*:
  the dataset's obs read for the first time) and again in a fresh page (*warm*), with the
  embedding request's own span. The version's cache is warmed first, as ``widecube serve``
  does after a publish;
* **pan and zoom**: ``requestAnimationFrame`` timestamps while a scripted drag (pointer moves of
  5 px) then wheel steps (zoom in, then out) run; a frame's time is the interval to the next
  timestamp, counted for the frames in which the scatter drew (``data-frames`` went up), and the
  full redraws the CPU painter makes once the view is still (``data-paint-ms``);
* **colour by a gene**: from choosing a gene in "or gene" to the frame that drew every point in
  its colours (the gene's values fetched from ``/embedding/X_umap?color=GENE``, one request),
  and **a legend toggle** (hide a category: every point's colour again, no request);
* **the peer**: the same page with the WebGL painter forced (``localStorage["widecube.renderer"]
  = "webgl"``; what the UI drew with before this benchmark): its first draw and a short drag.

**Smooth** means: the 95th percentile of the pan-and-zoom frame times is at most 33.3 ms (30
frames a second or more). Without a GPU (this machine), Chromium runs WebGL in software
(SwiftShader), so the UI draws with its CPU painter (``points_cpu.js``); on a GPU it draws with
WebGL. Recorded as one JSON file in ``benchmarks/results/`` (refused from a dirty tree unless
``--force``; ``--no-record`` prints only).

    python benchmarks/embedding.py [--cells 1000000 --genes 200 --nnz 20 --no-peer]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import uvicorn
from _embedding_report import SMOOTH_P95_MS
from _record import DirtyTree, begin, regenerate, save

from widecube.access import Actor
from widecube.api import create_app
from widecube.config import Settings
from widecube.demo import make_demo
from widecube.pipeline import Jobs
from widecube.query import Widecube

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--enable-unsafe-swiftshader",
]
VIEWPORT = {"width": 1400, "height": 1000}

# In every page, before its scripts: when #scatter's data-* attributes change (time, name,
# value), and a requestAnimationFrame recorder the benchmark starts and stops.
WATCH = """
window.__marks = [];
window.__ticks = null;
document.addEventListener("DOMContentLoaded", () => {
  const canvas = document.getElementById("scatter");
  new MutationObserver((changes) => {
    const t = performance.now();
    for (const c of changes) {
      const value = canvas.getAttribute(c.attributeName);
      window.__marks.push([t, c.attributeName, value]);
      // on screen: the frame after the one that drew has begun (a GPU's backlog delays it)
      const shown = () => window.__marks.push([performance.now(), `${c.attributeName}:shown`, value]);
      requestAnimationFrame(() => requestAnimationFrame(shown));
    }
  }).observe(canvas, { attributes: true, attributeFilter: ["data-drawn", "data-color", "data-full"] });
});
window.__record = () => {
  const canvas = document.getElementById("scatter");
  window.__ticks = [];
  const tick = (t) => {
    if (!window.__ticks) return;
    window.__ticks.push([t, Number(canvas.dataset.frames), Number(canvas.dataset.full)]);
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
};
window.__stop = () => { const out = window.__ticks; window.__ticks = null; return out; };
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spread(values: list[float]) -> dict[str, float]:
    ms = sorted(values)
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "max_ms": round(ms[-1], 1),
    }


def build(root: Path, args: argparse.Namespace) -> tuple[Settings, Path, float, float]:
    """The demo file and its ingest: (settings, input, seconds to make, seconds to ingest)."""
    path = root / "embedding.h5ad"
    t0 = time.perf_counter()
    make_demo(path, n_cells=args.cells, n_genes=args.genes, nnz_per_cell=args.nnz, seed=0)
    made = time.perf_counter() - t0
    settings = Settings(storage=root / "store", auth=False)
    t0 = time.perf_counter()
    with Jobs.open(settings) as jobs:
        jobs.ingest(
            path,
            dataset="e1m",
            groupbys=["cell_type"],
            views="summary,matrix",
            visibility="public",
            classification="open",
            actor=Actor.cli("bench"),
        )
    return settings, path, made, time.perf_counter() - t0


class Browser:
    """Pages of headless Chromium on the served UI, each watched by :data:`WATCH`."""

    def __init__(self, playwright: Any, url: str) -> None:
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        self.url = url

    def page(self, *, renderer: str | None = None) -> Any:
        context = self.browser.new_context(viewport=VIEWPORT)
        if renderer:
            context.add_init_script(f"localStorage.setItem('widecube.renderer', '{renderer}');")
        context.add_init_script(WATCH)
        return context.new_page()

    def close(self) -> None:
        self.browser.close()


def first_draw(page: Any, url: str, n: int, timeout_s: float) -> dict[str, Any]:
    """Open the embedding tab; the time of the first frame that drew every point."""
    page.goto(f"{url}/?dataset=e1m&tab=embedding&color=cell_type")
    page.wait_for_selector(f"#scatter[data-drawn='{n}']", state="attached", timeout=timeout_s * 1000)
    page.wait_for_timeout(200)  # the frames that put it on screen
    marks = page.evaluate("window.__marks")
    drawn = next(t for t, name, value in marks if name == "data-drawn:shown" and value == str(n))
    spans = page.evaluate(
        """() => performance.getEntriesByType('resource')
        .filter((e) => e.name.includes('/embedding/'))
        .map((e) => [e.startTime, e.responseEnd, e.transferSize])"""
    )
    start, end, size = spans[0]
    return {
        "first_draw_ms": round(drawn, 1),
        "embedding_request_ms": [round(start, 1), round(end, 1)],
        "embedding_bytes": size,
        "after_response_ms": round(drawn - end, 1),
        "renderer": page.locator("#scatter").get_attribute("data-renderer"),
    }


def _still(page: Any, quiet_ms: int = 600) -> None:
    """Wait until the scatter has drawn nothing for ``quiet_ms`` (settled after a change)."""
    last = None
    while True:
        now = page.locator("#scatter").get_attribute("data-frames")
        if now == last:
            return
        last = now
        page.wait_for_timeout(quiet_ms)


def pan_and_zoom(page: Any, *, moves: int, wheels: int) -> dict[str, Any]:
    """rAF frame times while a drag and wheel steps run, and the full redraws that follow."""
    _still(page)
    box = page.locator("#scatter").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.evaluate("window.__record()")
    page.wait_for_timeout(100)
    page.mouse.down()
    for k in range(1, moves + 1):
        page.mouse.move(cx + 5 * (k % 80) - 200, cy + 3 * (k % 50) - 75)
    page.mouse.up()
    for k in range(wheels):
        page.mouse.wheel(0, -120 if k < wheels // 2 else 120)
    page.wait_for_timeout(600)  # the still view's full redraw (points_cpu.js: 150 ms after)
    ticks = page.evaluate("window.__stop()")
    frames = []
    for (t0, f0, _), (t1, f1, _) in zip(ticks, ticks[1:], strict=False):
        if f1 > f0:  # the scatter drew in this frame
            frames.append(t1 - t0)
    full = ticks[-1][2] - ticks[0][2]
    drawn = ticks[-1][1] - ticks[0][1]
    paint_ms = page.locator("#scatter").get_attribute("data-paint-ms")
    return {
        "moves": moves,
        "wheels": wheels,
        "window_ms": round(ticks[-1][0] - ticks[0][0], 1),
        "frames_drawn": drawn,
        "full_redraws": full,
        "frame_ms": _spread(frames) if frames else None,
        "all_intervals_ms": _spread([b[0] - a[0] for a, b in zip(ticks, ticks[1:], strict=False)]),
        "last_full_redraw_ms": None if paint_ms is None else float(paint_ms),
    }


def _drawn_after(page: Any, since: float, name: str, value: str | None) -> float:
    """When ``#scatter``'s attribute ``name`` first changed (to ``value``, if given) after ``since``."""
    marks = page.evaluate("window.__marks")
    return next(t for t, n, v in marks if t >= since and n == name and value in (None, v))


def legend_toggles(page: Any, repeat: int) -> dict[str, Any]:
    """Hide, then show again, the first category: each a new colour for every point."""
    times = []
    for _ in range(2 * repeat):
        _still(page)
        full = page.locator("#scatter").get_attribute("data-full")
        t0 = page.evaluate("performance.now()")
        page.locator("#embedding-legend button.toggle").first.click()
        deadline = time.monotonic() + 60
        while page.locator("#scatter").get_attribute("data-full") == full:
            assert time.monotonic() < deadline, "the legend toggle drew nothing in 60 s"
            page.wait_for_timeout(20)
        page.wait_for_timeout(100)
        times.append(_drawn_after(page, t0, "data-full:shown", None) - t0)
    return _spread(times)


def colour_by_genes(page: Any, genes: list[str]) -> dict[str, Any]:
    """Choose each gene in "or gene": click to the frame drawn in its colours."""
    times, fetches = [], []
    for gene in genes:
        _still(page)
        box = page.locator("#color-gene")
        box.fill(gene)
        option = page.locator(f'#color-gene-options [role=option][data-gene="{gene}"]')
        option.wait_for(timeout=30_000)
        t0 = page.evaluate("performance.now()")
        option.click()
        page.wait_for_selector(f"#scatter[data-color='{gene}']", state="attached", timeout=120_000)
        page.wait_for_timeout(200)
        done = _drawn_after(page, t0, "data-color:shown", gene)
        times.append(done - t0)
        fetch = page.evaluate(
            """([gene, t0]) => performance.getEntriesByType('resource')
            .filter((e) => e.name.includes(`color=${encodeURIComponent(gene)}`) && e.startTime >= t0)
            .map((e) => e.responseEnd - e.startTime)""",
            [gene, t0],
        )
        fetches.append(fetch[0] if fetch else float("nan"))
    return {"genes": genes, "redraw": _spread(times), "fetch": _spread(fetches)}


def measure(url: str, n: int, genes: list[str], args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = Browser(p, url)
        try:
            out["cold"] = first_draw(browser.page(), url, n, timeout_s=300)
            page = browser.page()
            out["warm"] = first_draw(page, url, n, timeout_s=300)
            out["pan_zoom"] = pan_and_zoom(page, moves=args.moves, wheels=args.wheels)
            out["legend_toggle"] = legend_toggles(page, repeat=3)
            out["colour_by_gene"] = colour_by_genes(page, genes)
            if not args.no_peer:
                peer = browser.page(renderer="webgl")
                out["peer"] = {
                    "name": "WebGL painter forced (software WebGL: SwiftShader)",
                    **first_draw(peer, url, n, timeout_s=600),
                    "pan": pan_and_zoom(peer, moves=args.peer_moves, wheels=0),
                }
        finally:
            browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--genes", type=int, default=200)
    parser.add_argument("--nnz", type=int, default=20, help="non-zeros per cell (mean)")
    parser.add_argument("--moves", type=int, default=150, help="pointer moves of the drag")
    parser.add_argument("--wheels", type=int, default=40, help="wheel steps (half in, half out)")
    parser.add_argument("--peer-moves", type=int, default=12, help="pointer moves of the peer's drag")
    parser.add_argument("--no-peer", action="store_true", help="skip the forced-WebGL page")
    parser.add_argument("--no-record", action="store_true", help="print only; nothing in results/")
    parser.add_argument("--force", action="store_true", help="record even from a dirty tree (marked dirty)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: make chromium (Debian's chromium)")
    try:
        machine = begin(record=not args.no_record, force=args.force)
    except DirtyTree as exc:
        sys.exit(str(exc))
    started = datetime.now(UTC)
    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="widecube-embedding-") as tmp:
        settings, path, made_s, ingest_s = build(Path(tmp), args)
        t0 = time.perf_counter()
        wc = Widecube(settings)  # what `widecube serve` does after a publish (upkeep)
        wc.warm("e1m", actor=Actor.cli("bench"))
        wc.close()
        warm_s = time.perf_counter() - t0
        var = ad.read_h5ad(path, backed="r").var_names
        genes = [str(var[j]) for j in np.random.default_rng(0).choice(len(var), 3, replace=False)]
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings, upkeep=False, jobs=False),
                host="127.0.0.1",
                port=port,
                log_level="warning",
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            figures = measure(f"http://127.0.0.1:{port}", args.cells, genes, args)
        finally:
            server.should_exit = True
            thread.join()
    frame = figures["pan_zoom"]["frame_ms"]
    record = {
        "name": "embedding 1M points" if args.cells == 1_000_000 else f"embedding {args.cells:,} points",
        "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "loadavg_start": load_start,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "cells": args.cells,
        "genes": args.genes,
        "nnz_per_cell": args.nnz,
        "make_s": round(made_s, 1),
        "ingest_s": round(ingest_s, 1),
        "cache_warm_s": round(warm_s, 1),
        "browser": f"{CHROMIUM} (headless, {' '.join(ARGS)})",
        "viewport": VIEWPORT,
        **figures,
        "smooth": frame is not None and frame["p95_ms"] <= SMOOTH_P95_MS,
        "command": f"python benchmarks/embedding.py --cells {args.cells} --genes {args.genes} "
        f"--nnz {args.nnz}",
    }
    print(json.dumps(record, indent=1, default=str))
    if not args.no_record:
        out = save(record, "embedding", stamp=started.strftime("%Y%m%dT%H%M%SZ"))
        regenerate()
        print(f"recorded {out}; benchmarks/RESULTS.md and the README regenerated")


if __name__ == "__main__":
    main()
