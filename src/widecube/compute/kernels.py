"""Numba kernels: add a CSR block into per-(group, gene) moments, on all cores.

Threads own disjoint gene ranges, so they write without locks or private copies: for each
row a thread binary-searches its range inside the row's sorted column indices and adds only
those values. Every grouping is updated in the same sweep, so one pass serves them all.

The sweep is bound by memory latency (each value updates 3 accumulators per grouping, spread
over n_groups × n_genes arrays far larger than the caches), so rows are visited grouped by
their finest group: profiled on B100k (3 groupings, 909 groups × 30k genes), 1 thread,
18-44 ns per value in file order versus 13 ns sorted; int32 counts halve that array's traffic.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["accumulate_moments"]


@njit(parallel=True, nogil=True, cache=True)
def accumulate_moments(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    order: np.ndarray,
    codes: np.ndarray,
    col_offset: int,
    bounds: np.ndarray,
    acc_lo: int,
    sums: np.ndarray,
    sumsq: np.ndarray,
    nnz: np.ndarray,
    gmin: np.ndarray,
    gmax: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Add one block into the accumulators.

    Rows are visited in ``order`` (sorted by group, so a group's accumulator rows stay in
    cache); ``codes[g, r]`` is the stacked group index of block row ``r`` in grouping ``g``;
    ``bounds`` splits the pass's gene window (global gene numbers) into thread parts;
    accumulator column ``j`` is gene ``acc_lo + j``. Stored zeros are skipped.
    """
    n_groupings = codes.shape[0]
    for p in prange(bounds.shape[0] - 1):
        lo = bounds[p] - col_offset
        hi = bounds[p + 1] - col_offset
        for q in range(order.shape[0]):
            r = order[q]
            s = indptr[r]
            e = indptr[r + 1]
            if s == e:
                continue
            row = indices[s:e]
            a = s + np.searchsorted(row, lo)
            b = s + np.searchsorted(row, hi)
            for k in range(a, b):
                v = np.float64(data[k])
                if v == 0.0:
                    continue
                j = indices[k] + col_offset - acc_lo
                v2 = v * v
                for g in range(n_groupings):
                    c = codes[g, r]
                    sums[c, j] += v
                    sumsq[c, j] += v2
                    nnz[c, j] += 1
                if v < gmin[j]:
                    gmin[j] = v
                if v > gmax[j]:
                    gmax[j] = v
