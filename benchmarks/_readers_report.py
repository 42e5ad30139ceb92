"""Render one reader-benchmark run (``benchmarks/readers.py``) as a section of ``RESULTS.md``."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

__all__ = ["render_section"]

_REPO = Path(__file__).resolve().parent.parent


def render_section(result: dict[str, Any]) -> str:
    """When, where, the commands, every figure and each target's verdict."""
    m = result["machine"]
    pk = m["packages"]
    dirty = " (working tree dirty: uncommitted changes)" if m["git_dirty"] else ""
    lines = [
        f"## {result['name']} — {result['started_utc']}",
        "",
        f"* machine: {m['cpu']}, {m['cores']} cores, {_gb(m['memory_bytes'])} RAM; {m['os']}; at start: "
        f"load average {' / '.join(map(str, m['load_average_at_start']))}, "
        f"{_gb(m['memory_available_at_start_bytes'])} available; at end: load average "
        f"{' / '.join(map(str, result['load_average_at_end']))}",
        f"* Python {m['python']}; numpy {pk['numpy']}, h5py {pk['h5py']}, anndata {pk['anndata']}; "
        f"widecube commit `{m['git_commit']}`{dirty}",
        "* every tool in a fresh process, one at a time, after an untimed read of its input (warm page "
        "cache); *read* is the time inside the process (open + full block stream + finite check for "
        "widecube, `read_csv` for pandas), *wall* includes start-up and imports; peak RSS from "
        "`/usr/bin/time -v` (larger of it and the sampled process-tree RSS); medians over repeats",
        "",
    ]
    for name, bench in result["benchmarks"].items():
        lines += _bench(name, bench)
    return "\n".join(lines) + "\n"


def _bench(name: str, bench: dict[str, Any]) -> list[str]:
    inp = bench["input"]
    if bench.get("kind") == "peers":
        return _peers(bench)
    if "files" in inp:
        sizes = ", ".join(f"{k} {_gb(v['size'])}" for k, v in inp["files"].items())
        head = f"### 10x h5 and MTX vs h5ad — {inp['shape'][0]:,} × {inp['shape'][1]:,} ({sizes})"
    else:
        head = (
            f"### Wide CSV — `{inp['path']}`, {inp['shape'][0]:,} cells × {inp['shape'][1]:,} genes, "
            f"{_gb(inp['size'])}"
        )
    out = [head, "", "```sh"]
    out += [" ".join(shlex.quote(_rel(a)) for a in tool["command"]) for tool in bench["tools"].values()]
    out += [
        "```",
        "",
        "| tool | what | read | wall | CPU | peak RSS | status |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for key, tool in bench["tools"].items():
        s = tool["summary"]
        status = s["status"]
        if s.get("killed_by") and s["killed_by"] not in status:
            status += f" ({s['killed_by']})"
        out.append(
            f"| {key} | {tool['what']} | {_s(s['read_s'])} | {_s(s['wall_s'])} | {_s(s['cpu_s'])} | "
            f"{_gb(s['peak_rss'])} | {status} |"
        )
    out += ["", "| comparison | value | target | verdict |", "|---|---:|---:|---|"]
    for v in bench["verdicts"]:
        value = "—" if v["value"] is None else f"{v['value']:.2f}"
        verdict = "n/a" if v["pass"] is None else ("**PASS**" if v["pass"] else "**FAIL**")
        out.append(f"| {v['what']} | {value} | {v['target']} | {verdict} |")
    return [*out, ""]


def _peers(bench: dict[str, Any]) -> list[str]:
    """10x h5 and MTX against their peers: per tool its rounds, then the paired ratios."""
    inp = bench["input"]
    sizes = ", ".join(f"{k} {_gb(v['size'])}" for k, v in inp["files"].items())
    out = [
        f"### 10x h5 and MTX against their peers — {inp['shape'][0]:,} × {inp['shape'][1]:,}, "
        f"as Cell Ranger writes it ({sizes})",
        "",
        "Each side does the whole read of the same file: widecube opens the input, reads barcodes and "
        "features, parses and checks every entry and streams the matrix as cells × genes CSR blocks "
        "through the pipeline's finite check (what ingest's pass 1 asks of a reader; MTX goes through "
        "the binary spill); scanpy builds an AnnData holding the whole CSR; fast_matrix_market parses "
        "the matrix file into triplets in memory on two threads (the least work; its time to a scipy "
        "CSR is listed apart). *read* is the time inside the process after imports; ratios are the "
        "peer's read time over widecube's in the same round (adjacent runs), median over rounds, with "
        "the least favourable and the best round.",
        "",
        "```sh",
    ]
    out += [" ".join(shlex.quote(_rel(a)) for a in tool["command"]) for tool in bench["tools"].values()]
    out += [
        "```",
        "",
        "| input and tool | what | read (median) | rounds | wall | CPU | peak RSS | status |",
        "|---|---|---:|---|---:|---:|---:|---|",
    ]
    for key, tool in bench["tools"].items():
        s = tool["summary"]
        reads = [r["probe"]["read_s"] for r in tool["runs"] if r["status"] == "ok" and r.get("probe")]
        rounds = f"{min(reads):.2f}–{max(reads):.2f} s ({len(reads)})" if reads else "—"
        extra = ""
        if s.get("probe") and "csr_s" in s["probe"]:
            csr = sorted(r["probe"]["csr_s"] for r in tool["runs"] if r["status"] == "ok" and r.get("probe"))
            extra = f"; to CSR {csr[len(csr) // 2]:.2f} s"
        status = s["status"] + (f" ({s['killed_by']})" if s.get("killed_by") else "")
        out.append(
            f"| {key} | {tool['what']} | {_s(s['read_s'])}{extra} | {rounds} | {_s(s['wall_s'])} | "
            f"{_s(s['cpu_s'])} | {_gb(s['peak_rss'])} | {status} |"
        )
    out += [
        "",
        "| comparison | median | least favourable round | best round | target | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for v in bench["verdicts"]:
        value = "—" if v["value"] is None else f"{v['value']:.2f}"
        low, high = (f"{x:.2f}" for x in v["rounds"]) if v.get("rounds") else ("—", "—")
        verdict = "n/a" if v["pass"] is None else ("**PASS**" if v["pass"] else "**FAIL**")
        out.append(f"| {v['what']} | {value} | {low} | {high} | {v['target']} | {verdict} |")
    return [*out, ""]


def _rel(arg: str) -> str:
    """A path in the checkout as the repository sees it (``benchmarks/data/x``, ``.venv/bin/python``),
    whichever folder the run was made in, so the section does not depend on where it is rendered."""
    try:
        return str(Path(arg).relative_to(_REPO))
    except ValueError:
        pass
    for marker in ("/.venv/", "/benchmarks/"):
        if arg.startswith("/") and marker in arg:
            return arg[arg.index(marker) + 1 :]
    return arg


def _s(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f} s"


def _gb(n: float | None) -> str:
    return "—" if n is None else f"{n / 1e9:.2f} GB"
