"""Reader benchmarks (issue 4): the wide CSV against pandas, 10x h5 and MTX against h5ad.

* **Wide CSV** — 20,000 cells × 50,000 genes, ~2.8 GB of text (``_readers_data``). widecube
  reads and validates it (``open_input`` + the full block stream + the pipeline's finite
  check) in a fresh process; the peer is ``pandas.read_csv(path, index_col=0)`` in a fresh
  process, holding it whole (guarded: it is stopped before the machine runs out of memory),
  and, as a throughput reference that fits in memory whatever happens, the same call with
  ``chunksize=1000``. Targets: throughput ≥ 3 × pandas', widecube peak RSS ≤ 2 GB.
* **10x h5 and MTX** — one ``widecube demo-data`` matrix (50,000 × 20,000) as h5ad, 10x v3
  HDF5 (uncompressed like the h5ad, and gzip-4 as Cell Ranger writes it) and a 10x MTX
  folder; each read as above, in rounds (h5ad, 10x h5, 10x h5 gzip, MTX; again), so that the
  load of a shared machine weighs on each alike. Target: 10x h5 and MTX each ≤ 1.5 × the h5ad
  reader's time, judged on the medians of the same run.
  ``--ingest`` also times a full ``widecube ingest`` of each (grouped by cell type).

Each run is preceded by an untimed read of its input (warm page cache). A full run is recorded as
one JSON file in ``benchmarks/results/`` (refused from a dirty tree unless ``--force``), and
``RESULTS.md`` is regenerated from every recorded run (``report.py``).

    .venv/bin/python benchmarks/readers.py              # both benchmarks, recorded
    .venv/bin/python benchmarks/readers.py --quick      # small inputs, smoke run, not recorded
    .venv/bin/python benchmarks/readers.py --only csv --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _measure import measure, warm_page_cache
from _readers_data import DemoSpec, WideCsvSpec, ensure_demo_formats, ensure_wide_csv
from _readers_report import render_section
from _record import DirtyTree, begin, regenerate, save

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "data"
OUT = HERE / "out"
PROBE = str(HERE / "_readers_probe.py")
CSV_SPEEDUP = 3.0
CSV_RSS = 2e9
TENX_RATIO = 1.5
SAFETY = {"min_available": int(2.5e9), "timeout": 3600.0}
"""Every run is stopped if the machine's available memory falls below 2.5 GB."""


def _warm(path: Path) -> float:
    files = [p for p in sorted(path.rglob("*")) if p.is_file()] if path.is_dir() else [path]
    return sum(warm_page_cache(p) for p in files)


def run_once(command: list[str], warm: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """One measured run in a fresh process, after warming the page cache with ``warm``."""
    warm_s = _warm(warm)
    m = measure(
        command, env=env, cwd=REPO, timeout=SAFETY["timeout"], min_available=int(SAFETY["min_available"])
    )
    run = {**m.to_json(), "warmup_read_s": warm_s, "probe": None}
    lines = m.stdout.strip().splitlines()
    if m.ok and lines and lines[-1].startswith("{"):
        run["probe"] = json.loads(lines[-1])
    print(
        f"    {m.status}, wall {m.wall_s:.1f} s, peak RSS {m.peak_rss / 1e9:.2f} GB"
        + (f", read {run['probe']['read_s']:.2f} s" if run["probe"] else ""),
        flush=True,
    )
    return run


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the successful runs (read time in the process, if reported; wall; CPU); maximum peak RSS."""
    ok = [r for r in runs if r["status"] == "ok"]
    peak = max(max(r["peak_rss"], r["peak_tree_rss"]) for r in runs)
    if not ok:
        return {
            "status": runs[-1]["status"],
            "killed_by": runs[-1].get("killed_by"),
            "read_s": None,
            "wall_s": None,
            "cpu_s": None,
            "peak_rss": peak,
        }
    return {
        "status": "ok" if len(ok) == len(runs) else f"{len(runs) - len(ok)} of {len(runs)} failed",
        "read_s": statistics.median(r["probe"]["read_s"] for r in ok) if ok[0]["probe"] else None,
        "wall_s": statistics.median(r["wall_s"] for r in ok),
        "cpu_s": statistics.median(r["cpu_s"] for r in ok),
        "peak_rss": peak,
        "probe": ok[-1]["probe"],
    }


def _tool(
    what: str, command: list[str], warm: Path, repeat: int, env: dict[str, str] | None = None
) -> dict[str, Any]:
    print(f"  {what}", flush=True)
    runs = [run_once(command, warm, env) for _ in range(repeat)]
    return {"what": what, "command": command, "runs": runs, "summary": summarize(runs)}


def _workdir() -> Path:
    return OUT / f"readers-work-{uuid.uuid4().hex[:10]}"


def bench_csv(spec: WideCsvSpec, repeat: int) -> dict[str, Any]:
    """Wide CSV: widecube vs pandas (whole, and chunked)."""
    print(f"[csv] preparing {spec.name}.csv", flush=True)
    path = ensure_wide_csv(spec, DATA)
    work = _workdir()
    py = sys.executable
    try:
        tools = {
            "widecube": _tool(
                "widecube: open_input + block stream + finite check",
                [py, PROBE, "widecube", str(path), "--workdir", str(work)],
                path,
                repeat,
            ),
            "pandas": _tool(
                "pandas.read_csv(path, index_col=0), whole", [py, PROBE, "pandas", str(path)], path, 1
            ),
            "pandas-chunked": _tool(
                "pandas.read_csv(path, index_col=0, chunksize=1000), streamed",
                [py, PROBE, "pandas", str(path), "--chunksize", "1000"],
                path,
                1,
            ),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "input": {
            "path": str(path.relative_to(REPO)),
            "size": path.stat().st_size,
            "shape": [spec.n_cells, spec.n_genes],
        },
        "tools": tools,
        "verdicts": csv_verdicts(tools, path.stat().st_size),
    }


def csv_verdicts(tools: dict[str, Any], size: int) -> list[dict[str, Any]]:
    wc = tools["widecube"]["summary"]
    out = []
    for peer in ("pandas", "pandas-chunked"):
        ps = tools[peer]["summary"]
        ratio = ps["read_s"] / wc["read_s"] if ps["read_s"] and wc["read_s"] else None
        out.append(
            {
                "what": f"widecube throughput / {peer} throughput (read time in the process)",
                "value": ratio,
                "target": f"≥ {CSV_SPEEDUP}",
                "pass": None if ratio is None else ratio >= CSV_SPEEDUP,
            }
        )
        if wc["wall_s"] and ps["wall_s"]:
            ratio = ps["wall_s"] / wc["wall_s"]
            out.append(
                {
                    "what": f"widecube / {peer}, process wall (with start-up)",
                    "value": ratio,
                    "target": f"≥ {CSV_SPEEDUP}",
                    "pass": ratio >= CSV_SPEEDUP,
                }
            )
    out.append(
        {
            "what": "widecube peak RSS (GB)",
            "value": wc["peak_rss"] / 1e9,
            "target": f"≤ {CSV_RSS / 1e9}",
            "pass": wc["peak_rss"] <= CSV_RSS,
        }
    )
    if wc["read_s"]:
        out.append(
            {
                "what": "widecube throughput (MB/s of text)",
                "value": size / 1e6 / wc["read_s"],
                "target": "—",
                "pass": None,
            }
        )
    return out


def bench_tenx(spec: DemoSpec, repeat: int, ingest: bool) -> dict[str, Any]:
    """The same matrix as h5ad, 10x h5 (plain, gzip) and MTX: block-stream time of each reader."""
    print(f"[10x] preparing {spec.name} in four formats", flush=True)
    files = ensure_demo_formats(spec, DATA)
    py = sys.executable
    tools: dict[str, Any] = {}
    work = _workdir()
    commands = {f: [py, PROBE, "widecube", str(p), "--workdir", str(work / f)] for f, p in files.items()}
    runs: dict[str, list[dict[str, Any]]] = {fmt: [] for fmt in files}
    try:  # rounds of one run per format, so that a shared machine's load falls on each alike
        for r in range(repeat):
            for fmt, path in files.items():
                print(f"  widecube {fmt}, round {r + 1} of {repeat}", flush=True)
                runs[fmt].append(run_once(commands[fmt], path))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for fmt in files:
        what = f"widecube {fmt}: open_input + block stream + finite check"
        tools[fmt] = {
            "what": what,
            "command": commands[fmt],
            "runs": runs[fmt],
            "summary": summarize(runs[fmt]),
        }
    if ingest:
        obs = DATA / f"{spec.name}.obs.csv"
        _write_obs(files["h5ad"], obs)
        for fmt in ("h5ad", "10x-h5", "mtx"):
            storage = OUT / f"storage-{uuid.uuid4().hex[:10]}"
            extra = [] if fmt == "h5ad" else ["--obs", str(obs)]
            command = [
                str(Path(py).with_name("widecube")),
                "ingest",
                str(files[fmt]),
                "--dataset",
                "r",
                "--groupby",
                "cell_type",
                *extra,
            ]
            try:
                env = {**os.environ, "WIDECUBE_STORAGE": str(storage)}
                tools[f"ingest {fmt}"] = _tool(
                    f"widecube ingest ({fmt}), grouped by cell_type", command, files[fmt], 1, env
                )
            finally:
                shutil.rmtree(storage, ignore_errors=True)
    inputs = {fmt: {"path": str(p.relative_to(REPO)), "size": _size(p)} for fmt, p in files.items()}
    return {
        "input": {"shape": [spec.n_cells, spec.n_genes], "files": inputs},
        "tools": tools,
        "verdicts": tenx_verdicts(tools),
    }


def tenx_verdicts(tools: dict[str, Any]) -> list[dict[str, Any]]:
    base = tools["h5ad"]["summary"]["read_s"]
    out = []
    for fmt in ("10x-h5", "10x-h5-gzip", "mtx"):
        t = tools[fmt]["summary"]["read_s"]
        ratio = t / base if t and base else None
        out.append(
            {
                "what": f"{fmt} reader time / h5ad reader time",
                "value": ratio,
                "target": f"≤ {TENX_RATIO}",
                "pass": None if ratio is None else ratio <= TENX_RATIO,
            }
        )
    if "ingest h5ad" in tools:
        base = tools["ingest h5ad"]["summary"]["wall_s"]
        for fmt in ("10x-h5", "mtx"):
            t = tools[f"ingest {fmt}"]["summary"]["wall_s"]
            ratio = t / base if t and base else None
            out.append(
                {
                    "what": f"ingest wall, {fmt} / h5ad (informative)",
                    "value": ratio,
                    "target": "—",
                    "pass": None,
                }
            )
    return out


def _write_obs(h5ad: Path, path: Path) -> None:
    import anndata
    import h5py

    with h5py.File(h5ad, "r") as f:
        obs = anndata.io.read_elem(f["obs"])
    obs[["cell_type", "donor"]].astype(str).to_csv(path, index_label="barcode")


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small inputs; results not recorded")
    parser.add_argument("--only", choices=["csv", "10x"], default=None)
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs per widecube reader (default 3; csv 1)"
    )
    parser.add_argument("--ingest", action="store_true", help="also time full ingests of h5ad, 10x h5, MTX")
    parser.add_argument("--force", action="store_true", help="record even from a dirty tree (marked dirty)")
    args = parser.parse_args()
    try:
        machine = begin(record=not args.quick, force=args.force)
    except DirtyTree as exc:
        sys.exit(str(exc))
    OUT.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    result: dict[str, Any] = {
        "name": "readers" + (" (quick)" if args.quick else ""),
        "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "benchmarks": {},
    }
    if args.only in (None, "csv"):
        spec = WideCsvSpec(n_cells=500) if args.quick else WideCsvSpec()
        result["benchmarks"]["csv"] = bench_csv(spec, args.repeat or 1)
    if args.only in (None, "10x"):
        spec_10x = DemoSpec(n_cells=5_000, n_genes=2_000) if args.quick else DemoSpec()
        result["benchmarks"]["10x"] = bench_tenx(spec_10x, args.repeat or 3, args.ingest)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    raw = save(result, "readers", folder=OUT if args.quick else HERE / "results", stamp=stamp)
    print(render_section(result))
    if not args.quick:
        regenerate()
        print(f"recorded {raw.relative_to(REPO)}; benchmarks/RESULTS.md and the README regenerated")


if __name__ == "__main__":
    main()
