"""Benchmark widecube's ingest against scanpy's read + aggregate (``make bench``).

For each dataset (default: B100k, generated once into ``benchmarks/data/``) it runs, one
after the other and each in a fresh process, widecube's ingest and the scanpy peer, measures
wall time and peak RSS from outside, and judges the issue's targets: widecube's wall time
≤ 0.5 × scanpy's, peak RSS ≤ 2.5 GB. A full run appends a section to
``benchmarks/RESULTS.md`` and writes its raw figures to ``benchmarks/results/``.

Usage::

    .venv/bin/python benchmarks/run.py              # B100k, recorded
    .venv/bin/python benchmarks/run.py --quick      # 5,000 × 2,000 smoke run, not recorded
    .venv/bin/python benchmarks/run.py --only b100k --repeat 3 --steps
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _datasets import DATASETS, DatasetInfo, ensure_dataset
from _measure import measure, warm_page_cache
from _report import machine_info, render_section, update_results

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
TIME_TARGET = 0.5
"""widecube's wall time may be at most this fraction of scanpy's."""
RSS_TARGET = 2.5e9
"""widecube's peak RSS may be at most this many bytes (2.5 GB)."""


@dataclass(frozen=True)
class Tool:
    """One measured command: how to build it for a dataset, and what it reports about itself."""

    what: str
    command: Callable[[DatasetInfo], list[str]]
    parts: Callable[[dict[str, Any]], dict[str, float]] | None = None
    """Per-step seconds from the JSON the tool prints; None for tools that print none."""
    storage: bool = False
    """True for widecube: run with ``WIDECUBE_STORAGE`` set to a fresh, empty folder."""


def _ingest_cli(info: DatasetInfo) -> list[str]:
    groupbys = [a for g in info.spec.groupbys for a in ("--groupby", g)]
    widecube = str(Path(sys.executable).with_name("widecube"))
    return [widecube, "ingest", str(info.path), "--dataset", info.spec.name, *groupbys]


def _ingest_steps(info: DatasetInfo) -> list[str]:
    groupbys = [a for g in info.spec.groupbys for a in ("--groupby", g)]
    script = str(HERE / "widecube_steps.py")
    return [sys.executable, script, str(info.path), "--dataset", info.spec.name, *groupbys]


def _scanpy(groupbys: tuple[str, ...]) -> Callable[[DatasetInfo], list[str]]:
    def command(info: DatasetInfo) -> list[str]:
        by = [a for g in groupbys or info.spec.groupbys for a in ("--by", g)]
        return [sys.executable, str(HERE / "scanpy_peer.py"), str(info.path), *by]

    return command


def _scanpy_parts(out: dict[str, Any]) -> dict[str, float]:
    parts = {"imports": out["import_s"], "read": out["read_s"]}
    parts.update({f"aggregate by {'+'.join(a['by'])}": a["seconds"] for a in out["aggregates"]})
    return parts


def _steps_parts(out: dict[str, Any]) -> dict[str, float]:
    return {"imports": out["import_s"], **out["steps"]}


TOOLS: dict[str, Tool] = {
    "widecube": Tool("`widecube ingest`, both groupings", _ingest_cli, storage=True),
    "widecube-steps": Tool(
        "the same ingest via the library, timed per step (`--steps`)",
        _ingest_steps,
        _steps_parts,
        storage=True,
    ),
    "scanpy": Tool("read + aggregate by both groupings", _scanpy(()), _scanpy_parts),
    "scanpy-cluster": Tool("read + aggregate by `cluster` only", _scanpy(("cluster",)), _scanpy_parts),
}
"""Every measured command by name, in the order they run."""


def run_tool(name: str, info: DatasetInfo, timeout: float | None) -> dict[str, Any]:
    """Warm the page cache, then run tool ``name`` once on ``info``; return its raw figures."""
    tool = TOOLS[name]
    env = dict(os.environ)
    storage = OUT / f"storage-{uuid.uuid4().hex[:12]}"
    if tool.storage:
        env["WIDECUBE_STORAGE"] = str(storage)
    warm = warm_page_cache(info.path)
    try:
        m = measure(tool.command(info), env=env, cwd=REPO, timeout=timeout)
        snapshot = _folder_size(storage / "datasets") if tool.storage else None
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    run = {**m.to_json(), "warmup_read_s": warm, "snapshot_bytes": snapshot, "parts": None}
    if m.ok and tool.parts is not None:
        run["parts"] = tool.parts(json.loads(m.stdout.strip().splitlines()[-1]))
    print(
        f"  {name}: {m.status}, {m.wall_s:.1f} s, peak RSS {m.peak_rss / 1e9:.2f} GB "
        f"(tree {m.peak_tree_rss / 1e9:.2f} GB)",
        flush=True,
    )
    return run


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median wall time and maximum peak RSS over the successful runs of one tool."""
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return {
            "status": runs[-1]["status"],
            "wall_s": None,
            "cpu_s": None,
            "peak_rss": _max(runs, "peak_rss"),
            "peak_tree_rss": _max(runs, "peak_tree_rss"),
            "parts": None,
        }
    parts = None
    if ok[0]["parts"]:
        parts = {k: statistics.median(r["parts"][k] for r in ok) for k in ok[0]["parts"]}
    status = "ok" if len(ok) == len(runs) else f"{len(runs) - len(ok)} of {len(runs)} failed"
    return {
        "status": status,
        "wall_s": statistics.median(r["wall_s"] for r in ok),
        "cpu_s": statistics.median(r["cpu_s"] for r in ok),
        "snapshot_bytes": ok[-1]["snapshot_bytes"],
        "peak_rss": _max(ok, "peak_rss"),
        "peak_tree_rss": _max(ok, "peak_tree_rss"),
        "parts": parts,
    }


def verdicts(tools: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets, each judged from this run's figures (``pass`` None when one is missing)."""
    wc = tools.get("widecube", {}).get("summary", {})
    out: list[dict[str, Any]] = []
    for peer, label in (("scanpy", "both groupings"), ("scanpy-cluster", "`cluster` only")):
        if peer not in tools:
            continue
        ps = tools[peer]["summary"]
        inside = sum(v for k, v in (ps["parts"] or {}).items() if k != "imports")
        for denominator, how in (
            (ps["wall_s"], "process wall"),
            (inside or None, "read + aggregate only, no start-up or imports"),
        ):
            ratio = _ratio(wc.get("wall_s"), denominator)
            out.append(
                {
                    "what": f"widecube wall / scanpy {label} ({how})",
                    "value": ratio,
                    "shown": "—" if ratio is None else f"{ratio:.3f}",
                    "target": TIME_TARGET,
                    "target_shown": f"≤ {TIME_TARGET}",
                    "pass": None if ratio is None else ratio <= TIME_TARGET,
                }
            )
    if "widecube" in tools and wc.get("wall_s") is not None:
        peak = max(wc["peak_rss"], wc["peak_tree_rss"])
        out.append(
            {
                "what": "widecube peak RSS (larger of the two figures)",
                "value": peak,
                "shown": f"{peak / 1e9:.2f} GB",
                "target": RSS_TARGET,
                "target_shown": f"≤ {RSS_TARGET / 1e9} GB",
                "pass": peak <= RSS_TARGET,
            }
        )
    return out


def bench(name: str, tools: list[str], repeat: int, timeout: float | None) -> dict[str, Any]:
    """Build dataset ``name`` if needed, run every tool ``repeat`` times, return the result."""
    started = datetime.now(UTC)
    machine = machine_info(REPO)
    print(f"[{name}] preparing {HERE.name}/data/{name}.h5ad", flush=True)
    info = ensure_dataset(DATASETS[name], HERE / "data", timeout=timeout)
    print(
        f"[{name}] {info.shape[0]:,} × {info.shape[1]:,}, {info.nnz:,} non-zeros, {info.size / 1e9:.2f} GB",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
    for i in range(repeat):
        print(f"[{name}] round {i + 1} of {repeat}", flush=True)
        for t in tools:
            runs[t].append(run_tool(t, info, timeout))
    results = {
        t: {
            "what": TOOLS[t].what,
            "command": runs[t][0]["command"],
            "display": _display(t, runs[t][0]["command"]),
            "runs": runs[t],
            "summary": summarize(runs[t]),
        }
        for t in tools
    }
    return {
        "name": name,
        "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "finished_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "dataset": {**info.to_json(), "path": str(info.path.relative_to(REPO))},
        "page_cache": "warm — each run preceded by an untimed full read of the input",
        "repeat": repeat,
        "tools": results,
        "verdicts": verdicts(results),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "stamp": started.strftime("%Y%m%dT%H%M%SZ"),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the benchmarks, record and print the results."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="smoke run on the small 'quick' dataset; not recorded"
    )
    p.add_argument(
        "--only",
        action="append",
        choices=sorted(DATASETS),
        help="dataset(s) to run; default: b100k",
    )
    p.add_argument(
        "--tools",
        default=",".join(t for t in TOOLS if t != "widecube-steps"),
        help=f"comma-separated subset of: {', '.join(TOOLS)}",
    )
    p.add_argument(
        "--steps",
        action="store_true",
        help="also run widecube-steps (a second ingest, timed per step)",
    )
    p.add_argument("--repeat", type=int, default=1, help="runs of each tool (default 1)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per process")
    p.add_argument(
        "--record",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="update RESULTS.md and results/ (default: yes unless --quick)",
    )
    p.add_argument("--check", action="store_true", help="exit 1 when a target fails")
    args = p.parse_args(argv)
    tools = [t for t in args.tools.split(",") if t]
    if args.steps and "widecube-steps" not in tools:
        tools.insert(tools.index("widecube") + 1 if "widecube" in tools else 0, "widecube-steps")
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown or args.repeat < 1:
        p.error(f"unknown tools {unknown}" if unknown else "--repeat must be at least 1")
    tools = [t for t in TOOLS if t in tools]
    names = ["quick"] if args.quick else (args.only or ["b100k"])
    record = (not args.quick) if args.record is None else args.record
    failed = False
    for name in names:
        result = bench(name, tools, args.repeat, args.timeout)
        section = render_section(result)
        folder = HERE / "results" if record else OUT / "results"
        folder.mkdir(parents=True, exist_ok=True)
        raw = folder / f"{result['stamp']}-{name}.json"
        raw.write_text(json.dumps(result, indent=1, default=str) + "\n")
        if record:
            update_results(HERE / "RESULTS.md", section)
        print(
            f"\n{section}\nraw figures: {raw.relative_to(REPO)}"
            + ("; section added to benchmarks/RESULTS.md" if record else ""),
            flush=True,
        )
        failed |= any(t["summary"]["status"] != "ok" for t in result["tools"].values())
        failed |= args.check and any(v["pass"] is False for v in result["verdicts"])
    return 1 if failed else 0


def _display(name: str, command: list[str]) -> str:
    """The command as a shell line, with paths relative to the repository root."""
    root = str(REPO) + "/"
    shown = [a.removeprefix(root) for a in command]
    env = "WIDECUBE_STORAGE=benchmarks/out/storage-<fresh> " if TOOLS[name].storage else ""
    return f"{env}{shlex.join(shown)}"


def _folder_size(folder: Path) -> int | None:
    if not folder.exists():
        return None
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _max(runs: list[dict[str, Any]], key: str) -> int | None:
    values = [r[key] for r in runs if r.get(key)]
    return max(values) if values else None


if __name__ == "__main__":
    sys.exit(main())
