"""Benchmark the read path: summary queries in-process, over HTTP, and under wrk.

On B100k (100,000 cells × 30,000 genes, groupings ``cluster`` and ``cluster,donor``), one
query is 50 random genes × the 100 clusters × (mean, frac_expressing). Measured in one run:

* **in-process**: ``Widecube.summary`` (resolve the live version in the catalog, look the
  genes up, index the memory-mapped decoded arrays, derive the stats); target p50 ≤ 1 ms;
* **zarr-python, naive**: the same numbers read from the snapshot's Zarr layers per query,
  (a) opening the arrays each time, (b) with the arrays opened once;
* **HTTP on loopback**: ``POST /summary`` to ``widecube serve`` (one worker) over a
  keep-alive connection, JSON decoded by the client; target p50 ≤ 5 ms;
* **wrk** (Debian's) for 60 s against ``widecube serve --workers 2``; target ≥ 1,000
  requests/s with 0 errors, on this machine's cores (wrk shares them).

The run is recorded as one JSON file in ``benchmarks/results/`` (``_record.py``: refused from
a dirty tree unless ``--force``); ``RESULTS.md`` and the README's numbers are regenerated from
every recorded run (``report.py``). Usage::

    .venv/bin/python benchmarks/serve.py                     # ingest B100k, measure, record
    .venv/bin/python benchmarks/serve.py --storage DIR --no-record --wrk-seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from _record import DirtyTree, begin, regenerate, save
from _serve_http import http_latencies, run_wrk, serving
from _serve_report import verdicts

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATASET, GROUPBY, STATS, N_GENES = "b100k", "cluster", ["mean", "frac_expressing"], 50


def _latencies(fn: Any, n: int, warmup: int = 100) -> list[float]:
    """Milliseconds per call of ``fn`` over ``n`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t) / 1e6)
    return out


def stats_ms(samples: list[float]) -> dict[str, float]:
    p50, p95, p99 = np.percentile(samples, [50, 95, 99])
    return {
        "n": len(samples),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "mean_ms": float(np.mean(samples)),
    }


def ingest(path: Path, storage: Path) -> float:
    """Ingest the input with the CLI into ``storage``; returns wall seconds."""
    cli = [
        str(Path(sys.executable).with_name("widecube")),
        "ingest",
        str(path),
        "--dataset",
        DATASET,
        "--groupby",
        "cluster",
        "--groupby",
        "cluster,donor",
    ]
    t = time.perf_counter()
    subprocess.run(cli, env={**os.environ, "WIDECUBE_STORAGE": str(storage)}, check=True)
    return time.perf_counter() - t


def in_process(storage: Path, n: int) -> tuple[dict[str, Any], list[str], str, Any]:
    """The service's latency, and the query's genes, version and reference values."""
    from widecube.config import Settings
    from widecube.query import Widecube

    wc = Widecube(Settings(storage=storage))
    version = wc.warm(DATASET)
    _, snap = wc.resolve(DATASET)
    rng = np.random.default_rng(0)
    genes = [str(g) for g in rng.choice(np.asarray(snap.var_names), N_GENES, replace=False)]
    reference = wc.summary(DATASET, genes=genes, groupby=GROUPBY, stats=STATS)
    live = _latencies(lambda: wc.summary(DATASET, genes=genes, groupby=GROUPBY, stats=STATS), n)
    pinned = _latencies(
        lambda: wc.summary(DATASET, genes=genes, groupby=GROUPBY, stats=STATS, version=version), n
    )
    wc.close()
    return {"live": stats_ms(live), "pinned": stats_ms(pinned)}, genes, version, reference


def zarr_naive(storage: Path, version: str, genes: list[str], reference: Any, n: int) -> dict[str, Any]:
    """The same query read straight from the snapshot's Zarr layers with zarr-python."""
    import pandas as pd
    import zarr

    root = storage / "datasets" / DATASET / version
    manifest = json.loads((root / "manifest.json").read_text())
    view = root / manifest["views"]["summary"]["layers"][reference["layer"]][GROUPBY]["path"]
    var = pd.read_parquet(root / "dataset/var.parquet")
    idx = var.index.get_indexer(genes)

    def cold() -> dict[str, Any]:
        return {s: zarr.open_array(view / "layers" / s, mode="r").oindex[:, idx] for s in STATS}

    opened = {s: zarr.open_array(view / "layers" / s, mode="r") for s in STATS}

    def warm() -> dict[str, Any]:
        return {s: opened[s].oindex[:, idx] for s in STATS}

    got = warm()
    for s in STATS:  # the stored float32 layers agree with the served float64 figures
        np.testing.assert_allclose(got[s], reference["values"][s], rtol=1e-6)
    return {
        "open_per_query": stats_ms(_latencies(cold, n, warmup=5)),
        "opened_once": stats_ms(_latencies(warm, n, warmup=5)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=HERE / "data" / "b100k.h5ad")
    parser.add_argument("--storage", type=Path, help="reuse an ingested storage folder (kept)")
    parser.add_argument("--queries", type=int, default=2000, help="timed queries per measurement")
    parser.add_argument("--zarr-queries", type=int, default=200)
    parser.add_argument("--wrk-seconds", type=int, default=60)
    parser.add_argument("--wrk-connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="server processes under wrk")
    parser.add_argument("--no-record", action="store_true", help="record nothing (results/, RESULTS.md)")
    parser.add_argument("--force", action="store_true", help="record even from a dirty tree (marked dirty)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: `make bench` installs it (apt-get install wrk)")
    try:
        machine = begin(record=not args.no_record, force=args.force)
    except DirtyTree as exc:
        sys.exit(str(exc))
    started = datetime.now(UTC)
    storage = args.storage or Path(tempfile.mkdtemp(prefix="serve-", dir=HERE / "out"))
    try:
        ingest_s = None if args.storage else ingest(args.input, storage)
        process, genes, version, reference = in_process(storage, args.queries)
        naive = zarr_naive(storage, version, genes, reference, args.zarr_queries)
        body = {"genes": genes, "groupby": GROUPBY, "stats": STATS}
        with serving(storage, workers=1) as (url, _):
            http = {
                k: stats_ms(v) for k, v in http_latencies(url, DATASET, body, version, args.queries).items()
            }
        with serving(storage, workers=args.workers) as (url, pid):
            load = run_wrk(
                url, DATASET, body, seconds=args.wrk_seconds, connections=args.wrk_connections, server_pid=pid
            )
    finally:
        if args.storage is None:
            shutil.rmtree(storage, ignore_errors=True)
    result = {
        "name": f"serve {DATASET}",
        "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "input": str(args.input.relative_to(REPO) if args.input.is_relative_to(REPO) else args.input),
        "ingest_s": ingest_s,
        "query": {
            "genes": N_GENES,
            "groupby": GROUPBY,
            "groups": len(reference["groups"]),
            "stats": STATS,
            "layer": reference["layer"],
        },
        "in_process": process,
        "zarr_naive": naive,
        "http": http,
        "wrk": load,
        "workers_under_wrk": args.workers,
    }
    result["verdicts"] = verdicts(result)
    print(json.dumps(result, indent=1, default=str))
    if not args.no_record:
        out = save(result, f"serve-{DATASET}", stamp=started.strftime("%Y%m%dT%H%M%SZ"))
        regenerate()
        print(f"recorded {out.relative_to(REPO)}; benchmarks/RESULTS.md and the README regenerated")


if __name__ == "__main__":
    main()
