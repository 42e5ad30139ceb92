"""Benchmark on-the-fly aggregation: 10 genes over a filter that keeps about half of the cells.

Issue 5, item 3: "On-the-fly aggregate of 10 genes over a filter that selects half of the
cells of B1M: p50 ≤ 100 ms." One query is 10 random genes (seed 0) × every group of the
grouping (default: the first precomputed one, ``cluster`` on the benchmark datasets) × every
statistic ``/summary`` serves (moments and the five quantiles), on the dataset's default layer,
over the cells whose ``donor`` is one of the first half of its categories. Measured:

* **widecube in-process**: ``Widecube.aggregate`` (resolve the live version, filter mask and
  group counts from the per-version memo, one numba pass over the memory-mapped gene-major
  arrays). Before timing, ``Widecube.warm`` decodes the version's arrays into the cache (once
  per version; its time is reported as "decode once");
* **HTTP on loopback**: ``POST /aggregate`` to ``widecube serve`` (one worker), keep-alive,
  plain JSON and Arrow;
* **the peer, anndata + numpy, naive**: per query, open ``views/matrix.zarr``'s X with
  ``anndata.io.sparse_dataset`` (zarr-python underneath), read the 10 genes' columns, and
  compute the same statistics with numpy (``np.quantile(method="linear")``) over the kept
  cells; obs (mask, groups, library sizes) is read once, outside the timing.

The answers are checked to agree (moments to 1e-9, quantiles to float32) before any timing
is recorded. Nothing loads the whole matrix: at B1M the gene-major X/data alone is ~8 GB.
Usage::

    .venv/bin/python benchmarks/aggregate.py --storage DIR --dataset b1m    # an ingested store
    .venv/bin/python benchmarks/aggregate.py                               # ingest `quick` here

A run over ``--storage`` is recorded as one JSON file in ``benchmarks/results/`` (``--no-record``:
not; refused from a dirty tree unless ``--force``) and ``RESULTS.md`` is regenerated
(``report.py``); the default ``quick`` smoke run records nothing unless ``--record``.
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
from _datasets import DATASETS, ensure_dataset
from _record import DirtyTree, begin, regenerate, save
from _serve_http import serving

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
N_GENES = 10


def stats_ms(samples: list[float]) -> dict[str, float]:
    p50, p95 = np.percentile(samples, [50, 95])
    return {"n": len(samples), "p50_ms": float(p50), "p95_ms": float(p95), "mean_ms": float(np.mean(samples))}


def timed(fn: Any, n: int, warmup: int) -> list[float]:
    """Milliseconds per call of ``fn`` over ``n`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t) / 1e6)
    return out


def ingest_quick(storage: Path) -> str:
    """Generate (once) and ingest the ``quick`` dataset into ``storage``; returns its name."""
    spec = DATASETS["quick"]
    info = ensure_dataset(spec, HERE / "data")
    cli = [str(Path(sys.executable).with_name("widecube")), "ingest", str(info.path), "--dataset", spec.name]
    for key in spec.groupbys:
        cli += ["--groupby", key]
    subprocess.run(cli, env={**os.environ, "WIDECUBE_STORAGE": str(storage)}, check=True)
    return spec.name


def make_query(wc: Any, dataset: str, column: str, groupby: str | None) -> dict[str, Any]:
    """10 random genes, the filter (first half of ``column``'s categories), every stat."""
    detail = wc.dataset(dataset)
    _, snap = wc.resolve(dataset)
    rng = np.random.default_rng(0)
    genes = [str(g) for g in rng.choice(np.asarray(snap.var_names), N_GENES, replace=False)]
    if column not in detail["obs"]:
        sys.exit(f"dataset {dataset!r} has no categorical obs column {column!r}: pick one with --column")
    categories = detail["obs"][column]["categories"]
    kept = categories[: max(1, len(categories) // 2)]
    quantiles = detail["views"].get("quantiles", {}).get("stats", [])
    stats = [
        "sum",
        "sumsq",
        "nnz",
        "n_cells",
        "mean",
        "var",
        "frac_expressing",
        "mean_expressing",
        *quantiles,
    ]
    return {
        "genes": genes,
        "groupby": groupby or detail["groupbys"][0],
        "filter": {column: kept},
        "stats": stats,
    }


def peer(storage: Path, dataset: str, version: str, query: dict[str, Any], layer: str) -> Any:
    """The anndata/zarr-python + numpy peer: a function answering the query from scratch."""
    import anndata
    import pandas as pd
    import zarr

    root = storage / "datasets" / dataset / version
    manifest = json.loads((root / "manifest.json").read_text())
    matrix = root / manifest["views"]["matrix"]["path"]
    target = float(manifest["views"]["matrix"].get("target_sum", 1e4))
    quantiles = dict(
        zip(manifest["views"]["quantiles"]["stats"], manifest["views"]["quantiles"]["quantiles"], strict=True)
    )
    obs = pd.read_parquet(root / "dataset/obs.parquet")
    var = pd.read_parquet(root / "dataset/var.parquet")
    idx = var.index.get_indexer(query["genes"])
    keep = np.ones(len(obs), dtype=bool)
    for column, kept in query["filter"].items():
        keep &= obs[column].astype(str).isin(kept).to_numpy()
    columns = [c.strip() for c in query["groupby"].split(",")]
    labels = obs[columns[0]].astype(str)
    for c in columns[1:]:
        labels = labels + "_" + obs[c].astype(str)
    names, codes = np.unique(labels.to_numpy()[keep], return_inverse=True)
    scale = (target / obs["total_counts"].to_numpy(dtype=np.float64))[keep]
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))

    def answer() -> tuple[list[str], dict[str, np.ndarray]]:
        x = anndata.io.sparse_dataset(zarr.open_group(matrix / "X", mode="r"))[:, idx]
        dense = np.asarray(x[keep].toarray(), dtype=np.float64)  # kept cells × 10 genes
        if layer != "raw":
            dense = np.log1p(dense * scale[:, None])
        dense = dense[order]
        out: dict[str, list[np.ndarray]] = {s: [] for s in query["stats"]}
        for g in range(len(names)):
            part = dense[bounds[g] : bounds[g + 1]]
            n, s, nnz = len(part), part.sum(axis=0), np.count_nonzero(part, axis=0)
            row = {
                "sum": s,
                "sumsq": (part * part).sum(axis=0),
                "nnz": nnz.astype(float),
                "n_cells": np.full(part.shape[1], float(n)),
                "mean": s / n,
                "var": part.var(axis=0, ddof=1) if n > 1 else np.full(part.shape[1], np.nan),
                "frac_expressing": nnz / n,
                "mean_expressing": np.where(nnz > 0, s / np.maximum(nnz, 1), np.nan),
            }
            for stat in query["stats"]:
                out[stat].append(row[stat] if stat in row else np.quantile(part, quantiles[stat], axis=0))
        return [str(n) for n in names], {s: np.stack(v) for s, v in out.items()}

    return answer


def agree(ours: dict[str, Any], theirs: tuple[list[str], dict[str, np.ndarray]]) -> None:
    """Raise unless the peer's numbers equal widecube's (groups the filter empties aside)."""
    names, values = theirs
    rows = [ours["groups"].index(n) for n in names]
    assert all(ours["values"]["n_cells"][i][0] == 0 for i in set(range(len(ours["groups"]))) - set(rows))
    for stat, expected in values.items():
        got = np.asarray(ours["values"][stat], dtype=np.float64)[rows]
        quantile = stat not in (
            "sum",
            "sumsq",
            "nnz",
            "n_cells",
            "mean",
            "var",
            "frac_expressing",
            "mean_expressing",
        )
        np.testing.assert_allclose(
            got, expected, rtol=1e-6 if quantile else 1e-9, atol=1e-9, equal_nan=True, err_msg=stat
        )


def http(url: str, dataset: str, query: dict[str, Any], n: int) -> dict[str, dict[str, float]]:
    import httpx2 as httpx

    endpoint = f"{url}/api/v1/datasets/{dataset}/aggregate"
    out = {}
    with httpx.Client(timeout=120, headers={"Accept-Encoding": "identity"}) as client:
        for name, headers in (("json", {}), ("arrow", {"Accept": "application/vnd.apache.arrow.stream"})):

            def call(headers: dict[str, str] = headers) -> None:
                r = client.post(endpoint, json=query, headers=headers)
                if r.status_code != 200:
                    raise RuntimeError(f"HTTP {r.status_code}: {r.text[:500]}")

            out[name] = stats_ms(timed(call, n, warmup=20))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", type=Path, help="an ingested storage folder (default: ingest `quick`)")
    parser.add_argument("--dataset", help="dataset name in --storage")
    parser.add_argument("--column", default="donor", help="categorical obs column to filter on")
    parser.add_argument("--groupby", help="default: the dataset's first precomputed grouping")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--peer-queries", type=int, default=10)
    parser.add_argument("--note", help="one line on the dataset for RESULTS.md (how it was made)")
    parser.add_argument(
        "--record",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="record in results/ + RESULTS.md (default: with --storage)",
    )
    parser.add_argument("--force", action="store_true", help="record even from a dirty tree (marked dirty)")
    args = parser.parse_args()
    from widecube.config import Settings
    from widecube.query import Widecube

    own = args.storage is None
    record = args.record if args.record is not None else not own
    try:
        machine = begin(record=record, force=args.force)
    except DirtyTree as exc:
        sys.exit(str(exc))
    started = datetime.now(UTC)
    (HERE / "out").mkdir(exist_ok=True)
    storage = args.storage or Path(tempfile.mkdtemp(prefix="aggregate-", dir=HERE / "out"))
    try:
        dataset = ingest_quick(storage) if own else args.dataset
        if not dataset:
            sys.exit("--dataset is required with --storage")
        wc = Widecube(Settings(storage=storage))
        t = time.perf_counter()
        version = wc.warm(dataset)  # decodes every served array of the version (once per version)
        warm_s = time.perf_counter() - t
        query = make_query(wc, dataset, args.column, args.groupby)
        n_cells = wc.resolve(dataset)[1].n_cells
        t = time.perf_counter()
        first = wc.aggregate(dataset, **query)
        first_ms = (time.perf_counter() - t) * 1e3
        if first["source"] != "computed":
            sys.exit(f"the filter {query['filter']} keeps whole groups: pick another --column or --groupby")
        answer = peer(storage, dataset, version, query, first["layer"])
        agree(first, answer())
        ours = stats_ms(timed(lambda: wc.aggregate(dataset, **query), args.queries, warmup=10))
        theirs = stats_ms(timed(answer, args.peer_queries, warmup=1))
        wc.close()
        with serving(storage, workers=1) as (url, _):
            over_http = http(url, dataset, query, args.queries)
    finally:
        if own:
            shutil.rmtree(storage, ignore_errors=True)
    result = {
        "name": f"aggregate {dataset}",
        "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "dataset": dataset,
        "note": args.note,
        "storage": None if own else str(args.storage),
        "n_cells": n_cells,
        "query": {**query, "layer": first["layer"], "groups": len(first["groups"])},
        "cells_kept": first["cells"],
        "warm_s": warm_s,
        "first_query_ms": first_ms,
        "in_process": ours,
        "http": over_http,
        "peer": theirs,
        "ratio_p50": theirs["p50_ms"] / ours["p50_ms"],
    }
    print(json.dumps(result, indent=1, default=str))
    if record:
        out = save(result, f"aggregate-{dataset}", stamp=started.strftime("%Y%m%dT%H%M%SZ"))
        regenerate()
        print(f"recorded {out.relative_to(REPO)}; benchmarks/RESULTS.md and the README regenerated")


if __name__ == "__main__":
    main()
