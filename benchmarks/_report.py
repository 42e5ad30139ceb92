"""Describe the machine, and render one ingest benchmark run (``run.py``) as a section of ``RESULTS.md``.

``RESULTS.md`` is :data:`HEADER` (what the benchmarks are, their targets) followed by every
recorded run; ``report.py`` assembles it from ``results/*.json``.
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = ["HEADER", "machine_info", "render_section"]

HEADER = """# widecube benchmark results

Datasets (made by `widecube demo-data`: negative-binomial counts, 100 clusters in
`cluster`, 8 donors in `donor`), and what each must show:

* **B100k** — 100,000 cells × 30,000 genes, about 5,000 non-zeros per cell (~0.5 billion,
  4 GB h5ad).
  * **Issue 3 (current target):** widecube's **full ingest** — every view: summaries on the
    raw and the normalized layer for both groupings, exact quantiles, the gene-major
    transpose, markers, gene and cell stats, then verify and publish — takes **≤ 0.5 ×
    scanpy's wall time**, where scanpy's time is the read **plus** `aggregate(func=["sum",
    "mean", "var", "count_nonzero"])` **plus** `aggregate(func="median")`, for both
    groupings; widecube's **peak RSS ≤ 2.5 GB**.
  * **Issue 2 (secondary, kept for continuity):** the same widecube wall time against scanpy's
    read + 4-function aggregate only (issue 2's peer), taken from the same scanpy run. In
    issue 2 widecube built the summary views only; it now builds every view, so it does far
    more work than this peer (sections dated before issue 3 show the summary-only ingest).
* **B1M** — 1,000,000 cells × 30,000 genes, about 2,000 non-zeros per cell (~2 billion,
  ~16 GB h5ad; generation needs 40 GB free disk, and each ingest ~18 bytes per non-zero of
  working space). **Issue 3:** the full ingest finishes with **peak RSS ≤ 3 GB**; its wall
  time and per-step times are recorded. scanpy is tried as well, under a memory guard so it
  cannot take the machine down (address space capped at 20 GB, so allocations past it raise
  `MemoryError`; killed past 20 GB RSS or when the machine has less than 1.5 GB available,
  and past the time limit); on this 24 GB machine it is expected to fail to load, and what
  happened is recorded.

How the ingest benchmarks are measured (`benchmarks/run.py`; `make bench` runs B100k with every other
benchmark, `run.py --only b1m` runs B1M):

* every tool runs in a fresh process, one at a time, its wall time measured from outside;
  peak RSS is the kernel's high-water mark (`/usr/bin/time -v`, "Maximum resident set size")
  and, as a cross-check, the largest sum of RSS over the whole process tree sampled every
  50 ms; the memory target is judged on the larger of the two;
* **widecube**: `widecube ingest <file> --dataset <name> --groupby cluster --groupby
  cluster,donor` into a fresh, empty storage folder (removed afterwards); with `--steps`, the
  same ingest again through the library (`benchmarks/widecube_steps.py`) with the time of
  each step: the job's `unpack`, `validate`, `compute` (split into pass 1: stream the input,
  spill non-zeros by gene; pass 2: gene slabs through every view; the views' finish),
  `verify`, `publish` (runs recorded before these names say `read`, `compute`, `write`);
* **scanpy** (`benchmarks/scanpy_peer.py`): `anndata.read_h5ad`, then per grouping
  (`cluster`, and `["cluster", "donor"]`) `scanpy.get.aggregate(func=["sum", "mean", "var",
  "count_nonzero"])` and, timed separately, `scanpy.get.aggregate(func="median")`, all in
  one process; issue 2's figure (read + the 4-function calls) and issue 3's (read + both)
  come from the same run; issue 2's second peer (read + the 4-function aggregate by `cluster`
  only, in a process of its own) runs only when asked (`--tools widecube,scanpy,scanpy-cluster`);
* the page cache cannot be dropped without root, so each run is preceded by an untimed full
  read of the input (`cat file > /dev/null`): every tool starts from a warm cache (as far as
  memory allows, for B1M);
* wall times include interpreter start-up and imports for both tools; scanpy's in-process
  time (without start-up) is reported as well, and the ratio against it is the stricter one;
* GB = 10⁹ bytes; every number below was measured in the run it appears in.
"""

_GB = 1e9


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, Python and library versions, load (the commit: ``_record.begin``)."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": _meminfo("MemTotal"),
        "swap_bytes": _meminfo("SwapTotal"),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": {
            name: _version(name)
            for name in ("widecube", "numpy", "scipy", "numba", "h5py", "anndata", "scanpy")
        },
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "memory_available_at_start_bytes": _meminfo("MemAvailable"),
    }


def render_section(result: dict[str, Any]) -> str:
    """One run as Markdown: when, where, the commands, the figures and the verdicts."""
    m, d = result["machine"], result["dataset"]
    pk = m["packages"]
    dirty = " (working tree dirty: uncommitted changes)" if m["git_dirty"] else ""
    note = d["spec"].get("note")
    peers = [t for t in result["tools"].values() if t["display"].startswith("# under the")]
    lines = [
        f"## {result['name']} — {result['started_utc']}",
        "",
        *([f"* dataset: {note}"] if note else []),
        f"* machine: {m['cpu']}, {m['cores']} cores, {_gb(m['memory_bytes'])} RAM, "
        f"{_gb(m['swap_bytes'])} swap; {m['os']}; at start: load average "
        f"{' / '.join(str(x) for x in m['load_average_at_start'])}, "
        f"{_gb(m['memory_available_at_start_bytes'])} available; at end: load average "
        f"{' / '.join(str(x) for x in result['load_average_at_end'])}",
        f"* Python {m['python']}; numpy {pk['numpy']}, scipy {pk['scipy']}, numba "
        f"{pk['numba']}, h5py {pk['h5py']}, anndata {pk['anndata']}, scanpy {pk['scanpy']}",
        f"* widecube commit `{m['git_commit']}`{dirty}",
        f"* input: `{d['path']}`, {d['shape'][0]:,} cells × {d['shape'][1]:,} genes, "
        f"{d['nnz']:,} non-zeros ({d['nnz'] / d['shape'][0]:,.0f} per cell), "
        f"{_gb(d['size'])} on disk{_generated(d)}",
        f"* page cache: {result['page_cache']}; repeats per tool: {result['repeat']} "
        "(wall: median; peak RSS: maximum)",
        *([f"* scanpy ran under the {result['guard']}"] if peers and result.get("guard") else []),
        "",
        "Commands:",
        "",
        "```sh",
        *(tool["display"] for tool in result["tools"].values()),
        "```",
        "",
        "| tool | what | wall | CPU (user + sys) | peak RSS | peak tree RSS (sampled) | status |",
        "|---|---|---:|---:|---:|---:|---|",
        *(_row(name, tool) for name, tool in result["tools"].items()),
        "",
        *_details(result),
        *_steps_table(result),
        *_verdict_tables(result["verdicts"]),
        *_failures(result),
    ]
    return "\n".join(lines) + "\n"


def _row(name: str, tool: dict[str, Any]) -> str:
    s = tool["summary"]
    wall = f"{s['wall_s']:.1f} s" if s["wall_s"] is not None else "—"
    cpu = f"{s['cpu_s']:.1f} s" if s["cpu_s"] is not None else "—"
    status = s["status"]
    if status != "ok":
        status = (
            "failed, as expected (see below)" if tool.get("expected_to_fail") else f"{status} (see below)"
        )
    return (
        f"| {name} | {tool['what']} | {wall} | {cpu} | {_gb(s['peak_rss'])} | "
        f"{_gb(s['peak_tree_rss'])} | {status} |"
    )


def _details(result: dict[str, Any]) -> list[str]:
    """Where the time went inside each tool, as far as each one reports it."""
    out: list[str] = []
    for name, tool in result["tools"].items():
        summary = tool["summary"]
        parts = summary.get("parts")
        figures = summary.get("figures") or {}
        if parts and name.startswith("scanpy"):
            shown = ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())
            out.append(f"* {name}, inside the process: {shown}")
            if "summary_s" in figures:
                out.append(
                    f"* {name}, in-process totals (no start-up or imports): read + aggregate 4 funcs "
                    f"{figures['summary_s']:.1f} s (issue 2's peer)"
                    + (
                        f"; read + aggregate 4 funcs + aggregate median {figures['full_s']:.1f} s "
                        f"(issue 3's peer; the median calls {figures['median_s']:.1f} s)"
                        if "full_s" in figures
                        else ""
                    )
                )
        elif parts and not name.endswith("-steps"):
            shown = ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())
            out.append(f"* {name}, inside the process: {shown}")
        if summary.get("snapshot_bytes"):
            size = summary["snapshot_bytes"] / 1e6
            out.append(f"* {name}: the published version takes {size:,.1f} MB on disk")
        if tool.get("expected_to_fail") or (summary["status"] != "ok" and summary.get("outcome")):
            out.append(f"* {name}: {summary.get('outcome', summary['status'])}")
    return [*out, ""] if out else []


def _steps_table(result: dict[str, Any]) -> list[str]:
    """widecube's ingest step by step (from ``widecube_steps.py``), with what each step covers."""
    out: list[str] = []
    for name, tool in result["tools"].items():
        summary = tool["summary"]
        parts = summary.get("parts")
        if not name.endswith("-steps") or not parts:
            continue
        figures = summary.get("figures") or {}
        wall = summary["wall_s"] or 0.0
        rows: list[tuple[str, str, float]] = []
        if "startup_s" in figures:
            rows.append(
                ("start-up", "interpreter start, before the script's first line", figures["startup_s"])
            )
        for step, seconds in parts.items():
            rows.append((step, STEP_MEANINGS.get(step, ""), seconds))
        out += [
            f"{name}: the ingest step by step (a step runs from the previous step's last progress "
            f"report to its own; wall {wall:.1f} s):",
            "",
            "| step | what it covers | time | share of wall |",
            "|---|---|---:|---:|",
            *(
                f"| {step} | {what} | {sec:.1f} s | {100 * sec / wall:.0f} % |"
                if wall
                else f"| {step} | {what} | {sec:.1f} s | — |"
                for step, what, sec in rows
            ),
            "",
        ]
        views = _views_line(figures)
        if views:
            out += [views, ""]
        rss = _rss_line(tool)
        if rss:
            out += [rss, ""]
    return out


def _rss_line(tool: dict[str, Any]) -> str:
    """Peak RSS per phase (a view hook, else the step) from the first run that sampled it."""
    for run in tool.get("runs", []):
        peaks = (run.get("reported") or {}).get("peak_rss_by_phase")
        if peaks:
            top = sorted(peaks.items(), key=lambda kv: -kv[1])[:8]
            shown = "; ".join(f"{phase} {rss / 1e9:.2f} GB" for phase, rss in top)
            return (
                "Peak RSS by phase (VmRSS sampled every 50 ms inside the process; a view hook while "
                f"one runs, else the step last reported), largest first: {shown}"
            )
    return ""


STEP_MEANINGS = {
    "imports": "importing widecube (numba, zarr, pandas …)",
    "read": "pass 1: open the input, stream it block by block (values checked, library sizes counted), "
    "spill every non-zero to its gene bucket on disk",
    "compute": "pass 2: obs/var written; each gene slab (a bucket counting-sorted into gene-major order) "
    "through every view: summaries raw + normalized per grouping, exact quantiles, gene-major matrix, "
    "markers' inputs, gene stats",
    "write": "the views' finish: markers ranked, accumulated views written",
    "verify": "the verifier re-reads the staged snapshot",
    "publish": "move into place, catalog transaction, work folder removed",
    "close": "between publish's report and the call's return",
    # the job's own step names (every run since the progress bars and jobs share them); the
    # names above are those of runs recorded before, kept so their tables read as they did
    "unpack": "the version recorded; an archive unpacked, a stored input copied in",
    "validate": "the input opened; cell ids, gene names and every grouping checked",
    "compute: pass 1": "part of compute: stream the input block by block (values checked, library "
    "sizes counted), spill every non-zero to its gene bucket on disk",
    "compute: pass 2": "part of compute: obs/var written; each gene slab through every view",
    "compute: views written": "part of compute: the views' finish (markers ranked, views written)",
}
"""What each step of ``widecube_steps.py``'s breakdown covers (its own ``STEPS``, plus imports):
the job's steps (``compute`` also split into its parts), and the names of older runs."""


def _views_line(figures: dict[str, float]) -> str:
    """Seconds inside each view's hooks, one view after another (``genes.consume`` etc.)."""
    per_view: dict[str, dict[str, float]] = {}
    for key, seconds in figures.items():
        if "." in key:
            view, hook = key.split(".", 1)
            per_view.setdefault(view, {})[hook] = seconds
    if not per_view:
        return ""
    shown = "; ".join(
        f"{view} " + ", ".join(f"{hook} {sec:.1f} s" for hook, sec in hooks.items() if sec >= 0.05)
        for view, hooks in per_view.items()
    )
    return (
        "Inside the views' hooks (shared per-slab statistics are computed lazily and charged to the "
        "first view asking for them; `consume` runs in compute, `finish` in write, `verify` in "
        f"verify): {shown}"
    )


_GROUP_TITLES = {
    "issue 3": "Issue 3 targets (full ingest, every view):",
    "issue 2 (secondary)": (
        "Issue 2 comparison (secondary, for continuity: scanpy's read + 4-function aggregate only; "
        "widecube now builds every view, far more work than issue 2's summary-only ingest):"
    ),
    "record": "Recorded (no pass mark):",
}


def _verdict_tables(verdicts: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    groups = list(dict.fromkeys(v.get("group") for v in verdicts))
    for group in groups:
        # runs before issue 3 recorded no groups, and no title: they judged the summary-only ingest
        title = [] if group is None else [_GROUP_TITLES.get(group, f"{group}:"), ""]
        out += [
            *title,
            "| comparison | value | target | verdict |",
            "|---|---:|---:|---|",
            *(
                f"| {v['what']} | {_cell(v['shown'])} | {v['target_shown']} | "
                f"{'—' if group == 'record' else _verdict(v['pass'])} |"
                for v in verdicts
                if v.get("group") == group
            ),
            "",
        ]
    return out


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _failures(result: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for name, tool in result["tools"].items():
        for i, run in enumerate(tool["runs"]):
            if run["status"] != "ok":
                expected = " — expected" if tool.get("expected_to_fail") else ""
                out += [
                    f"{name} run {i + 1} failed{expected} ({run['status']}); end of its stderr:",
                    "",
                    "```",
                    run["stderr_tail"].rstrip()[-2000:],
                    "```",
                    "",
                ]
    return out


def _generated(d: dict[str, Any]) -> str:
    gen = d.get("generated")
    if not gen:
        return " (cached from an earlier run)"
    return f" (generated in this run: {gen['wall_s']:.0f} s, peak RSS {_gb(gen['peak_rss'])})"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**PASS**" if ok else "**FAIL**")


def _gb(n: int | float | None) -> str:
    return "—" if n is None else f"{n / _GB:.2f} GB"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _meminfo(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"
