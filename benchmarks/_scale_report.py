"""Render one scale-out run (``scale.py``: scheduler, serve-s3, ingest) for ``RESULTS.md``."""

from __future__ import annotations

from typing import Any

__all__ = ["headline", "render_scale_section", "verdicts"]


def verdicts(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's targets as ``{what, value, shown, target, pass}`` (pass None: recorded only)."""
    return [
        {
            "what": v["what"],
            "value": v["value"],
            "shown": v["shown"],
            "target": v["target_shown"],
            "pass": None if v.get("group") == "record" else v["pass"],
        }
        for v in r["verdicts"]
    ]


def headline(r: dict[str, Any]) -> tuple[str, str]:
    """widecube's figure and the figure it is compared with, from one run."""
    name = r["name"]
    if name == "scale scheduler":
        return (
            f"{r['tasks']:,} tasks ({r['cells']:.0e} × {r['genes']:,}): "
            f"{r['overhead_per_task_ms']:.2f} ms per task, submission {r['submit_s']:.3f} s",
            f"{r['workers']} single-threaded workers, empty task bodies",
        )
    if name == "scale serve-s3":
        f = r["in_process"]
        return (
            f"dot-plot p50 from S3 after warm {f['s3']['p50_ms']:.3f} ms",
            f"local disk: {f['local']['p50_ms']:.3f} ms ({r['ratio_p50']:.2f}×)",
        )
    runs = r["runs"]
    server = r.get("s3_server") or "moto"  # records before LocalBucket name none
    s3 = f"S3 ({server}) {runs['s3']['wall_s']:,.1f} s" if "s3" in runs else "S3 not run"
    return (
        f"Dask 2 workers {runs['dask2']['wall_s']:,.1f} s; {s3}",
        f"single process, local disk: {runs['single']['wall_s']:,.1f} s",
    )


def _machine(r: dict[str, Any]) -> list[str]:
    m = r["machine"]
    load = " / ".join(f"{x:.2f}" for x in r["load_average_at_start"])
    return [
        f"* machine: {m['cpu']}, {m['cores']} cores, {m['memory_bytes'] / 1e9:.2f} GB RAM; {m['os']}; "
        f"Python {m['python']}; load average at start {load}",
        f"* widecube commit `{m['git_commit']}`",
        "",
        "```sh",
        r["command"],
        "```",
        "",
    ]


def _details(r: dict[str, Any]) -> list[str]:
    name = r["name"]
    if name == "scale scheduler":
        med = r["median"]
        by = ", ".join(
            f"{w} workers: {t['pass1_tasks']} + {t['pass2_tasks']}" for w, t in r["tasks_by_workers"].items()
        )
        return [
            f"The task graph of a {r['cells']:,} × {r['genes']:,} ingest at {r['nnz_per_cell']:,} non-zeros "
            f"per cell ({r['nnz']:.2e}): pass 1 {r['pass1_tasks']} row-range tasks, pass 2 "
            f"{r['pass2_tasks']} gene-range tasks of {r['bucket_width_genes']} genes (on {by}); "
            f"pass-1 results of their real size ({r['pass1_result_bytes'] / 1e6:,.0f} MB of library "
            f"sizes in all), a build context of {r['context_bytes'] / 1e6:,.0f} MB broadcast to every "
            f"worker. Median of {len(r['repeats'])} runs:",
            "",
            "| part | seconds |",
            "|---|---:|",
            *(f"| {k.removesuffix('_s').replace('_', ' ')} | {v:.3f} |" for k, v in med.items()),
        ]
    if name == "scale serve-s3":
        f, d = r["in_process"], r["dataset"]
        return [
            f"Dataset {d['shape'][0]:,} × {d['shape'][1]:,} ({d['nnz']:,} non-zeros), {r['groups']} "
            f"groups; the snapshot on S3: {r['snapshot_objects']:,} objects, "
            f"{r['snapshot_bytes'] / 1e6:,.1f} MB. Ingest {r['ingest_s']['local']:.1f} s local, "
            f"{r['ingest_s']['s3']:.1f} s to S3; warm {r['warm_s']['local']:.2f} s local, "
            f"{r['warm_s']['s3']:.2f} s from S3.",
            "",
            "| dot-plot query, in-process | p50 (ms) | p95 (ms) | n |",
            "|---|---:|---:|---:|",
            *(f"| {k} | {v['p50_ms']:.3f} | {v['p95_ms']:.3f} | {v['n']:,} |" for k, v in f.items()),
        ]
    d = r["dataset"]
    rounds = [r["runs"], *r.get("rounds", [])]  # records before 12-05 14:40 hold one round
    rows = [
        f"| {label}{f' (round {n + 1})' if len(rounds) > 1 else ''} | {run['wall_s']:,.1f} | "
        f"{run['cpu_s']:,.1f} | {run['peak_rss'] / 1e9:.2f} | {run['peak_tree_rss'] / 1e9:.2f} | "
        f"{run.get('speed_check_s', '–')} |"
        for n, one in enumerate(rounds)
        for label, run in one.items()
    ]
    return [
        f"Dataset {d['spec']['name']}: {d['shape'][0]:,} × {d['shape'][1]:,}, {d['nnz']:,} non-zeros, "
        f"{d['size'] / 1e9:.2f} GB; {r['snapshot_files']:,} snapshot files; upload to S3 "
        f"{r['upload_s']:.1f} s (not timed in the runs)"
        + (f"; S3 server: {r.get('s3_server') or 'moto'}." if "s3" in r["runs"] else "."),  # moto before
        "",
        "| run | wall (s) | CPU (s) | largest process (GB) | process tree (GB) | speed check (s) |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
    ]


def render_scale_section(r: dict[str, Any]) -> str:
    """When, where, what was run, its figures and its targets."""
    lines = [
        f"## {r['name']} — {r['started_utc']}",
        "",
        *_machine(r),
        *_details(r),
        "",
        "| figure | value | target | verdict |",
        "|---|---:|---:|---|",
        *(
            f"| {v['what']} | {v['shown']} | {v['target']} | "
            f"{'n/a' if v['pass'] is None else ('PASS' if v['pass'] else 'FAIL')} |"
            for v in verdicts(r)
        ),
    ]
    return "\n".join(lines) + "\n"
