"""Judge the embedding benchmark (``embedding.py``) against issue 15's "smooth at 1 M points"
and render it for ``RESULTS.md``."""

from __future__ import annotations

from typing import Any

__all__ = ["SMOOTH_P95_MS", "headline", "render_embedding_section", "verdicts"]

SMOOTH_P95_MS = 1000 / 30
"""Smooth: the 95th percentile of the pan-and-zoom frame times at most 33.3 ms (≥ 30 frames/s)."""


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f} ms"


def verdicts(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Smoothness has a pass mark; the other times are recorded without one."""
    frame = r["pan_zoom"]["frame_ms"]
    p95 = None if frame is None else frame["p95_ms"]
    out = [
        {
            "what": f"pan and zoom, p95 frame time at {r['cells']:,} points "
            f"({r['warm']['renderer']} painter, headless Chromium)",
            "value": p95,
            "shown": _ms(p95),
            "target": f"≤ {SMOOTH_P95_MS:.1f} ms",
            "pass": p95 is not None and p95 <= SMOOTH_P95_MS,
        },
        {
            "what": "first draw, warm server (navigation start to every point drawn)",
            "value": r["warm"]["first_draw_ms"],
            "shown": _ms(r["warm"]["first_draw_ms"]),
            "target": "—",
            "pass": None,
        },
        {
            "what": "colour by a gene, median (choice to every point drawn)",
            "value": r["colour_by_gene"]["redraw"]["p50_ms"],
            "shown": _ms(r["colour_by_gene"]["redraw"]["p50_ms"]),
            "target": "—",
            "pass": None,
        },
    ]
    return out


def headline(r: dict[str, Any]) -> tuple[str, str]:
    """The README's figures: ours and the peer's (the WebGL painter forced), same run."""
    frame = r["pan_zoom"]["frame_ms"]
    ours = (
        f"{r['cells']:,} points: pan/zoom frames p50 {_ms(frame['p50_ms'])}, p95 {_ms(frame['p95_ms'])}; "
        f"first draw {r['warm']['first_draw_ms'] / 1000:.1f} s; colour by a gene "
        f"{_ms(r['colour_by_gene']['redraw']['p50_ms'])}"
    )
    peer = r.get("peer")
    if not peer:
        return ours, "—"
    pan = peer["pan"]["frame_ms"]
    return ours, (
        f"WebGL painter in software (SwiftShader): frames p50 {_ms(pan and pan['p50_ms'])}, "
        f"first draw {peer['first_draw_ms'] / 1000:.1f} s"
    )


def _span(load: dict[str, Any]) -> str:
    start, end = load["embedding_request_ms"]
    return f"{start:,.0f}–{end:,.0f} ms"


def _row(who: str, t: dict[str, Any] | None) -> str:
    if t is None:
        return f"| {who} | — | — | — | 0 |"
    return f"| {who} | {_ms(t['p50_ms'])} | {_ms(t['p95_ms'])} | {_ms(t['max_ms'])} | {t['n']} |"


def render_embedding_section(r: dict[str, Any]) -> str:
    """When, where, the dataset, the timings and the verdicts."""
    m = r["machine"]
    dirty = " (working tree dirty: uncommitted changes)" if m["git_dirty"] else ""
    start, end = (" / ".join(f"{x:.2f}" for x in r[k]) for k in ("loadavg_start", "loadavg_end"))
    pz, cold, warm = r["pan_zoom"], r["cold"], r["warm"]
    peer = r.get("peer")
    gpu = "no GPU for WebGL (Chromium runs it in software)" if warm["renderer"] == "cpu" else "WebGL on a GPU"
    lines = [
        f"## {r['name']} — {r['started_utc']}",
        "",
        f"* machine: {m['cpu']}, {m['cores']} cores, {m['memory_bytes'] / 1e9:.2f} GB RAM, {gpu}; "
        f"{m['os']}; Python {m['python']}; load average at start {start}, at end {end}",
        f"* widecube commit `{m['git_commit']}`{dirty}",
        f"* browser: {r['browser']}, viewport {r['viewport']['width']} × {r['viewport']['height']}; "
        f"painter chosen by the UI: **{warm['renderer']}**",
        f"* dataset: `make_demo` {r['cells']:,} cells × {r['genes']} genes ({r['nnz_per_cell']} non-zeros "
        f"a cell), made in {r['make_s']:.0f} s, ingested (summary and gene-major views) in "
        f"{r['ingest_s']:.0f} s, its cache warmed in {r['cache_warm_s']:.0f} s (as `widecube serve` does "
        "after a publish); embedding tab coloured by `cell_type`",
        "* first draw (navigation start to every point drawn and on screen): cold server "
        f"{_ms(cold['first_draw_ms'])} "
        f"(embedding asked and answered {_span(cold)}, {cold['embedding_bytes'] / 1e6:.1f} MB), warm "
        f"{_ms(warm['first_draw_ms'])} (answered {_span(warm)}; {_ms(warm['after_response_ms'])} from the "
        "answer to the drawing)",
        f"* pan and zoom: {pz['moves']} pointer moves then {pz['wheels']} wheel steps over "
        f"{pz['window_ms'] / 1000:.1f} s; {pz['frames_drawn']} frames drawn, {pz['full_redraws']} of them "
        f"with every point; the last full redraw took {_ms(pz['last_full_redraw_ms'])} of CPU",
        f"* smooth (the target): p95 of the frame times ≤ {SMOOTH_P95_MS:.1f} ms (≥ 30 frames a second): "
        f"**{'yes' if r['smooth'] else 'no'}**",
        "",
        "```sh",
        f".venv/bin/{r['command']}",
        "```",
        "",
        "| what | p50 | p95 | max | n |",
        "|---|---:|---:|---:|---:|",
        _row("pan and zoom, frames that drew", pz["frame_ms"]),
        _row("pan and zoom, every frame interval", pz["all_intervals_ms"]),
        _row("legend toggle (every point recoloured)", r["legend_toggle"]),
        _row("colour by a gene (choice to drawn)", r["colour_by_gene"]["redraw"]),
        _row("… of which the gene's request", r["colour_by_gene"]["fetch"]),
    ]
    if peer:
        lines.append(_row(f"peer: {peer['name']}, drag frames", peer["pan"]["frame_ms"]))
        lines += ["", f"Peer's first draw (warm server): {_ms(peer['first_draw_ms'])}."]
    lines += [
        "",
        "| comparison | value | target | verdict |",
        "|---|---:|---:|---|",
        *(
            f"| {v['what']} | {v['shown']} | {v['target']} | "
            f"{'n/a' if v['pass'] is None else ('PASS' if v['pass'] else 'FAIL')} |"
            for v in verdicts(r)
        ),
    ]
    return "\n".join(lines) + "\n"
