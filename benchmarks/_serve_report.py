"""Judge a serve benchmark against the issue's targets and render it for ``RESULTS.md``."""

from __future__ import annotations

from typing import Any

__all__ = ["render_serve_section", "verdicts"]

IN_PROCESS_P50_MS = 1.0
HTTP_P50_MS = 5.0
WRK_RPS = 1000.0


def verdicts(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: what, the measured value, the target, pass or fail."""
    p, h, w = r["in_process"]["live"], r["http"]["post_live"], r["wrk"]
    g = r["http"]["post_live_gzip"]
    return [
        {
            "what": "in-process p50 (`Widecube.summary`, live version)",
            "value": p["p50_ms"],
            "shown": f"{p['p50_ms']:.3f} ms",
            "target": f"≤ {IN_PROCESS_P50_MS:g} ms",
            "pass": p["p50_ms"] <= IN_PROCESS_P50_MS,
        },
        {
            "what": "HTTP p50 on loopback (`POST /summary`, plain JSON, 1 worker)",
            "value": h["p50_ms"],
            "shown": f"{h['p50_ms']:.3f} ms",
            "target": f"≤ {HTTP_P50_MS:g} ms",
            "pass": h["p50_ms"] <= HTTP_P50_MS,
        },
        {
            "what": "HTTP p50 on loopback, client accepting gzip",
            "value": g["p50_ms"],
            "shown": f"{g['p50_ms']:.3f} ms",
            "target": f"≤ {HTTP_P50_MS:g} ms",
            "pass": g["p50_ms"] <= HTTP_P50_MS,
        },
        {
            "what": f"wrk {w['duration_us'] / 1e6:.0f} s, `--workers {r['workers_under_wrk']}`: requests/s",
            "value": w["requests_per_s"],
            "shown": f"{w['requests_per_s']:,.0f}",
            "target": f"≥ {WRK_RPS:,.0f}",
            "pass": w["requests_per_s"] >= WRK_RPS,
        },
        {
            "what": "wrk errors (connect, read, write, timeout, non-2xx)",
            "value": w["errors"],
            "shown": str(w["errors"]),
            "target": "0",
            "pass": w["errors"] == 0,
        },
    ]


def _row(name: str, s: dict[str, float]) -> str:
    return f"| {name} | {s['p50_ms']:.3f} | {s['p95_ms']:.3f} | {s['p99_ms']:.3f} | {s['n']:,} |"


def render_serve_section(r: dict[str, Any]) -> str:
    """One serve run as Markdown: machine, commands, latency table, wrk figures, verdicts."""
    m, q, w = r["machine"], r["query"], r["wrk"]
    p50 = r["in_process"]["live"]["p50_ms"]
    start, end = (" / ".join(map(str, x)) for x in (m["load_average_at_start"], r["load_average_at_end"]))
    dirty = " (working tree dirty: uncommitted changes)" if m["git_dirty"] else ""
    ingest = f"; ingested in {r['ingest_s']:.1f} s" if r.get("ingest_s") else ""
    lines = [
        f"## {r['name']} — {r['started_utc']}",
        "",
        f"* machine: {m['cpu']}, {m['cores']} cores, {m['memory_bytes'] / 1e9:.2f} GB RAM; {m['os']}; "
        f"Python {m['python']}, numpy {m['packages']['numpy']}; load average at start {start}, at end {end}",
        f"* widecube commit `{m['git_commit']}`{dirty}",
        f"* input: `{r['input']}` (`widecube ingest … --groupby cluster --groupby cluster,donor`{ingest})",
        f"* query: {q['genes']} random genes × {q['groups']} groups of `{q['groupby']}` × "
        f"({', '.join(q['stats'])}), {q.get('layer', 'raw')} layer; every figure below is for that query",
        "",
        "```sh",
        ".venv/bin/python benchmarks/serve.py   # make bench-serve",
        f"widecube serve --workers {r['workers_under_wrk']} --no-access-log   # under wrk (else 1 worker)",
        w["command"],
        "```",
        "",
        "| path | p50 ms | p95 ms | p99 ms | queries |",
        "|---|---:|---:|---:|---:|",
        _row(
            "widecube in-process, live version (`Widecube.summary`: catalog + lookup + mmap)",
            r["in_process"]["live"],
        ),
        _row("widecube in-process, pinned version", r["in_process"]["pinned"]),
        _row(
            "zarr-python, naive: open the 2 layers and `oindex` them per query",
            r["zarr_naive"]["open_per_query"],
        ),
        _row("zarr-python, arrays opened once, `oindex` per query", r["zarr_naive"]["opened_once"]),
        _row(
            "HTTP loopback, `POST /summary` live, keep-alive, 1 worker (body read, not parsed)",
            r["http"]["post_live"],
        ),
        _row("HTTP loopback, `GET /summary?…&version=` pinned", r["http"]["get_pinned"]),
        _row(
            "HTTP loopback, `POST /summary` live, client accepts gzip (server deflates, httpx inflates)",
            r["http"]["post_live_gzip"],
        ),
        "",
        f"* zarr-python naive / widecube in-process (p50): "
        f"{r['zarr_naive']['open_per_query']['p50_ms'] / p50:,.0f}× (open per query), "
        f"{r['zarr_naive']['opened_once']['p50_ms'] / p50:,.0f}× (opened once)",
        f"* wrk: {w['requests']:,} requests in {w['duration_us'] / 1e6:.1f} s = **{w['requests_per_s']:,.0f} "
        f"requests/s**, {w['bytes'] / 1e9:.2f} GB read; latency p50 {w['latency_ms']['p50']:.1f} ms, "
        f"p90 {w['latency_ms']['p90']:.1f} ms, p99 {w['latency_ms']['p99']:.1f} ms; errors: connect "
        f"{w['connect_errors']}, read {w['read_errors']}, write {w['write_errors']}, "
        f"timeout {w['timeouts']}, non-2xx {w['non_2xx']}. wrk runs on the same {m['cores']} cores "
        "as the server.",
        f"* CPU during the wrk run: server (all workers) {w['server_cpu_s']:.1f} s = "
        f"**{w['server_cpu_ms_per_request']:.2f} ms per request**, wrk {w['wrk_cpu_s']:.1f} s, over "
        f"{w['duration_us'] / 1e6:.0f} s × {m['cores']} cores = {w['duration_us'] / 1e6 * m['cores']:.0f} "
        f"core-seconds; the rest went to other processes on the machine (load average above). "
        f"Estimate, not a measurement: {m['cores']} cores given to the server alone would sustain about "
        f"{1e3 * m['cores'] / w['server_cpu_ms_per_request']:,.0f} requests/s.",
        "",
        "| what | value | target | verdict |",
        "|---|---:|---:|---|",
        *(
            f"| {v['what']} | {v['shown']} | {v['target']} | {'**PASS**' if v['pass'] else '**FAIL**'} |"
            for v in r["verdicts"]
        ),
    ]
    return "\n".join(lines) + "\n"
