"""Write issue 14's Poisson benchmark matrix as an ``.h5ad`` (CSR counts, float32), in blocks.

Each cell belongs to one of ``--clusters`` clusters (uniformly at random) and one of
``--donors`` donors; gene ``g`` of a cell of cluster ``k`` is a Poisson count with rate
``λ[k, g] = exp(a + b[g] + e[k, g])``: ``b ~ N(0, 1.2)`` per gene and ``e ~ N(0, 0.6)`` per
gene and cluster, so the rates are log-normal per gene and per cluster. The offset ``a`` is
solved (bisection) so that a cell holds ``--nnz-per-cell`` non-zeros on average (the issue's
B100k: 100,000 × 30,000, 100 clusters, ~5,300 per cell, ~526 M non-zeros, ~4.2 GB).

Every count is drawn: a uniform ``u`` per (cell, gene) is zero when ``u < exp(-λ)``, else the
count is the Poisson inverse CDF at ``u``. Each cell's draws come from a generator seeded by
``(seed, cell)``, so the file does not depend on threads or blocks. The matrix is written
block by block to extendable HDF5 datasets (memory bounded by the block), ``obs``/``var`` by
anndata, into ``OUT`` in anndata's on-disk layout.

    python benchmarks/poisson.py benchmarks/data/b100k-poisson.h5ad --cells 100000 --genes 30000
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
from numba import njit, prange

BLOCK_CELLS = 2_000


def rates(n_genes: int, n_clusters: int, nnz_per_cell: float, seed: int) -> np.ndarray:
    """``λ[k, g]``, with the offset solved so that ``mean(1 - exp(-λ)) × n_genes`` is the
    wanted non-zeros per cell (clusters equally likely)."""
    rng = np.random.default_rng(seed)
    log = rng.normal(0.0, 1.2, n_genes)[None, :] + rng.normal(0.0, 0.6, (n_clusters, n_genes))
    want = nnz_per_cell / n_genes
    lo, hi = -30.0, 30.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if np.mean(-np.expm1(-np.exp(log + mid))) < want:
            lo = mid
        else:
            hi = mid
    return np.exp(log + (lo + hi) / 2)


@njit(parallel=True, cache=True)
def _draw(
    first: int, clusters: np.ndarray, lam: np.ndarray, p0: np.ndarray, seed: int, counts: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """Counts of cells ``first..first+len(clusters)-1`` into ``counts`` (cells × genes, int32);
    returns each cell's non-zeros."""
    n, n_genes = counts.shape
    nnz = np.zeros(n, dtype=np.int64)
    for i in prange(n):
        np.random.seed(seed * 1_000_003 + first + i)  # this thread's generator, for this cell
        k = clusters[i]
        m = 0
        for g in range(n_genes):
            u = np.random.random()
            zero = p0[k, g]
            if u < zero:
                counts[i, g] = 0
                continue
            rate = lam[k, g]
            if rate > 30.0:  # inversion would walk far: numba's own Poisson draw
                x = np.random.poisson(rate)
            else:
                x, p, cdf = 0, zero, zero
                while u >= cdf:
                    x += 1
                    p *= rate / x
                    cdf += p
                    if p == 0.0:
                        break
            counts[i, g] = x
            m += x != 0
        nnz[i] = m
    return nnz


def write(
    out: Path, n_cells: int, n_genes: int, n_clusters: int, n_donors: int, nnz_per_cell: float, seed: int
) -> int:
    lam = rates(n_genes, n_clusters, nnz_per_cell, seed)
    p0 = np.exp(-lam)
    rng = np.random.default_rng(seed + 1)
    clusters = rng.integers(0, n_clusters, n_cells).astype(np.int64)
    donors = rng.integers(0, n_donors, n_cells)
    obs = pd.DataFrame(
        {
            "cluster": pd.Categorical.from_codes(clusters, [f"c{k:03d}" for k in range(n_clusters)]),
            "donor": pd.Categorical.from_codes(donors, [f"D{d + 1}" for d in range(n_donors)]),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"gene{g}" for g in range(n_genes)])
    counts = np.empty((min(BLOCK_CELLS, n_cells), n_genes), dtype=np.int32)
    total = 0
    started = time.perf_counter()
    with h5py.File(out, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        x = f.create_group("X")
        x.attrs["encoding-type"], x.attrs["encoding-version"] = "csr_matrix", "0.1.0"
        x.attrs["shape"] = np.array([n_cells, n_genes], dtype=np.int64)
        data = x.create_dataset("data", (0,), dtype=np.float32, maxshape=(None,), chunks=(1 << 20,))
        indices = x.create_dataset("indices", (0,), dtype=np.int32, maxshape=(None,), chunks=(1 << 20,))
        indptr = np.zeros(n_cells + 1, dtype=np.int64)
        for first in range(0, n_cells, BLOCK_CELLS):
            stop = min(n_cells, first + BLOCK_CELLS)
            block = counts[: stop - first]
            nnz = _draw(first, clusters[first:stop], lam, p0, seed, block)
            rows, cols = np.nonzero(block)
            n = rows.size
            data.resize((total + n,))
            indices.resize((total + n,))
            data[total:] = block[rows, cols].astype(np.float32)
            indices[total:] = cols.astype(np.int32)
            indptr[first + 1 : stop + 1] = total + np.cumsum(nnz)
            total += n
            done = stop / n_cells
            print(
                f"poisson: {done:.0%} ({total:,} non-zeros, {time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
            )
        x.create_dataset("indptr", data=indptr)
        ad.io.write_elem(f, "obs", obs)
        ad.io.write_elem(f, "var", var)
        for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            ad.io.write_elem(f, key, {})
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--cells", type=int, default=100_000)
    p.add_argument("--genes", type=int, default=30_000)
    p.add_argument("--clusters", type=int, default=100)
    p.add_argument("--donors", type=int, default=8)
    p.add_argument("--nnz-per-cell", type=float, default=5_300)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if not 0 < a.nnz_per_cell < a.genes or min(a.cells, a.genes, a.clusters, a.donors) < 1:
        p.error("need positive sizes and 0 < --nnz-per-cell < --genes")
    total = write(a.out, a.cells, a.genes, a.clusters, a.donors, a.nnz_per_cell, a.seed)
    print(
        f"wrote {a.out} ({a.cells:,} cells × {a.genes:,} genes, {total:,} non-zeros, "
        f"{math.floor(total / a.cells):,} per cell)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
