"""Judge an access benchmark (``access.py``) against issue 11's numbers and render it for ``RESULTS.md``."""

from __future__ import annotations

from typing import Any

__all__ = ["OVERHEAD_P50_MS", "HTTP_P50_MS", "WRK_RATIO", "headline", "render_access_section", "verdicts"]

OVERHEAD_P50_MS = 0.1
HTTP_P50_MS = 3.0
WRK_RATIO = 0.9

_BACKENDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def verdicts(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target (``pass`` None: a figure recorded without a pass mark)."""
    out: list[dict[str, Any]] = []
    for key, p in r["in_process"].items():
        out.append(
            {
                "what": f"authorization overhead in-process, {_BACKENDS[key]} catalog: p50(auth on, bearer "
                "actor, restricted dataset with a reader grant) − p50(auth off)",
                "value": p["overhead_p50_ms"],
                "shown": f"{p['overhead_p50_ms']:.3f} ms",
                "target": f"≤ {OVERHEAD_P50_MS:g} ms",
                "pass": p["overhead_p50_ms"] <= OVERHEAD_P50_MS,
            }
        )
    h = r["http"]
    for key, label in (
        ("bearer_restricted", "bearer token, restricted dataset"),
        ("anonymous_public", "anonymous, public dataset"),
    ):
        out.append(
            {
                "what": f"HTTP dot-plot p50 (`POST /summary`, 1 worker, auth on, {label})",
                "value": h[key]["p50_ms"],
                "shown": f"{h[key]['p50_ms']:.3f} ms",
                "target": f"≤ {HTTP_P50_MS:g} ms",
                "pass": h[key]["p50_ms"] <= HTTP_P50_MS,
            }
        )
    w = r["wrk"]
    ratio = w["ratio_bearer_over_anonymous"]
    out += [
        {
            "what": f"wrk requests/s, bearer token / anonymous (auth on, `--workers {w['workers']}`)",
            "value": ratio,
            "shown": f"{ratio:.3f}",
            "target": f"≥ {WRK_RATIO:.2f}",
            "pass": ratio >= WRK_RATIO,
        },
        {
            "what": "wrk errors, all set-ups (connect, read, write, timeout, non-2xx)",
            "value": sum(w[k]["errors"] for k in ("auth_off", "anonymous_public", "bearer_restricted")),
            "shown": str(sum(w[k]["errors"] for k in ("auth_off", "anonymous_public", "bearer_restricted"))),
            "target": "0",
            "pass": all(w[k]["errors"] == 0 for k in ("auth_off", "anonymous_public", "bearer_restricted")),
        },
        {
            "what": "wrk requests/s, bearer token / authentication off (same run)",
            "value": w["ratio_bearer_over_off"],
            "shown": f"{w['ratio_bearer_over_off']:.3f}",
            "target": "—",
            "pass": None,
        },
    ]
    return out


def headline(r: dict[str, Any]) -> tuple[str, str]:
    """The README's figures: with authorization, and without it in the same run."""
    p, h, w = r["in_process"]["sqlite"], r["http"], r["wrk"]
    return (
        f"dot-plot query with a bearer token: p50 {p['auth_on_token']['p50_ms']:.3f} ms in-process "
        f"(+{p['overhead_p50_ms'] * 1e3:.0f} µs), {h['bearer_restricted']['p50_ms']:.2f} ms over HTTP; "
        f"wrk {w['bearer_restricted']['requests_per_s']:,.0f} requests/s",
        f"authentication off: p50 {p['auth_off']['p50_ms']:.3f} ms in-process, "
        f"{h['auth_off']['p50_ms']:.2f} ms over HTTP; wrk {w['auth_off']['requests_per_s']:,.0f} requests/s "
        f"(anonymous, auth on: {w['anonymous_public']['requests_per_s']:,.0f})",
    )


def _row(name: str, s: dict[str, Any]) -> str:
    rounds = ", ".join(f"{x:.3f}" for x in s.get("round_p50_ms", []))
    return f"| {name} | {s['p50_ms']:.3f} | {s['p95_ms']:.3f} | {s['p99_ms']:.3f} | {s['n']:,} | {rounds} |"


def _cpu_row(name: str, s: dict[str, Any]) -> str:
    """A latency row with the server's CPU per request (runs before it was recorded: —)."""
    cpu = s.get("server_cpu_ms_per_request")
    return f"{_row(name, s)} {'—' if cpu is None else f'{cpu:.2f}'} |"


_IN_PROCESS = (
    ("auth_off", "`Widecube.summary`, auth off (settings `auth=False`, CLI actor)"),
    (
        "auth_on_token",
        "`Widecube.summary`, auth on, actor from `Identities.bearer` (reader grant, restricted)",
    ),
    (
        "auth_on_bearer_per_query",
        "the same with `Identities.bearer(token)` per query (one API request's work)",
    ),
    ("no_door", "`Widecube.summary` with the door replaced by a pass-through (for the record)"),
    ("authorize_off", "`Door.authorize` alone, auth off"),
    ("authorize_on", "`Door.authorize` alone, auth on, bearer actor"),
    ("bearer", "`Identities.bearer` alone (token lookup, SHA-256, groups)"),
)


def render_access_section(r: dict[str, Any]) -> str:
    """One access run as Markdown: machine, set-up, latency tables, wrk figures, verdicts."""
    m, q, w = r["machine"], r["query"], r["wrk"]
    loads = "; ".join(
        f"{k.replace('_', ' ')} {' / '.join(f'{x:.2f}' for x in v)}" for k, v in r["load_average"].items()
    )
    dirty = " (working tree dirty: uncommitted changes)" if m["git_dirty"] else ""
    ingest = f"; ingested in {r['ingest_s']:.1f} s" if r.get("ingest_s") else ""
    lines = [
        f"## {r['name']} — {r['started_utc']}",
        "",
        f"* machine: {m['cpu']}, {m['cores']} cores, {m['memory_bytes'] / 1e9:.2f} GB RAM; {m['os']}; "
        f"Python {m['python']}; load average {loads}; at end "
        f"{' / '.join(f'{x:.2f}' for x in r['load_average_at_end'])}",
        f"* widecube commit `{m['git_commit']}`{dirty}",
        f"* input: `{r['input']}` (as `make demo`: `widecube ingest … --groupby cell_type --groupby donor "
        f"--groupby cell_type,donor --visibility public --classification open`{ingest})",
        f"* query (the UI's dot plot): {q['genes']} genes × {q['groups']} groups of `{q['groupby']}` × "
        f"({', '.join(q['stats'])}), {q['layer']} layer, live version",
        "* in-process, the cases are called in turn, call by call (order rotated; p50 per slice: the "
        f"calls cut in {r['rounds']}); over HTTP and under wrk the set-ups take turns in rounds; "
        "servers run with "
        f"`WIDECUBE_RATE_LIMIT={r['rate_limit']}` (the limiter is not measured); the dataset is switched "
        "between `public` (anonymous) and `restricted` (bearer token of a user with a `reader` grant) "
        "between rounds",
        "",
        "```sh",
        f".venv/bin/python {r['command']}   # make bench-access",
        f"WIDECUBE_AUTH=false|true widecube serve --workers {w['workers']} --no-access-log   # under wrk "
        "(else 1 worker)",
        f"{w['command']}   # + Authorization: Bearer <token> for the token set-up",
        "```",
        "",
    ]
    for key, p in r["in_process"].items():
        lines += [
            f"In-process, {_BACKENDS[key]} catalog:",
            "",
            "| path | p50 ms | p95 ms | p99 ms | calls | p50 per slice ms |",
            "|---|---:|---:|---:|---:|---|",
            *(_row(label, p[k]) for k, label in _IN_PROCESS),
            "",
            "* authorization overhead p50(auth on) − p50(auth off) = "
            f"**{p['overhead_p50_ms'] * 1e3:.1f} µs** "
            f"(per slice of the calls: {', '.join(f'{x * 1e3:.1f}' for x in p['overhead_round_p50_ms'])} µs; "
            f"median of the paired differences {p['overhead_paired_median_ms'] * 1e3:.1f} µs); the whole "
            f"door, p50(auth on) − p50(no door) = {p['door_p50_ms'] * 1e3:.1f} µs",
            "",
        ]
    h = r["http"]
    lines += [
        "HTTP on loopback, `POST /summary`, keep-alive, plain JSON, 1 worker (body read, not parsed):",
        "",
        "| set-up | p50 ms | p95 ms | p99 ms | requests | p50 per round ms | server CPU ms per request |",
        "|---|---:|---:|---:|---:|---|---:|",
        _cpu_row("auth off", h["auth_off"]),
        _cpu_row("auth on, anonymous, public dataset", h["anonymous_public"]),
        _cpu_row("auth on, bearer token, restricted dataset (reader grant)", h["bearer_restricted"]),
        "",
        f"wrk, `--workers {w['workers']}`, {w['rounds']} rounds × {w['seconds_per_round']} s per set-up "
        f"(wrk runs on the same {m['cores']} cores as the server):",
        "",
        "| set-up | requests/s | requests | errors | p50 ms per round | server CPU ms per request |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for key, label in (
        ("auth_off", "auth off"),
        ("anonymous_public", "auth on, anonymous, public"),
        ("bearer_restricted", "auth on, bearer token, restricted"),
    ):
        s = w[key]
        lines.append(
            f"| {label} | {s['requests_per_s']:,.0f} | {s['requests']:,} | {s['errors']} | "
            f"{', '.join(f'{x:.1f}' for x in s['round_latency_p50_ms'])} | "
            f"{s['server_cpu_ms_per_request']:.2f} |"
        )
    lines += [
        "",
        f"* bearer / anonymous = **{w['ratio_bearer_over_anonymous']:.3f}**; bearer / auth off = "
        f"{w['ratio_bearer_over_off']:.3f}; anonymous / auth off = {w['ratio_anonymous_over_off']:.3f}; "
        "requests/s per round: "
        + "; ".join(
            f"{k.replace('_', ' ')} {', '.join(f'{x:,.0f}' for x in w[k]['round_requests_per_s'])}"
            for k in ("auth_off", "anonymous_public", "bearer_restricted")
        ),
        "",
        "| what | value | target | verdict |",
        "|---|---:|---:|---|",
        *(
            f"| {v['what']} | {v['shown']} | {v['target']} | "
            f"{'n/a' if v['pass'] is None else '**PASS**' if v['pass'] else '**FAIL**'} |"
            for v in verdicts(r)
        ),
    ]
    return "\n".join(lines) + "\n"
