"""Numba kernels of the two passes: scatter rows into gene buckets, then per-gene statistics.

Pass 1 (row blocks) counts each cell's library size and routes every stored value to the
bucket of its gene. Pass 2 (one gene slab at a time, all cells of a gene contiguous) computes,
for every gene, its per-group moments and exact per-group quantiles for all groupings at
once. Per gene the accumulators are a few KB, so the work is compute-bound, not cache-bound
(the row-major alternative updated n_groups × n_genes arrays far larger than the caches).
"""

from __future__ import annotations

import ctypes

import numpy as np
from numba import njit, prange
from numba.extending import get_cython_function_address

__all__ = [
    "BAD_COLUMN",
    "BAD_POINTER",
    "BAD_ROWS",
    "SCATTER_OK",
    "gene_moments",
    "log_normalize",
    "gene_quantiles",
    "scatter_block",
    "sort_bucket",
    "welch_t_p",
]


SCATTER_OK, BAD_POINTER, BAD_COLUMN, BAD_ROWS = 0, 1, 2, 3
"""What :func:`scatter_block` found: nothing, a row pointer out of order or past the stored
values, a column index outside the genes, rows outside the cells."""


@njit(nogil=True, cache=True)
def scatter_block(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, row_start: int, col_start: int,
    width: int, n_buckets: int, n_genes: int, cell_total: np.ndarray, cell_nnz: np.ndarray,
    out_gene: np.ndarray, out_cell: np.ndarray, out_val: np.ndarray, bucket_ptr: np.ndarray,
) -> tuple[int, int, int]:  # pragma: no cover - compiled  # fmt: skip
    """Group a CSR block's non-zeros by gene bucket (stable, so cells stay in order).

    Fills ``out_*[bucket_ptr[b]:bucket_ptr[b+1]]`` with bucket ``b``'s values and adds each
    row's sum and non-zero count to ``cell_total``/``cell_nnz``. Returns ``(flags, error,
    at)``: flags bit 0 set if any value is negative, bit 1 if any value is not an integer.

    The readers check every block before it gets here; these checks are the last line of
    defence, and cannot be compiled out: before anything is written, every pointer and
    index is checked against the arrays and the declared shape (numba does not check
    bounds, and a negative index wraps around). On a violation nothing is written and
    ``error`` says which (``BAD_POINTER``: ``at`` is the block's row; ``BAD_COLUMN``: ``at``
    is the stored position; ``BAD_ROWS``), for the caller to raise.
    """
    n_rows = indptr.shape[0] - 1
    n_stored = min(indices.shape[0], data.shape[0])
    if n_rows < 0 or row_start < 0 or row_start + n_rows > cell_total.shape[0] \
            or row_start + n_rows > cell_nnz.shape[0]:  # fmt: skip
        return 0, BAD_ROWS, 0
    counts = np.zeros(n_buckets + 1, dtype=np.int64)
    for r in range(n_rows):
        a = indptr[r]
        b = indptr[r + 1]
        if a < 0 or b < a or b > n_stored:
            return 0, BAD_POINTER, r
        for k in range(a, b):
            gene = indices[k] + col_start
            if gene < 0 or gene >= n_genes:
                return 0, BAD_COLUMN, k
            if np.float64(data[k]) != 0.0:
                counts[gene // width + 1] += 1
    if counts.sum() > min(out_gene.shape[0], out_cell.shape[0], out_val.shape[0]) \
            or bucket_ptr.shape[0] != n_buckets + 1:  # fmt: skip
        return 0, BAD_POINTER, 0
    for b in range(n_buckets):
        counts[b + 1] += counts[b]
    bucket_ptr[:] = counts
    fill = counts[:n_buckets].copy()
    flags = 0
    for r in range(n_rows):
        cell = r + row_start
        for k in range(indptr[r], indptr[r + 1]):
            v = np.float64(data[k])
            if v == 0.0:
                continue
            gene = indices[k] + col_start
            b = gene // width
            p = fill[b]
            fill[b] += 1
            out_gene[p] = gene
            out_cell[p] = cell
            out_val[p] = data[k]
            cell_total[cell] += v
            cell_nnz[cell] += 1
            if v < 0.0:
                flags |= 1
            if v != np.floor(v):
                flags |= 2
    return flags, SCATTER_OK, 0


@njit(nogil=True, cache=True)
def sort_bucket(
    gene: np.ndarray, cell: np.ndarray, val: np.ndarray, lo: int, width: int, n_cells: int,
    indptr: np.ndarray, cells: np.ndarray, vals: np.ndarray,
) -> int:  # pragma: no cover - compiled  # fmt: skip
    """Counting-sort a bucket by gene into CSC order (cells stay in file order per gene).

    The bucket comes back from the job's own spill files; a gene outside ``lo..lo+width-1``
    or a cell outside ``0..n_cells-1`` (a damaged file) returns its position and writes
    nothing, so the per-gene kernels that index by cell never see it; -1 when all is well.
    """
    n = min(gene.shape[0], cell.shape[0], val.shape[0], cells.shape[0], vals.shape[0])
    if n != gene.shape[0] or indptr.shape[0] != width + 1:
        return 0
    for k in range(n):
        if gene[k] < lo or gene[k] >= lo + width or cell[k] < 0 or cell[k] >= n_cells:
            return k
    indptr[:] = 0
    for k in range(n):
        indptr[gene[k] - lo + 1] += 1
    for j in range(width):
        indptr[j + 1] += indptr[j]
    fill = indptr[:width].copy()
    for k in range(n):
        j = gene[k] - lo
        p = fill[j]
        fill[j] += 1
        cells[p] = cell[k]
        vals[p] = val[k]
    return -1


@njit(parallel=True, nogil=True, cache=True)
def gene_moments(
    indptr: np.ndarray, cells: np.ndarray, vals: np.ndarray, codes: np.ndarray,
    n_groups: int, out_sum: np.ndarray, out_sumsq: np.ndarray, out_nnz: np.ndarray,
    out_min: np.ndarray, out_max: np.ndarray,
) -> None:  # pragma: no cover - compiled  # fmt: skip
    """Per gene ``j`` of a slab: sum, sum of squares and non-zeros per stacked group.

    ``codes[g, cell]`` is the stacked group of a cell in grouping ``g``; outputs are
    gene-major ``(n_genes_in_slab, n_groups)``; ``out_min``/``out_max`` are over stored values.
    """
    n_groupings = codes.shape[0]
    for j in prange(indptr.shape[0] - 1):
        s_row = out_sum[j]
        q_row = out_sumsq[j]
        n_row = out_nnz[j]
        lo = np.inf
        hi = -np.inf
        for k in range(indptr[j], indptr[j + 1]):
            v = np.float64(vals[k])
            c = cells[k]
            v2 = v * v
            for g in range(n_groupings):
                code = codes[g, c]
                s_row[code] += v
                q_row[code] += v2
                n_row[code] += 1
            lo = min(lo, v)
            hi = max(hi, v)
        out_min[j] = lo
        out_max[j] = hi


@njit(nogil=True, cache=True)
def _element(sorted_vals: np.ndarray, n_neg: int, n_zero: int, i: int) -> float:  # pragma: no cover
    if i < n_neg:
        return sorted_vals[i]
    if i < n_neg + n_zero:
        return 0.0
    return sorted_vals[i - n_zero]


@njit(nogil=True, cache=True)
def _quantile(sorted_vals: np.ndarray, n_neg: int, n_zero: int, n: int,
              q: float) -> float:  # pragma: no cover - compiled  # fmt: skip
    """``numpy.quantile(method="linear")`` of a group of ``n`` values: the stored ones, sorted
    (its ``n_neg`` negatives first), and ``n_zero`` implicit zeros. numpy's own interpolation
    formula (the two branches keep it monotone), so results match it to the last bit. The
    ingest's kernel and the on-the-fly aggregate both call this one."""
    pos = q * (n - 1)
    lo = int(np.floor(pos))
    frac = pos - lo
    a = _element(sorted_vals, n_neg, n_zero, lo)
    if frac > 0.0 and lo + 1 < n:
        b = _element(sorted_vals, n_neg, n_zero, lo + 1)
        return a + (b - a) * frac if frac < 0.5 else b - (b - a) * (1.0 - frac)
    return a


@njit(nogil=True, cache=True)
def _sort_small(a: np.ndarray) -> None:  # pragma: no cover - compiled
    """Insertion sort for the few values a (gene, group) usually has; np.sort above 24."""
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


@njit(parallel=True, nogil=True, cache=True)
def gene_quantiles(
    indptr: np.ndarray, cells: np.ndarray, layers: np.ndarray, codes: np.ndarray,
    offsets: np.ndarray, group_size: np.ndarray, qs: np.ndarray, out: np.ndarray,
) -> None:  # pragma: no cover - compiled  # fmt: skip
    """Exact per-group quantiles (numpy's "linear" method), implicit zeros included.

    ``layers[l]`` are the slab's stored values in layer ``l``; ``codes[g, cell]`` the stacked
    group of a cell in grouping ``g`` (groups ``offsets[g]..offsets[g+1]-1``); ``group_size``
    the cells per stacked group (all > 0); ``out`` is ``(n_layers, n_genes_in_slab,
    n_stacked_groups, len(qs))`` and must be zeroed: a group without stored values keeps its
    zeros. Per gene and grouping the cells are bucketed by group once, then each layer's
    values are placed, sorted per group and read off as negatives, zeros, positives.
    """
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


def cell_scale(total_counts: np.ndarray, target_sum: float) -> np.ndarray:
    """Per cell ``target_sum / library size`` (0 for an empty cell): the factor
    :func:`log_normalize` applies, for the ingest and for on-the-fly queries alike."""
    total = np.asarray(total_counts, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(total > 0, target_sum / total, 0.0)


@njit(parallel=True, nogil=True, cache=True)
def log_normalize(cells: np.ndarray, vals: np.ndarray, scale: np.ndarray, out: np.ndarray) -> None:
    """``out = log1p(vals * scale[cells])``: counts per ``target_sum``, then log1p."""  # pragma: no cover
    for k in prange(vals.shape[0]):
        out[k] = np.log1p(np.float64(vals[k]) * scale[cells[k]])


# scipy's own Student t CDF, called from numba (a C function pointer of scipy.special's Cython
# API), so p-values run on all cores without leaving nopython mode.
_stdtr = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double, ctypes.c_double)(
    get_cython_function_address("scipy.special.cython_special", "__pyx_fuse_0stdtr")
)


@njit(parallel=True, nogil=True, cache=False)
def welch_t_p(
    n_in: np.ndarray, s_in: np.ndarray, sq_in: np.ndarray, n_all: float,
    s_all: np.ndarray, sq_all: np.ndarray, t_out: np.ndarray, p_out: np.ndarray,
) -> None:  # pragma: no cover - compiled  # fmt: skip
    """Welch's t and two-sided p of each group (rows) against the rest, per gene (columns).

    ``n_in`` is cells per group; ``s_all``/``sq_all`` are the per-gene totals over all cells.
    p is 1 where t is not finite or 0 (no evidence), as scanpy reports it.
    """
    for g in prange(s_in.shape[0]):
        a_n = n_in[g]
        b_n = n_all - a_n
        for j in range(s_in.shape[1]):
            s_a = s_in[g, j]
            s_b = s_all[j] - s_a
            m_a = s_a / a_n
            m_b = s_b / b_n
            v_a = max(sq_in[g, j] - s_a * m_a, 0.0) / (a_n - 1.0)
            v_b = max(sq_all[j] - sq_in[g, j] - s_b * m_b, 0.0) / (b_n - 1.0)
            a = v_a / a_n
            b = v_b / b_n
            se2 = a + b
            if se2 > 0.0:
                t = (m_a - m_b) / np.sqrt(se2)
            elif se2 == 0.0 and m_a != m_b:
                t = np.inf if m_a > m_b else -np.inf
            else:  # no spread and no difference, or undefined (a group of one cell)
                t = np.nan
            t_out[g, j] = t
            if np.isfinite(t) and t != 0.0:
                dof = se2 * se2 / (a * a / (a_n - 1.0) + b * b / (b_n - 1.0))
                p_out[g, j] = 2.0 * _stdtr(dof, -abs(t))
            else:
                p_out[g, j] = 1.0
