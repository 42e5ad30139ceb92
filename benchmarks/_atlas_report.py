"""Judge a cross-dataset gene query benchmark (``atlas.py``) against issue 13's number and
render it for ``RESULTS.md``."""

from __future__ import annotations

from typing import Any

__all__ = ["HTTP_P50_MS", "headline", "render_atlas_section", "verdicts"]

HTTP_P50_MS = 50.0
"""Issue 13: p50 ≤ 50 ms for 20 genes across 100 small datasets."""


def verdicts(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The target over HTTP; the in-process figure and the peer's ratio recorded without one."""
    h, p = r["http"], r["in_process"]
    return [
        {
            "what": f"`POST /atlas/expression` p50 over HTTP, {r['asked_genes']} genes × "
            f"{r['datasets']} datasets (1 worker, auth on, anonymous, public datasets)",
            "value": h["p50_ms"],
            "shown": f"{h['p50_ms']:.1f} ms",
            "target": f"≤ {HTTP_P50_MS:g} ms",
            "pass": h["p50_ms"] <= HTTP_P50_MS,
        },
        {
            "what": "`Widecube.atlas_expression` p50 in-process",
            "value": p["p50_ms"],
            "shown": f"{p['p50_ms']:.1f} ms",
            "target": "—",
            "pass": None,
        },
    ]


def headline(r: dict[str, Any]) -> tuple[str, str]:
    """The README's figures: ours and the peer's, same run."""
    return (
        f"{r['asked_genes']} genes × {r['datasets']} datasets, pooled: p50 "
        f"{r['in_process']['p50_ms']:.1f} ms in-process, {r['http']['p50_ms']:.1f} ms over HTTP",
        f"anndata `read_zarr` of each summary view + numpy: p50 {r['peer']['p50_ms']:,.0f} ms "
        f"({r['ratio_peer_over_http']:.0f}×)",
    )


def render_atlas_section(r: dict[str, Any]) -> str:
    """When, where, the datasets, the three timings and the verdicts."""
    m = r["machine"]
    dirty = " (working tree dirty: uncommitted changes)" if m["git_dirty"] else ""
    start, end = (" / ".join(f"{x:.2f}" for x in r[k]) for k in ("loadavg_start", "loadavg_end"))
    rows = [
        ("widecube, in process", r["in_process"]),
        ("widecube, HTTP", r["http"]),
        (r["peer"]["name"], r["peer"]),
    ]
    lines = [
        f"## {r['name']} — {r['started_utc']}",
        "",
        f"* machine: {m['cpu']}, {m['cores']} cores, {m['memory_bytes'] / 1e9:.2f} GB RAM; {m['os']}; "
        f"Python {m['python']}; load average at start {start}, at end {end}",
        f"* widecube commit `{m['git_commit']}`{dirty}",
        f"* {r['datasets']} datasets ingested (summary view) from {r['inputs']} demo inputs of "
        f"{r['cells']:,} cells × {r['genes']:,} genes in {r['ingest_s']:.0f} s; {r['asked_genes']} genes "
        "asked (every fourth by its Ensembl ID, lower-cased), grouped by cell_type "
        f"({r['groups']} groups), filter organism, normalized layer, mean and fraction expressing; first "
        f"query (decoding into the cache) {r['first_query_s']:.2f} s; pooled answers equal to the "
        f"peer's within {r['pooled_max_abs_difference']:.1e}",
        "",
        "```sh",
        f".venv/bin/{r['command']}",
        "```",
        "",
        "| who | p50 | p90 | min | runs |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {who} | {t['p50_ms']:.1f} ms | {t['p90_ms']:.1f} ms | {t['min_ms']:.1f} ms | {t['n']} |"
            for who, t in rows
        ),
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
