"""Ingest at the hardware floor (issue 14): widecube's ingest by ``cluster``, step by step,
beside the floors of the same file and the peer a user would run, all in one run.

For each dataset (default: the Poisson B100k, ``poisson.py``, and the demo B100k, both
100,000 × 30,000 grouped by ``cluster`` only) it first ingests the same file, untimed,
so numba's on-disk cache holds every kernel for its types (:func:`warm_numba`), then
runs, one after the other, each in a fresh process after an untimed full read of the input
(warm page cache):

0. what this machine charges the kernel for memory touched the first time (``_floors.py
   touch``: a GiB through the page cache and a GiB of anonymous memory, into pages free for a
   while and into pages just freed), the context of the kernel share (not a target);
1. the read floor: h5py reads ``X``'s arrays (``_floors.py read``);
2. the kernel floor: one numba pass for the per-group sum, sum of squares and non-zero
   count (``_floors.py kernel``; its kernel time alone);
3. ``widecube ingest --groupby cluster --timings``: every view (wall, CPU, kernel CPU, peak
   RSS, each step, and pass 1 / pass 2 / views written inside the compute step);
4. ``widecube ingest --groupby cluster --views summary,quantiles --timings``;
5. the peer: scanpy's read + ``aggregate(sum, mean, var, count_nonzero)`` +
   ``aggregate(median)`` by ``cluster`` (``scanpy_peer.py``).

Targets (issue 14, judged in ``_floor_report.py``): full ingest ≤ 0.75 × the peer,
``--views summary,quantiles`` ≤ 0.3 × the peer (each against the peer's process wall and
against its in-process time, the less favourable shown beside the other), ≥ 1.8 cores on
average over the full ingest with kernel time ≤ 10 % of its CPU, peak RSS ≤ 2.5 GB, and
pass 1 ≤ 2 × the read floor. Recorded as one JSON file per dataset in ``results/``
(refused from a dirty tree unless ``--force``), then RESULTS.md regenerated.

    python benchmarks/floor.py                      # both datasets, recorded
    python benchmarks/floor.py --quick              # 8,000 × 3,000 smoke run, not recorded
    python benchmarks/floor.py --only b100k-poisson
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _datasets import DATASETS, DatasetInfo, ensure_dataset
from _floor_report import render_floor_section, verdicts
from _measure import measure, warm_page_cache
from _record import DirtyTree, begin, regenerate, save

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
PYTHON = os.path.abspath(sys.executable)
VIEWS = "summary,quantiles"
PEER_MEMORY_LIMIT = 20 * 10**9


def commands(info: DatasetInfo) -> dict[str, list[str]]:
    """Every measured command, in the order they run."""
    path, name = str(info.path), info.spec.name
    widecube = str(Path(PYTHON).with_name("widecube"))
    ingest = [widecube, "ingest", path, "--dataset", name, "--groupby", "cluster", "--timings"]
    return {
        "first touch": [PYTHON, str(HERE / "_floors.py"), "touch", str(OUT)],
        "read floor": [PYTHON, str(HERE / "_floors.py"), "read", path],
        "kernel floor": [PYTHON, str(HERE / "_floors.py"), "kernel", path, "--by", "cluster"],
        "widecube": ingest,
        "widecube views": [*ingest, "--views", VIEWS],
        "scanpy": [PYTHON, str(HERE / "scanpy_peer.py"), path, "--by", "cluster"],
    }


def warm_numba(info: DatasetInfo, timeout: float) -> None:
    """Ingest the measured dataset once, every view, unrecorded, so numba's on-disk cache
    holds every kernel for its stored types: numba compiles a kernel the first time a process
    meets its types and keeps it on disk (``cache=True``), and the types follow the values
    (8- or 16-bit counts, 8- or 16-bit offsets) more than the generator. Warmed with a small
    dataset of the same generator instead, the demo B100k's full ingest still compiled (48.5 s,
    pass 1 7.4 s, where the next run of the same tree took 27.5 s and 3.6 s)."""
    storage = OUT / f"floor-warm-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "WIDECUBE_STORAGE": str(storage)}
    print(f"[{info.spec.name}] numba's cache, from a full ingest of the same file (not timed)", flush=True)
    try:
        m = measure(commands(info)["widecube"], env=env, timeout=timeout)
        if m.status != "ok":
            raise SystemExit(f"warming numba's cache failed: widecube on {info.path}: {m.status}")
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def run(info: DatasetInfo, timeout: float) -> dict[str, Any]:
    OUT.mkdir(parents=True, exist_ok=True)
    warm_numba(info, timeout)
    out: dict[str, Any] = {}
    for tool, command in commands(info).items():
        warm_page_cache(info.path)
        storage = OUT / f"floor-storage-{uuid.uuid4().hex[:8]}"
        env = {**os.environ, "WIDECUBE_STORAGE": str(storage)}
        print(f"[{info.spec.name}] {tool}", flush=True)
        guard = {"rss_limit": PEER_MEMORY_LIMIT} if tool == "scanpy" else {}
        m = measure(command, env=env, timeout=timeout, **guard)
        shutil.rmtree(storage, ignore_errors=True)
        record = {k: v for k, v in m.to_json().items() if k != "stdout"}
        record["command"] = [c.replace(f"{REPO}/", "") for c in m.command]
        record["out"] = _last_json(m.stdout)
        out[tool] = record
        print(f"[{info.spec.name}] {tool}: {m.status}, {m.wall_s:.1f} s, {m.cpu_s:.1f} s CPU", flush=True)
    return out


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except json.JSONDecodeError:
                continue
            return found if isinstance(found, dict) else None
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", action="append", choices=["b100k-poisson", "b100k"], help="dataset(s)")
    p.add_argument("--quick", action="store_true", help="8,000 × 3,000 Poisson smoke run, not recorded")
    p.add_argument("--no-record", action="store_true", help="print only")
    p.add_argument("--force", action="store_true", help="record from a dirty tree (marked dirty)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per process")
    a = p.parse_args(argv)
    names = ["quick-poisson"] if a.quick else (a.only or ["b100k-poisson", "b100k"])
    record = not (a.quick or a.no_record)
    try:  # once: recording the first dataset regenerates RESULTS.md and the README
        machine = begin(record=record, force=a.force)
    except DirtyTree as exc:
        print(exc, file=sys.stderr)
        return 2
    for name in names:
        started = datetime.now(UTC)
        load_start = [round(x, 2) for x in os.getloadavg()]
        info = ensure_dataset(DATASETS[name], HERE / "data", timeout=a.timeout)
        print(f"[{name}] {info.shape[0]:,} × {info.shape[1]:,}, {info.nnz:,} non-zeros", flush=True)
        result = {
            "name": f"floor {name}",
            "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine,
            "loadavg_start": load_start,
            "dataset": {**info.to_json(), "path": str(info.path.relative_to(REPO))},
            "views": VIEWS,
            "numba_warmed_by": "an untimed full ingest of the same file",
            "tools": run(info, a.timeout),
        }
        result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        print(render_floor_section(result), flush=True)
        if record:
            path = save(result, f"floor-{name}", stamp=started.strftime("%Y%m%dT%H%M%SZ"))
            regenerate()
            print(f"recorded {path.relative_to(REPO)}; benchmarks/RESULTS.md and the README regenerated")
        if any(v["pass"] is False for v in verdicts(result)):
            print(f"[{name}] a target failed (see the table)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
