"""Describe the machine, and render one benchmark run as a section of ``RESULTS.md``.

``RESULTS.md`` is a fixed header (what the benchmark is, its targets) followed by one
section per recorded run, newest first; :func:`update_results` inserts a new section under
the header and keeps every earlier one as it was.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = ["HEADER", "MARKER", "machine_info", "render_section", "update_results"]

MARKER = "<!-- runs below, newest first; benchmarks/run.py inserts new ones here -->"

HEADER = f"""# widecube benchmark results

**Target** (the issue's acceptance criterion): on **B100k** — 100,000 cells × 30,000 genes,
about 5,000 non-zeros per cell, 100 clusters, 8 donors, made by `widecube demo-data` —
widecube's ingest (summary views for both groupings, snapshot, verify, publish) takes
**≤ 0.5 × scanpy's wall time (read + aggregate)** with **peak RSS ≤ 2.5 GB**.

How it is measured (`benchmarks/run.py`; `make bench`):

* every tool runs in a fresh process, one at a time, its wall time measured from outside;
  peak RSS is the kernel's high-water mark (`/usr/bin/time -v`, "Maximum resident set size")
  and, as a cross-check, the largest sum of RSS over the whole process tree sampled every
  50 ms; the memory target is judged on the larger of the two;
* **widecube**: `widecube ingest <file> --dataset b100k --groupby cluster --groupby
  cluster,donor` into a fresh, empty storage folder (removed afterwards);
* **scanpy**: `anndata.read_h5ad` then `scanpy.get.aggregate(func=["sum", "mean", "var",
  "count_nonzero"])` by `cluster` and by `["cluster", "donor"]` (the same two groupings);
  and, in a separate process, read + aggregate by `cluster` only;
* the page cache cannot be dropped without root, so each run is preceded by an untimed full
  read of the input (`cat file > /dev/null`): every tool starts from a warm cache;
* wall times include interpreter start-up and imports for both tools; scanpy's in-process
  read + aggregate time (without start-up) is reported as well, and the ratio against it is
  the stricter one;
* GB = 10⁹ bytes; every number below was measured in the run it appears in.

{MARKER}
"""

_GB = 1e9


def machine_info(repo: Path) -> dict[str, Any]:
    """CPU, cores, memory, Python and library versions, and widecube's git commit."""
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
        "git_commit": _git(repo, "rev-parse", "--short", "HEAD"),
        "git_dirty": _git(repo, "status", "--porcelain") not in ("", "unknown"),
    }


def render_section(result: dict[str, Any]) -> str:
    """One run as Markdown: when, where, the commands, the figures and the verdicts."""
    m, d = result["machine"], result["dataset"]
    pk = m["packages"]
    dirty = " (working tree dirty: uncommitted changes)" if m["git_dirty"] else ""
    lines = [
        f"## {result['name']} — {result['started_utc']}",
        "",
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
        "| comparison | value | target | verdict |",
        "|---|---:|---:|---|",
        *(
            f"| {v['what']} | {v['shown']} | {v['target_shown']} | {_verdict(v['pass'])} |"
            for v in result["verdicts"]
        ),
        "",
        *_failures(result),
    ]
    return "\n".join(lines) + "\n"


def update_results(path: Path, section: str) -> None:
    """Insert ``section`` as the newest run in ``path``, creating the file with its header."""
    text = path.read_text() if path.exists() else HEADER
    if MARKER not in text:
        text = HEADER + "\n" + text
    head, tail = text.split(MARKER, 1)
    older = tail.strip("\n")
    path.write_text(f"{head}{MARKER}\n\n{section}" + (f"\n{older}\n" if older else ""))


def _row(name: str, tool: dict[str, Any]) -> str:
    s = tool["summary"]
    wall = f"{s['wall_s']:.1f} s" if s["wall_s"] is not None else "—"
    cpu = f"{s['cpu_s']:.1f} s" if s["cpu_s"] is not None else "—"
    return (
        f"| {name} | {tool['what']} | {wall} | {cpu} | {_gb(s['peak_rss'])} | "
        f"{_gb(s['peak_tree_rss'])} | {s['status']} |"
    )


def _details(result: dict[str, Any]) -> list[str]:
    """Where the time went inside each tool, as far as each one reports it."""
    out: list[str] = []
    for name, tool in result["tools"].items():
        summary = tool["summary"]
        if summary.get("parts"):
            shown = ", ".join(f"{k} {v:.1f} s" for k, v in summary["parts"].items())
            out.append(f"* {name}, inside the process: {shown}")
        if summary.get("snapshot_bytes"):
            size = summary["snapshot_bytes"] / 1e6
            out.append(f"* {name}: the published version takes {size:,.1f} MB on disk")
    return [*out, ""] if out else []


def _failures(result: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for name, tool in result["tools"].items():
        for i, run in enumerate(tool["runs"]):
            if run["status"] != "ok":
                out += [
                    f"{name} run {i + 1} failed ({run['status']}); end of its stderr:",
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


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"
