"""Micro-benchmark of the quantile kernel: the selection kernel against the sort kernel it
replaced, side by side in one process on one realistic slab (not run by ``make test``).

The slab is what pass 2 hands the quantiles view: ``--genes`` genes × ``--cells`` cells,
counts ``Poisson(rate_gene · size_cell · effect_gene,cluster)`` with log-normal rates
tuned to about ``--density`` non-zeros, the raw layer (float32 counts, as float64) and the
normalized layer ``log1p(counts · 1e4 / library size)``; two groupings, ``--clusters``
clusters and clusters × ``--donors`` donors. Both kernels are compiled on a small slab
first, then timed alternately ``--repeat`` times; the best CPU time (``time.process_time``,
all threads) and wall time of each are kept, and the results must be equal bit for bit. The
run is recorded as one JSON file in ``benchmarks/results/`` (``_record.py``: refused from a
dirty tree unless ``--force``; ``--no-record``: printed only), with the load average, since
the machine may be shared: compare the ratio, which both kernels share the load for.

    python benchmarks/quantile_kernel.py --genes 2000 --cells 200000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime

import numba
import numpy as np
from _record import DirtyTree, begin, regenerate, save
from numba import njit, prange

from widecube.compute._kernels import gene_quantiles

QS = np.array([0.5, 0.1, 0.25, 0.75, 0.9])


# --- the sort kernel as it was before the selection kernel (reference) ---------------------


@njit(nogil=True)
def _element(sorted_vals: np.ndarray, n_neg: int, n_zero: int, i: int) -> float:
    if i < n_neg:
        return sorted_vals[i]
    if i < n_neg + n_zero:
        return 0.0
    return sorted_vals[i - n_zero]


@njit(nogil=True)
def _quantile(sorted_vals: np.ndarray, n_neg: int, n_zero: int, n: int, q: float) -> float:
    pos = q * (n - 1)
    lo = int(np.floor(pos))
    frac = pos - lo
    a = _element(sorted_vals, n_neg, n_zero, lo)
    if frac > 0.0 and lo + 1 < n:
        b = _element(sorted_vals, n_neg, n_zero, lo + 1)
        return a + (b - a) * frac if frac < 0.5 else b - (b - a) * (1.0 - frac)
    return a


@njit(nogil=True)
def _sort_small(a: np.ndarray) -> None:
    n = a.shape[0]
    if n > 24:
        a.sort()
        return
    for i in range(1, n):
        v = a[i]
        k = i - 1
        while k >= 0 and a[k] > v:
            a[k + 1] = a[k]
            k -= 1
        a[k + 1] = v


@njit(parallel=True, nogil=True)
def sort_gene_quantiles(
    indptr: np.ndarray,
    cells: np.ndarray,
    layers: np.ndarray,
    codes: np.ndarray,
    offsets: np.ndarray,
    group_size: np.ndarray,
    qs: np.ndarray,
    out: np.ndarray,
) -> None:
    n_total = group_size.shape[0]
    for j in prange(indptr.shape[0] - 1):
        s, e = indptr[j], indptr[j + 1]
        m = e - s
        if m == 0:
            continue
        count = np.zeros(n_total, dtype=np.int64)
        start = np.empty(n_total, dtype=np.int64)
        slot = np.empty(m, dtype=np.int64)
        touched = np.empty(m, dtype=np.int64)
        bucket = np.empty(m, dtype=np.float64)
        for g in range(codes.shape[0]):
            n_touched = 0
            for k in range(s, e):
                c = codes[g, cells[k]]
                if count[c] == 0:
                    touched[n_touched] = c
                    n_touched += 1
                count[c] += 1
            offset = 0
            for i in range(n_touched):
                c = touched[i]
                start[c] = offset
                offset += count[c]
                count[c] = 0
            for k in range(s, e):
                c = codes[g, cells[k]]
                slot[k - s] = start[c] + count[c]
                count[c] += 1
            for layer in range(layers.shape[0]):
                for k in range(s, e):
                    bucket[slot[k - s]] = layers[layer, k]
                for i in range(n_touched):
                    c = touched[i]
                    n = group_size[c]
                    part = bucket[start[c] : start[c] + count[c]]
                    _sort_small(part)
                    n_stored = part.shape[0]
                    n_neg = 0
                    while n_neg < n_stored and part[n_neg] < 0.0:
                        n_neg += 1
                    n_zero = n - n_stored
                    for t in range(qs.shape[0]):
                        out[layer, j, c, t] = _quantile(part, n_neg, n_zero, n, qs[t])
            for i in range(n_touched):
                count[touched[i]] = 0


# --- the slab -------------------------------------------------------------------------------


def make_slab(
    n_genes: int, n_cells: int, density: float, n_clusters: int, n_donors: int, seed: int
) -> dict[str, np.ndarray]:
    """A gene-major slab of Poisson counts with per-gene, per-cell and per-cluster rates."""
    rng = np.random.default_rng(seed)
    cluster = rng.choice(n_clusters, n_cells, p=rng.dirichlet(np.full(n_clusters, 2.0)))
    donor = rng.integers(0, n_donors, n_cells)
    size = rng.lognormal(0.0, 0.4, n_cells)
    # log-normal gene rates; the median set so that the mean density is about `density`
    z = rng.standard_normal(n_genes)
    lo, hi = -12.0, 4.0
    for _ in range(40):  # bisect the log median rate on the expected density
        mid = (lo + hi) / 2
        lam = np.exp(mid + 1.8 * z)[:, None] * size[None, :: max(1, n_cells // 2000)]
        lo, hi = (mid, hi) if (1 - np.exp(-lam)).mean() < density else (lo, mid)
    rate = np.exp(lo + 1.8 * z)
    effect = rng.lognormal(0.0, 0.6, (n_genes, n_clusters))
    indptr = np.zeros(n_genes + 1, dtype=np.int64)
    cells, vals = [], []
    for j in range(n_genes):
        x = rng.poisson(rate[j] * size * effect[j, cluster])
        nz = np.flatnonzero(x)
        cells.append(nz.astype(np.int32))
        vals.append(x[nz].astype(np.float32))
        indptr[j + 1] = indptr[j] + len(nz)
    cells_all = np.concatenate(cells)
    raw = np.concatenate(vals).astype(np.float64)
    library = np.maximum(1.0, np.round(size * 5000.0))
    normalized = np.log1p(raw * (1e4 / library)[cells_all])
    codes = np.stack([cluster, n_clusters + cluster * n_donors + donor]).astype(np.int32)
    sizes = np.bincount(codes.ravel(), minlength=n_clusters * (1 + n_donors)).astype(np.int64)
    offsets = np.array([0, n_clusters, n_clusters * (1 + n_donors)], dtype=np.int64)
    return {
        "indptr": indptr,
        "cells": cells_all,
        "layers": np.stack([raw, normalized]),
        "codes": codes,
        "offsets": offsets,
        "sizes": sizes,
    }


def run(kernel: object, slab: dict[str, np.ndarray]) -> tuple[float, float, np.ndarray]:
    """(CPU seconds, wall seconds, result as (layer, gene, group, quantile)) of one call; the
    selection kernel takes the two layers apart and returns (layer, quantile, group, gene)."""
    n_genes, n_groups = len(slab["indptr"]) - 1, len(slab["sizes"])
    select = kernel is gene_quantiles
    out = np.zeros((2, len(QS), n_groups, n_genes) if select else (2, n_genes, n_groups, len(QS)))
    layers = slab["layers"]
    args = (layers[0], layers[1]) if select else (layers,)
    c0, w0 = time.process_time(), time.perf_counter()
    kernel(  # type: ignore[operator]
        slab["indptr"], slab["cells"], *args, slab["codes"], slab["offsets"], slab["sizes"], QS, out
    )
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return cpu, wall, out.transpose(0, 3, 2, 1) if select else out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--cells", type=int, default=200_000)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--clusters", type=int, default=24)
    parser.add_argument("--donors", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="print only; nothing in results/")
    parser.add_argument("--force", action="store_true", help="record even from a dirty tree (marked dirty)")
    args = parser.parse_args()
    try:
        machine = begin(record=not args.no_record, force=args.force)
    except DirtyTree as exc:
        sys.exit(str(exc))
    started = datetime.now(UTC)
    load_start = list(os.getloadavg())
    t0 = time.perf_counter()
    slab = make_slab(args.genes, args.cells, args.density, args.clusters, args.donors, args.seed)
    build_s = time.perf_counter() - t0
    small = make_slab(20, 2000, args.density, args.clusters, args.donors, args.seed + 1)
    kernels = {"sort": sort_gene_quantiles, "select": gene_quantiles}
    for kernel in kernels.values():  # compile (or load the cache) outside the timing
        run(kernel, small)
    best = {name: [np.inf, np.inf] for name in kernels}
    results = {}
    for _ in range(args.repeat):
        for name, kernel in kernels.items():
            cpu, wall, results[name] = run(kernel, slab)
            best[name] = [min(best[name][0], cpu), min(best[name][1], wall)]
    np.testing.assert_array_equal(results["select"], results["sort"])
    nnz = int(slab["indptr"][-1])
    record = {
        "name": "quantile kernel",
        "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "loadavg_start": load_start,
        "genes": args.genes,
        "cells": args.cells,
        "nnz": nnz,
        "density": nnz / (args.genes * args.cells),
        "groups": [args.clusters, args.clusters * args.donors],
        "layers": 2,
        "quantiles": QS.tolist(),
        "slab_build_s": round(build_s, 2),
        **{f"{name}_cpu_s": round(b[0], 4) for name, b in best.items()},
        **{f"{name}_wall_s": round(b[1], 4) for name, b in best.items()},
        "cpu_ratio_select_over_sort": round(best["select"][0] / best["sort"][0], 4),
        "wall_ratio_select_over_sort": round(best["select"][1] / best["sort"][1], 4),
        "equal_bitwise": True,
        "loadavg_end": list(os.getloadavg()),
    }
    print(json.dumps(record, indent=1))
    if not args.no_record:
        out = save(record, "quantile-kernel", stamp=started.strftime("%Y%m%dT%H%M%SZ"))
        regenerate()
        print(f"recorded {out}; benchmarks/RESULTS.md and the README regenerated")


if __name__ == "__main__":
    main()
