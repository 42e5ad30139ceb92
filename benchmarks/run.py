"""Benchmark widecube's ingest against scanpy's read + aggregate (``make bench``).

For each dataset (default: B100k, generated once into ``benchmarks/data/``) it runs, one
after the other and each in a fresh process, widecube's full ingest (every view) and the
scanpy peer, measures wall time and peak RSS from outside, and judges the targets:

* **B100k** — issue 3: widecube's wall ≤ 0.5 × scanpy's read + ``aggregate`` (sum, mean,
  var, count_nonzero) + ``aggregate`` (median), both groupings, with peak RSS ≤ 2.5 GB;
  issue 2's ratio (scanpy read + the 4-function aggregate only) follows as a secondary line;
* **B1M** (``--only b1m``) — issue 3: the full ingest finishes with peak RSS ≤ 3 GB, its time
  and per-step times recorded; scanpy is tried under a memory guard (it is expected not to
  fit in this machine's memory) and what happened is recorded.

A full run is recorded as one JSON file in ``benchmarks/results/`` (``_record.py``: refused
from a dirty tree unless ``--force``), then ``RESULTS.md`` and the README's numbers are
regenerated from every recorded run (``report.py``).

Usage::

    .venv/bin/python benchmarks/run.py                       # B100k, recorded
    .venv/bin/python benchmarks/run.py --quick               # 5,000 × 2,000 smoke run, not recorded
    .venv/bin/python benchmarks/run.py --only b100k --repeat 3 --steps
    .venv/bin/python benchmarks/run.py --only b1m --steps --timeout 7200
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

from _datasets import DATASETS, DatasetInfo, DatasetSpec, NotEnoughDisk, check_free_disk, ensure_dataset
from _measure import measure, warm_page_cache
from _record import DirtyTree, begin, regenerate, save
from _report import render_section

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
PYTHON = os.path.abspath(sys.executable)  # normalized, not resolved: the venv's python is a link
PEER_MEMORY_LIMIT = 20 * 10**9
"""Default memory guard of the scanpy runs: killed past this RSS (and, where the dataset is
expected not to fit, refused allocations past this address space)."""
MEMORY_FLOOR = int(1.5 * 10**9)
"""Default floor of the machine's available memory below which a scanpy run is killed."""
INGEST_DISK_PER_NNZ = 18
"""Free disk a widecube ingest needs per stored non-zero, in bytes: the spill holds 12 bytes
per value (gene, cell, value) while the snapshot (the gene-major copy among it) is written."""
AGG4 = "aggregate sum, mean, var, count_nonzero by "
"""Prefix of the scanpy parts that time the 4-function aggregate (issue 2's peer)."""
MEDIAN = "aggregate median by "
"""Prefix of the scanpy parts that time the median aggregate (added by issue 3)."""


@dataclass(frozen=True)
class Tool:
    """One measured command: how to build it for a dataset, and what it reports about itself."""

    what: str
    command: Callable[[DatasetInfo], list[str]]
    parts: Callable[[dict[str, Any]], dict[str, float]] | None = None
    """Per-step seconds from the JSON the tool prints; None for tools that print none."""
    figures: Callable[[dict[str, Any]], dict[str, float]] | None = None
    """Further figures from that JSON (medians over the runs are kept in the summary)."""
    storage: bool = False
    """True for widecube: run with ``WIDECUBE_STORAGE`` set to a fresh, empty folder."""
    peer: bool = False
    """True for scanpy: run under the memory guard."""


def _ingest_cli(info: DatasetInfo) -> list[str]:
    groupbys = [a for g in info.spec.groupbys for a in ("--groupby", g)]
    widecube = str(Path(PYTHON).with_name("widecube"))
    return [widecube, "ingest", str(info.path), "--dataset", info.spec.name, *groupbys, "--timings"]


def _ingest_steps(info: DatasetInfo) -> list[str]:
    groupbys = [a for g in info.spec.groupbys for a in ("--groupby", g)]
    script = str(HERE / "widecube_steps.py")
    return [PYTHON, script, str(info.path), "--dataset", info.spec.name, *groupbys]


def _scanpy(groupbys: tuple[str, ...], median: bool = True) -> Callable[[DatasetInfo], list[str]]:
    def command(info: DatasetInfo) -> list[str]:
        by = [a for g in groupbys or info.spec.groupbys for a in ("--by", g)]
        extra = [] if median else ["--no-median"]
        return [PYTHON, str(HERE / "scanpy_peer.py"), str(info.path), *by, *extra]

    return command


def _scanpy_parts(out: dict[str, Any]) -> dict[str, float]:
    parts = {"imports": out["import_s"], "read": out["read_s"]}
    for agg4 in out["aggregates"]:
        by = "+".join(agg4["by"])
        parts[AGG4 + by] = agg4["seconds"]
        for med in out.get("medians", []):
            if med["by"] == agg4["by"]:
                parts[MEDIAN + by] = med["seconds"]
    return parts


def _scanpy_figures(out: dict[str, Any]) -> dict[str, float]:
    figures = {"summary_s": out["summary_s"]}
    if out.get("medians"):
        figures["full_s"] = out["full_s"]
        figures["median_s"] = sum(m["seconds"] for m in out["medians"])
    return figures


def _steps_parts(out: dict[str, Any]) -> dict[str, float]:
    """Imports, then each step, the compute step followed by its parts (``compute: pass 1``…)."""
    parts = {"imports": out["import_s"]}
    for step, seconds in out["steps"].items():
        parts[step] = seconds
        if step == "compute":
            parts.update({f"compute: {p}": s for p, s in out.get("compute_parts", {}).items()})
    return parts


def _steps_figures(out: dict[str, Any]) -> dict[str, float]:
    return {
        f"{view}.{hook}": seconds
        for view, hooks in out.get("views", {}).items()
        for hook, seconds in hooks.items()
    }


TOOLS: dict[str, Tool] = {
    "widecube": Tool(
        "`widecube ingest --timings`, both groupings, every view",
        _ingest_cli,
        lambda out: dict(out["steps"]),
        storage=True,
    ),
    "widecube-steps": Tool(
        "the same ingest via the library, timed per step (`--steps`)",
        _ingest_steps,
        _steps_parts,
        _steps_figures,
        storage=True,
    ),
    "scanpy": Tool(
        "read + aggregate(sum, mean, var, count_nonzero) + aggregate(median), both groupings",
        _scanpy(()),
        _scanpy_parts,
        _scanpy_figures,
        peer=True,
    ),
    "scanpy-cluster": Tool(
        "read + aggregate(sum, mean, var, count_nonzero) by `cluster` only (issue 2's second peer)",
        _scanpy(("cluster",), median=False),
        _scanpy_parts,
        _scanpy_figures,
        peer=True,
    ),
}
"""Every measured command by name, in the order they run."""
DEFAULT_TOOLS = ("widecube", "scanpy")
"""What a run measures unless ``--tools`` says otherwise (``--steps`` adds widecube-steps)."""


@dataclass(frozen=True)
class Guard:
    """The memory guard of the scanpy runs (see :func:`_measure.measure`)."""

    memory_limit: int
    memory_floor: int

    def limits(self, spec: DatasetSpec) -> dict[str, int]:
        """``measure``'s keyword arguments for a peer run on ``spec``."""
        out = {"rss_limit": self.memory_limit, "min_available": self.memory_floor}
        if spec.peer_expected_to_fail:
            out["address_space"] = self.memory_limit
        return out

    def describe(self, spec: DatasetSpec) -> str:
        cap = (
            f"RLIMIT_AS {self.memory_limit / 1e9:.1f} GB (allocations past it raise MemoryError), "
            if spec.peer_expected_to_fail
            else ""
        )
        return (
            f"memory guard: {cap}killed if its RSS passes {self.memory_limit / 1e9:.1f} GB "
            f"or the machine's available memory falls below {self.memory_floor / 1e9:.1f} GB"
        )


def run_tool(name: str, info: DatasetInfo, timeout: float | None, guard: Guard) -> dict[str, Any]:
    """Warm the page cache, then run tool ``name`` once on ``info``; return its raw figures."""
    tool = TOOLS[name]
    env = dict(os.environ)
    storage = OUT / f"storage-{uuid.uuid4().hex[:12]}"
    if tool.storage:
        OUT.mkdir(parents=True, exist_ok=True)
        check_free_disk(OUT, info.nnz * INGEST_DISK_PER_NNZ, f"run {name} on {info.spec.name}")
        env["WIDECUBE_STORAGE"] = str(storage)
    limits = guard.limits(info.spec) if tool.peer else {}
    warm = warm_page_cache(info.path)
    try:
        m = measure(tool.command(info), env=env, cwd=REPO, timeout=timeout, **limits)
        snapshot = _folder_size(storage / "datasets") if tool.storage else None
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    reported = _last_json(m.stdout)
    run = {
        **m.to_json(),
        "warmup_read_s": warm,
        "snapshot_bytes": snapshot,
        "reported": reported,
        "parts": None,
        "figures": None,
    }
    if m.ok and reported is not None:
        run["parts"] = tool.parts(reported) if tool.parts else None
        run["figures"] = tool.figures(reported) if tool.figures else None
        if "total_s" in reported:
            run["figures"] = {**(run["figures"] or {}), "startup_s": m.wall_s - reported["total_s"]}
    print(
        f"  {name}: {m.status}, {m.wall_s:.1f} s, peak RSS {m.peak_rss / 1e9:.2f} GB "
        f"(tree {m.peak_tree_rss / 1e9:.2f} GB)",
        flush=True,
    )
    return run


def outcome(run: dict[str, Any]) -> str:
    """What happened to one run, in a sentence (for a run that may fail, such as scanpy on B1M)."""
    peak = max(run.get("peak_rss") or 0, run.get("peak_tree_rss") or 0) / 1e9
    error = (run.get("reported") or {}).get("error")
    if run["status"] == "ok":
        return f"completed in {run['wall_s']:.0f} s at peak RSS {peak:.2f} GB"
    if error:
        return (
            f"failed in step '{error['stage']}' after {error['after_s']:.1f} s "
            f"({error['since_start_s']:.0f} s from start, peak RSS {peak:.2f} GB): "
            f"{error['type']}: {_one_line(error['message'], 300)}"
        )
    if run.get("killed_by"):
        return f"{run['killed_by']}, after {run['wall_s']:.0f} s (peak RSS {peak:.2f} GB){_last_step(run)}"
    last = _one_line(run.get("stderr_tail", "").strip().splitlines()[-1:] or [""], 300)
    return f"{run['status']} after {run['wall_s']:.0f} s (peak RSS {peak:.2f} GB): {last}"


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median wall time and figures, maximum peak RSS, over the successful runs of one tool."""
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return {
            "status": runs[-1]["status"],
            "wall_s": None,
            "cpu_s": None,
            "peak_rss": _max(runs, "peak_rss"),
            "peak_tree_rss": _max(runs, "peak_tree_rss"),
            "parts": None,
            "figures": None,
            "outcome": outcome(runs[-1]),
        }
    status = "ok" if len(ok) == len(runs) else f"{len(runs) - len(ok)} of {len(runs)} failed"
    return {
        "status": status,
        "wall_s": statistics.median(r["wall_s"] for r in ok),
        "cpu_s": statistics.median(r["cpu_s"] for r in ok),
        "snapshot_bytes": ok[-1]["snapshot_bytes"],
        "peak_rss": _max(ok, "peak_rss"),
        "peak_tree_rss": _max(ok, "peak_tree_rss"),
        "parts": _medians(ok, "parts"),
        "figures": _medians(ok, "figures"),
        "outcome": outcome(ok[-1]) if status == "ok" else outcome(next(r for r in runs if r not in ok)),
    }


def verdicts(tools: dict[str, dict[str, Any]], spec: DatasetSpec) -> list[dict[str, Any]]:
    """The targets, each judged from this run's figures (``pass`` None when one is missing).

    Each verdict names its ``group``: ``issue 3`` (the current targets), ``issue 2
    (secondary)`` (the old comparison, for continuity) or ``record`` (figures asked for
    without a pass mark).
    """
    wc = tools.get("widecube", {}).get("summary", {})
    out: list[dict[str, Any]] = []
    if spec.time_ratio_target is not None:
        out += _time_verdicts(wc, tools, spec.time_ratio_target)
    if "widecube" in tools:
        if wc.get("wall_s") is None:
            out.append(_verdict("issue 3", "widecube full ingest finishes", None, wc["status"], "ok", False))
        else:
            peak = max(wc["peak_rss"] or 0, wc["peak_tree_rss"] or 0)
            out.append(
                _verdict(
                    "issue 3",
                    "widecube peak RSS, full ingest (larger of the two figures)",
                    peak,
                    f"{peak / 1e9:.2f} GB",
                    f"≤ {spec.rss_target / 1e9} GB",
                    peak <= spec.rss_target,
                )
            )
            if spec.wall_target is not None:
                out.append(
                    _verdict(
                        "issue 14",
                        "widecube full ingest (every view, both groupings), wall time",
                        wc["wall_s"],
                        f"{wc['wall_s']:.0f} s ({wc['wall_s'] / 60:.1f} min)",
                        f"≤ {spec.wall_target:.0f} s",
                        wc["wall_s"] <= spec.wall_target,
                    )
                )
            elif spec.time_ratio_target is None:
                out.append(
                    _verdict(
                        "record",
                        "widecube full ingest, wall time",
                        wc["wall_s"],
                        f"{wc['wall_s']:.0f} s ({wc['wall_s'] / 60:.1f} min)",
                        "recorded",
                        None,
                    )
                )
    if spec.peer_expected_to_fail:
        for peer in ("scanpy", "scanpy-cluster"):
            if peer in tools:
                ps = tools[peer]["summary"]
                out.append(
                    _verdict("record", f"{peer} on {spec.name}", None, ps["outcome"], "recorded", None)
                )
        if spec.time_ratio_target is None and tools.get("scanpy", {}).get("summary", {}).get("wall_s"):
            # scanpy fitted after all: its ratio is worth recording, though nothing is judged on it
            out += [
                {**v, "group": "record", "pass": None, "target_shown": "recorded"}
                for v in _time_verdicts(wc, tools, 0.5)
            ]
    return out


def _time_verdicts(
    wc: dict[str, Any], tools: dict[str, dict[str, Any]], target: float
) -> list[dict[str, Any]]:
    """Issue 3's time ratio against the full peer, then issue 2's against its summary part."""
    out: list[dict[str, Any]] = []
    shown_target = f"≤ {target}"
    ps = tools.get("scanpy", {}).get("summary")
    if ps is not None:
        fig = ps.get("figures") or {}
        median_s = fig.get("median_s")
        full = "read + aggregate 4 funcs + aggregate median, both groupings"
        for denominator, how in (
            (ps["wall_s"] if median_s is not None else None, "process wall"),
            (fig.get("full_s"), "in-process, no start-up or imports"),
        ):
            ratio = _ratio(wc.get("wall_s"), denominator)
            out.append(
                _ratio_verdict(
                    "issue 3",
                    f"widecube full ingest wall / scanpy {full} ({how})",
                    ratio,
                    target,
                    shown_target,
                )
            )
        summary = "read + aggregate 4 funcs, both groupings"
        process_summary = None if ps["wall_s"] is None else ps["wall_s"] - (median_s or 0.0)
        for denominator, how in (
            (process_summary, "process wall less its median calls" if median_s else "process wall"),
            (fig.get("summary_s"), "in-process, no start-up or imports"),
        ):
            ratio = _ratio(wc.get("wall_s"), denominator)
            out.append(
                _ratio_verdict(
                    "issue 2 (secondary)",
                    f"widecube full ingest wall / scanpy {summary} ({how})",
                    ratio,
                    target,
                    shown_target,
                )
            )
    pc = tools.get("scanpy-cluster", {}).get("summary")
    if pc is not None:
        fig = pc.get("figures") or {}
        for denominator, how in ((pc["wall_s"], "process wall"), (fig.get("summary_s"), "in-process")):
            ratio = _ratio(wc.get("wall_s"), denominator)
            out.append(
                _ratio_verdict(
                    "issue 2 (secondary)",
                    f"widecube full ingest wall / scanpy read + aggregate 4 funcs, `cluster` only ({how})",
                    ratio,
                    target,
                    shown_target,
                )
            )
    return out


def _ratio_verdict(group: str, what: str, ratio: float | None, target: float, shown: str) -> dict[str, Any]:
    return _verdict(
        group,
        what,
        ratio,
        "—" if ratio is None else f"{ratio:.3f}",
        shown,
        None if ratio is None else ratio <= target,
    )


def _verdict(
    group: str, what: str, value: Any, shown: str, target_shown: str, ok: bool | None
) -> dict[str, Any]:
    return {
        "group": group,
        "what": what,
        "value": value,
        "shown": shown,
        "target_shown": target_shown,
        "pass": ok,
    }


def bench(
    name: str, tools: list[str], repeat: int, timeout: float | None, guard: Guard, machine: dict[str, Any]
) -> dict[str, Any]:
    """Build dataset ``name`` if needed, run every tool ``repeat`` times, return the result.

    ``machine`` is what :func:`_record.begin` found before the run (commit, cores, load).
    """
    started = datetime.now(UTC)
    spec = DATASETS[name]
    print(f"[{name}] preparing {HERE.name}/data/{name}.h5ad", flush=True)
    info = ensure_dataset(spec, HERE / "data", timeout=timeout)
    print(
        f"[{name}] {info.shape[0]:,} × {info.shape[1]:,}, {info.nnz:,} non-zeros, {info.size / 1e9:.2f} GB",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
    for i in range(repeat):
        print(f"[{name}] round {i + 1} of {repeat}", flush=True)
        for t in tools:
            runs[t].append(run_tool(t, info, timeout, guard))
    results = {
        t: {
            "what": TOOLS[t].what,
            "command": runs[t][0]["command"],
            "display": _display(t, runs[t][0]["command"], spec, guard, timeout),
            "expected_to_fail": TOOLS[t].peer and spec.peer_expected_to_fail,
            "runs": runs[t],
            "summary": summarize(runs[t]),
        }
        for t in tools
    }
    memory = machine.get("memory_bytes") or 0
    cache = "warm — each run preceded by an untimed full read of the input"
    if memory and info.size > memory / 2:
        cache = (
            f"warm as far as memory allows — each run preceded by an untimed full read of the input "
            f"({info.size / 1e9:.1f} GB on a {memory / 1e9:.1f} GB machine, so part of it may be "
            "evicted again by the run itself)"
        )
    return {
        "name": name,
        "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "finished_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "dataset": {**info.to_json(), "path": str(info.path.relative_to(REPO))},
        "page_cache": cache,
        "repeat": repeat,
        "timeout_s": timeout,
        "guard": guard.describe(spec),
        "tools": results,
        "verdicts": verdicts(results, spec),
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
        default=None,
        help=f"comma-separated subset of: {', '.join(TOOLS)} (default: {','.join(DEFAULT_TOOLS)})",
    )
    p.add_argument(
        "--steps",
        action="store_true",
        help="also run widecube-steps (a second ingest, timed per step)",
    )
    p.add_argument("--skip-scanpy", action="store_true", help="run no scanpy peer")
    p.add_argument("--repeat", type=int, default=1, help="runs of each tool (default 1)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per process")
    p.add_argument(
        "--peer-memory-limit",
        type=float,
        default=PEER_MEMORY_LIMIT,
        help="bytes: a scanpy run is killed past this RSS, and on a dataset it is expected not "
        f"to fit (B1M) also capped to this address space (default {PEER_MEMORY_LIMIT:.0e})",
    )
    p.add_argument(
        "--memory-floor",
        type=float,
        default=MEMORY_FLOOR,
        help="bytes: a scanpy run is killed when the machine's available memory falls below "
        f"this (default {MEMORY_FLOOR:.1e})",
    )
    p.add_argument(
        "--record",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="record the run in results/ and regenerate RESULTS.md (default: yes unless --quick)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="record even from a working tree with uncommitted changes (the run is marked dirty)",
    )
    p.add_argument("--check", action="store_true", help="exit 1 when a target fails")
    args = p.parse_args(argv)
    tools = [t for t in (args.tools or ",".join(DEFAULT_TOOLS)).split(",") if t]
    if args.steps and "widecube-steps" not in tools:
        tools.append("widecube-steps")
    if args.skip_scanpy:
        tools = [t for t in tools if not TOOLS.get(t, TOOLS["widecube"]).peer]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown or args.repeat < 1 or not tools:
        p.error(
            f"unknown tools {unknown}"
            if unknown
            else ("--repeat must be at least 1" if args.repeat < 1 else "no tool left to run")
        )
    tools = [t for t in TOOLS if t in tools]
    guard = Guard(int(args.peer_memory_limit), int(args.memory_floor))
    names = ["quick"] if args.quick else (args.only or ["b100k"])
    record = (not args.quick) if args.record is None else args.record
    failed = False
    try:  # once: recording the first dataset regenerates RESULTS.md and the README
        machine = begin(record=record, force=args.force)
    except DirtyTree as exc:
        print(exc, file=sys.stderr, flush=True)
        return 2
    for name in names:
        try:
            result = bench(name, tools, args.repeat, args.timeout, guard, machine)
        except NotEnoughDisk as exc:
            print(f"[{name}] {exc}", file=sys.stderr, flush=True)
            return 2
        section = render_section(result)
        raw = save(result, name, folder=HERE / "results" if record else OUT / "results")
        if record:
            regenerate()
        print(
            f"\n{section}\nraw figures: {raw.relative_to(REPO)}"
            + ("; benchmarks/RESULTS.md and the README regenerated" if record else ""),
            flush=True,
        )
        failed |= any(
            t["summary"]["status"] != "ok" and not t["expected_to_fail"] for t in result["tools"].values()
        )
        failed |= args.check and any(v["pass"] is False for v in result["verdicts"])
    return 1 if failed else 0


def _display(name: str, command: list[str], spec: DatasetSpec, guard: Guard, timeout: float | None) -> str:
    """The command as a shell line, with paths relative to the repository root."""
    root = str(REPO) + "/"
    shown = [a.removeprefix(root) for a in command]
    env = "WIDECUBE_STORAGE=benchmarks/out/storage-<fresh> " if TOOLS[name].storage else ""
    line = f"{env}{shlex.join(shown)}"
    if TOOLS[name].peer:
        limit = f", time limit {timeout:.0f} s" if timeout else ""
        line = f"# under the {guard.describe(spec)}{limit}\n{line}"
    return line


def _last_json(stdout: str) -> dict[str, Any] | None:
    """The JSON object on the last line of ``stdout``; None when there is none."""
    lines = stdout.strip().splitlines()
    if not lines:
        return None
    try:
        value = json.loads(lines[-1])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _last_step(run: dict[str, Any]) -> str:
    """The peer's last progress line on stderr (how far it got before it was killed)."""
    done = [ln for ln in run.get("stderr_tail", "").splitlines() if ln.startswith("scanpy_peer: ")]
    return f"; its last report: “{done[-1].removeprefix('scanpy_peer: ')}”" if done else ""


def _one_line(text: str | list[str], limit: int) -> str:
    text = " ".join(text) if isinstance(text, list) else text
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _medians(runs: list[dict[str, Any]], key: str) -> dict[str, float] | None:
    """Per-key medians of ``run[key]`` (a dict of seconds) over ``runs``; keys of the first run."""
    if not runs[0].get(key):
        return None
    return {k: statistics.median(r[key][k] for r in runs if r.get(key) and k in r[key]) for k in runs[0][key]}


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
