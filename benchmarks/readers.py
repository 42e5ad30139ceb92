"""Reader benchmarks: the wide CSV against pandas (issue 4); 10x h5 and MTX against their real
peers (issue 14, replacing issue 4's comparison of each with widecube's own h5ad reader).

* **Wide CSV** — 20,000 cells × 50,000 genes, ~2.8 GB of text (``_readers_data``). widecube
  reads and validates it (``open_input`` + the full block stream + the pipeline's finite
  check) in a fresh process; the peer is ``pandas.read_csv(path, index_col=0)`` in a fresh
  process, holding it whole (guarded: it is stopped before the machine runs out of memory),
  and, as a throughput reference that fits in memory whatever happens, the same call with
  ``chunksize=1000``. Targets: throughput ≥ 3 × pandas', widecube peak RSS ≤ 2 GB.
* **10x h5 and MTX against their peers** — one ``widecube demo-data`` matrix (50,000 ×
  20,000, 50 M stored values) as Cell Ranger writes it: a 10x v3 HDF5 with 80,000-value
  shuffle+gzip-4 chunks, a plain v2 MTX folder and a gzip v3 MTX folder (``_readers_data``).
  On each file, in the same run and interleaved (rounds of one run per reader, the order
  reversed every other round), in a fresh process each:

  - *widecube*: ``open_input`` + the full block stream + the pipeline's finite check, i.e.
    what ingest's pass 1 asks of a reader: barcodes and features read, every entry parsed,
    checked and delivered as cells × genes CSR blocks (for MTX, through the binary spill);
  - ``scanpy.read_10x_h5`` (10x h5) and ``scanpy.read_10x_mtx`` (MTX): the whole matrix as an
    AnnData holding a CSR (``gex_only=False``, sparing scanpy a full copy);
  - ``fast_matrix_market.read_coo`` on two threads (MTX): the entries as triplets in memory,
    the least work a reader can do; the same plus scipy's CSR is recorded too (informative).

  Targets, on the median over rounds of the paired ratio (peer's time / widecube's, same
  round), the least favourable and the best round beside it: 10x h5 ≥ 2 × scanpy; MTX
  (plain and gzip) ≥ 1.0 × fast_matrix_market's throughput and ≥ 5 × scanpy's.
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


PEERS: dict[str, tuple[str, ...]] = {
    "10x-h5-gzip": ("widecube", "scanpy"),
    "mtx": ("widecube", "fmm", "scanpy"),
    "mtx-gzip": ("widecube", "fmm", "scanpy"),
}
"""The reader of each input and its peers, run in this order (reversed every other round)."""
TARGETS = (("10x-h5-gzip", "scanpy", 2.0), ("mtx", "fmm", 1.0), ("mtx", "scanpy", 5.0))
"""(input, peer, target): widecube's speed over the peer's on the same file, at least the
target; the MTX targets hold for the plain file and its gzip twin alike."""
PEER_THREADS = 2
"""fast_matrix_market's threads: the machine's two cores, the cores widecube's reader uses."""
_WHAT = {
    "widecube": "widecube: open_input + block stream of cells × genes CSR blocks + finite check",
    "scanpy 10x-h5": "scanpy.read_10x_h5(path, gex_only=False): AnnData, CSR in memory",
    "scanpy mtx": "scanpy.read_10x_mtx(folder, gex_only=False): AnnData, CSR in memory",
    "fmm": f"fast_matrix_market.read_coo(matrix, parallelism={PEER_THREADS}): triplets in memory",
}


def _peer_command(tool: str, fmt: str, path: Path, work: Path) -> list[str]:
    py = sys.executable
    if tool == "widecube":
        return [py, PROBE, "widecube", str(path), "--workdir", str(work / fmt)]
    if tool == "fmm":
        return [py, PROBE, "fmm", str(path), "--threads", str(PEER_THREADS)]
    return [py, PROBE, "scanpy-10x-h5" if fmt.startswith("10x-h5") else "scanpy-10x-mtx", str(path)]


def bench_tenx(spec: DemoSpec, repeat: int, ingest: bool) -> dict[str, Any]:
    """The same matrix as Cell Ranger writes it (10x h5, MTX plain and gzip): widecube's reader
    against its peers on each file, in interleaved rounds."""
    print(f"[10x] preparing {spec.name} as Cell Ranger writes it", flush=True)
    files = ensure_demo_formats(spec, DATA)
    work = _workdir()
    keys = [(fmt, tool) for fmt, tools in PEERS.items() for tool in tools]
    commands = {(f, t): _peer_command(t, f, files[f], work) for f, t in keys}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {k: [] for k in keys}
    try:  # rounds of one run per reader, so that a shared machine's load falls on each alike
        for r in range(repeat):
            for fmt, tools in PEERS.items():
                for tool in tools if r % 2 == 0 else tools[::-1]:
                    print(f"  {fmt} {tool}, round {r + 1} of {repeat}", flush=True)
                    runs[fmt, tool].append(run_once(commands[fmt, tool], files[fmt]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tools: dict[str, Any] = {}
    for fmt, tool in keys:
        what = _WHAT.get(tool) or _WHAT[f"{tool} {fmt.removesuffix('-gzip')}"]
        tools[f"{fmt} {tool}"] = {
            "what": what,
            "command": commands[fmt, tool],
            "runs": runs[fmt, tool],
            "summary": summarize(runs[fmt, tool]),
        }
    if ingest:
        tools |= _ingests(spec, files)
    inputs = {fmt: {"path": str(p.relative_to(REPO)), "size": _size(p)} for fmt, p in files.items()}
    return {
        "kind": "peers",
        "input": {"shape": [spec.n_cells, spec.n_genes], "files": inputs},
        "tools": tools,
        "verdicts": tenx_verdicts(tools),
    }


def _ingests(spec: DemoSpec, files: dict[str, Path]) -> dict[str, Any]:
    """A full ``widecube ingest`` of each input, grouped by cell type (informative)."""
    py = sys.executable
    obs = DATA / f"{spec.name}.obs.csv"
    _write_obs(files["h5ad"], obs)
    out = {}
    for fmt in ("h5ad", *PEERS):
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
            what = f"widecube ingest ({fmt}), grouped by cell_type"
            out[f"ingest {fmt}"] = _tool(what, command, files[fmt], 1, env)
        finally:
            shutil.rmtree(storage, ignore_errors=True)
    return out


def _paired(tools: dict[str, Any], fmt: str, peer: str, field: str = "read_s") -> list[float]:
    """Peer time / widecube time, round by round (runs of the same round were adjacent)."""
    ours, theirs = tools[f"{fmt} widecube"]["runs"], tools[f"{fmt} {peer}"]["runs"]
    out = []
    for a, b in zip(ours, theirs, strict=True):
        if a["status"] == "ok" and b["status"] == "ok" and a["probe"] and b["probe"]:
            out.append(b["probe"][field] / a["probe"]["read_s"])
    return out


def _same_matrix(tools: dict[str, Any], fmt: str, peer: str) -> None:
    """Refuse a comparison of two reads that did not read the same matrix."""
    a, b = (tools[f"{fmt} {t}"]["summary"].get("probe") for t in ("widecube", peer))
    if a and b and (a["shape"], a["nnz"]) != (b["shape"], b["nnz"]):
        raise RuntimeError(
            f"{fmt}: widecube read {a['shape']} with {a['nnz']} values, {peer} {b['shape']} with {b['nnz']}"
        )


def tenx_verdicts(tools: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target on the median of the per-round ratios, with the least favourable and the
    best round beside it; then fast_matrix_market's CSR-equivalent read (informative)."""
    out = []
    for fmt in PEERS:
        for target_fmt, peer, target in TARGETS:
            if fmt not in (target_fmt, f"{target_fmt}-gzip"):
                continue
            _same_matrix(tools, fmt, peer)
            ratios = _paired(tools, fmt, peer)
            value = statistics.median(ratios) if ratios else None
            name = {"scanpy": "scanpy.read_10x_h5" if fmt.startswith("10x") else "scanpy.read_10x_mtx"}
            out.append(
                {
                    "what": f"{fmt}: widecube speed / {name.get(peer, 'fast_matrix_market')} speed",
                    "value": value,
                    "rounds": [min(ratios), max(ratios)] if ratios else None,
                    "target": f"≥ {target:g}",
                    "pass": None if value is None else value >= target,
                }
            )
        if "fmm" in PEERS[fmt]:
            ratios = _paired(tools, fmt, "fmm", "csr_s")
            out.append(
                {
                    "what": f"{fmt}: widecube speed / fast_matrix_market + scipy CSR (informative)",
                    "value": statistics.median(ratios) if ratios else None,
                    "rounds": [min(ratios), max(ratios)] if ratios else None,
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
        "--repeat", type=int, default=None, help="rounds of the 10x/MTX readers (default 5; csv 1)"
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
        result["benchmarks"]["10x"] = bench_tenx(spec_10x, args.repeat or 5, args.ingest)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    raw = save(result, "readers", folder=OUT if args.quick else HERE / "results", stamp=stamp)
    print(render_section(result))
    if not args.quick:
        regenerate()
        print(f"recorded {raw.relative_to(REPO)}; benchmarks/RESULTS.md and the README regenerated")


if __name__ == "__main__":
    main()
