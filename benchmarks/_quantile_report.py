"""Render one quantile-kernel micro-benchmark run (``quantile_kernel.py``) for ``RESULTS.md``."""

from __future__ import annotations

from typing import Any

__all__ = ["render_quantile_section", "verdicts"]


def verdicts(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The selection kernel against the sort kernel it replaced: recorded, no pass mark (the
    issue that replaced it set none); the equality of the two answers is checked by the run."""
    return [
        {
            "what": f"selection kernel / sort kernel, {kind} time (best of the repeats)",
            "value": r[f"{kind}_ratio_select_over_sort"],
            "shown": f"{r[f'{kind}_ratio_select_over_sort']:.3f}",
            "target": "—",
            "pass": None,
        }
        for kind in ("cpu", "wall")
    ]


def render_quantile_section(r: dict[str, Any]) -> str:
    """When, where, the slab, both kernels' times and their ratio."""
    m = r["machine"]
    dirty = " (working tree dirty: uncommitted changes)" if m["git_dirty"] else ""
    start, end = (" / ".join(f"{x:.2f}" for x in r[k]) for k in ("loadavg_start", "loadavg_end"))
    lines = [
        f"## {r['name']} — {r['started_utc']}",
        "",
        f"* machine: {m['cpu']}, {m['cores']} cores, {m['memory_bytes'] / 1e9:.2f} GB RAM; {m['os']}; "
        f"Python {m['python']}, numba {m['packages']['numba']} ({r['numba_threads']} threads); "
        f"load average at start {start}, at end {end}",
        f"* widecube commit `{m['git_commit']}`{dirty}",
        f"* slab: {r['genes']:,} genes × {r['cells']:,} cells, {r['nnz']:,} non-zeros "
        f"({100 * r['density']:.1f} %), {r['layers']} layers, groupings of "
        f"{' and '.join(map(str, r['groups']))} groups, quantiles "
        f"{', '.join(f'{q:g}' for q in r['quantiles'])}; both answers equal bit for bit",
        "",
        "```sh",
        f".venv/bin/python benchmarks/quantile_kernel.py --genes {r['genes']} --cells {r['cells']}",
        "```",
        "",
        "| kernel | CPU (best) | wall (best) |",
        "|---|---:|---:|",
        f"| selection (widecube's) | {r['select_cpu_s']:.3f} s | {r['select_wall_s']:.3f} s |",
        f"| sort (the one it replaced) | {r['sort_cpu_s']:.3f} s | {r['sort_wall_s']:.3f} s |",
        "",
        "| comparison | value | target | verdict |",
        "|---|---:|---:|---|",
        *(f"| {v['what']} | {v['shown']} | {v['target']} | n/a |" for v in verdicts(r)),
    ]
    return "\n".join(lines) + "\n"
