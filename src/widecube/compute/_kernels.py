"""Numba kernels of pass 2: spill records sorted into gene slabs, then per-gene statistics.

Pass 1's kernels (row blocks routed to gene buckets) are in :mod:`._route`. Pass 2 (one gene
slab at a time, all cells of a gene contiguous) computes,
for every gene, its per-group moments and exact per-group quantiles for all groupings at
once. Per gene the accumulators are a few KB, so the work is compute-bound, not cache-bound
(the row-major alternative updated n_groups × n_genes arrays far larger than the caches).

The ``prange`` kernels run on numba's OpenMP layer, whose threads by default spin for a while
after each parallel loop, waiting for the next: between kernels (numpy, Python, zarr's
compression and the next slab's reading on other threads) they burned the cores those threads
needed. Unless the environment says otherwise, they sleep at once (``OMP_WAIT_POLICY=passive``,
read by libgomp when numba first loads it, after this import). perf over pass 2 of the demo
B100k: libgomp's spinning was 7.6 % of the samples, and no sample after; interleaved ingests
(grouped by cluster) took 0-3 s less of 30, within this VM's noise.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, cast

import numpy as np
from llvmlite.binding import add_symbol
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

from ._select import COUNT_RANGE, group_quantiles, quantile_scratch, top_rank

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before numba loads libgomp (first prange)

__all__ = [
    "RECORD_HEADER",
    "RECORD_OK",
    "RECORD_OVERFLOW",
    "RECORD_RANGE",
    "RECORD_SHORT",
    "sort_records",
    "gene_moments",
    "log1p_table",
    "log_normalize",
    "pad8",
    "sections",
    "gene_quantiles",
    "group_quantiles",
    "quantile_scratch",
    "welch_t_p",
]


RECORD_OK, RECORD_HEADER, RECORD_SHORT, RECORD_OVERFLOW, RECORD_RANGE = -1, 0, 1, 2, 3
"""What :func:`sort_records` (and the passes it makes) found: every record read, a header
that is not one, a record cut short, more values than the outputs hold, a gene or cell out of
range."""


@njit(nogil=True, cache=True)
def pad8(n: int) -> int:  # pragma: no cover - compiled
    """``n`` bytes rounded up to a multiple of 8 (a spill record's sections are aligned so)."""
    return n + (-n) % 8


@njit(nogil=True, cache=True)
def _count_genes(
    genes: np.ndarray, base: int, lo: int, width: int, indptr: np.ndarray
) -> int:  # pragma: no cover - compiled
    """Add one record's genes to the counts ``indptr[1:]``; the first out of range, or -1."""
    for i in range(genes.shape[0]):
        j = genes[i] + base - lo
        if j < 0 or j >= width:
            return i
        indptr[j + 1] += 1
    return -1


@njit(nogil=True, cache=True)
def _place_record(
    genes: np.ndarray,
    gene_base: int,
    cells_in: np.ndarray,
    cell_base: int,
    values: np.ndarray,
    lo: int,
    n_cells: int,
    fill: np.ndarray,
    cells: np.ndarray,
    vals: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """Place one record's values at their genes' next positions; the first cell out of range,
    or -1."""
    for i in range(genes.shape[0]):
        c = cells_in[i] + cell_base
        if c < 0 or c >= n_cells:
            return i
        j = genes[i] + gene_base - lo
        p = fill[j]
        fill[j] += 1
        cells[p] = c
        vals[p] = values[i]
    return -1


@njit(nogil=True, cache=True, inline="always")
def _index_bytes(code: int) -> int:  # pragma: no cover - compiled
    """Bytes of an offset of index code ``code`` (``_buckets.INDEX_TYPES``: 16, 32, 8 bits)."""
    return 2 if code == 0 else 4 if code == 1 else 1


@njit(nogil=True, cache=True)
def sections(
    buf: np.ndarray, at: int, magic: int
) -> tuple[int, int, int, int, int, int, int, int]:  # pragma: no cover - compiled
    """A record's header at ``at`` (its 32 bytes must be in ``buf``): ``(n, gene code, cell
    code, value code, gene base, cell base, where its genes start, where it ends)``; n is -1
    for a header that is not one (not ``magic``, an unknown code, a negative count)."""
    if buf[at : at + 4].view(np.uint32)[0] != magic:
        return -1, 0, 0, 0, 0, 0, 0, 0
    g_code, c_code, v_code = buf[at + 4], buf[at + 5], buf[at + 6]
    head = buf[at + 8 : at + 32].view(np.int64)
    n = head[0]
    if g_code > 2 or c_code > 2 or v_code > 3 or n < 0:
        return -1, 0, 0, 0, 0, 0, 0, 0
    g_bytes = pad8(n * _index_bytes(g_code))
    c_bytes = pad8(n * _index_bytes(c_code))
    v_bytes = pad8(n * (1 if v_code == 0 else 2 if v_code == 1 else 4 if v_code == 2 else 8))
    return n, g_code, c_code, v_code, head[1], head[2], at + 32, at + 32 + g_bytes + c_bytes + v_bytes


@njit(nogil=True, cache=True)
def _place_v(
    g: np.ndarray,
    gb: int,
    c: np.ndarray,
    cb: int,
    buf: np.ndarray,
    v_code: int,
    p: int,
    n: int,
    lo: int,
    n_cells: int,
    fill: np.ndarray,
    cells: np.ndarray,
    vals: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """:func:`_place_record` with the record's values (at ``p``) viewed in their type."""
    if v_code == 0:
        return _place_record(g, gb, c, cb, buf[p : p + n], lo, n_cells, fill, cells, vals)
    if v_code == 1:
        return _place_record(g, gb, c, cb, buf[p : p + 2 * n].view(np.uint16), lo, n_cells, fill, cells, vals)
    if v_code == 2:
        return _place_record(
            g, gb, c, cb, buf[p : p + 4 * n].view(np.float32), lo, n_cells, fill, cells, vals
        )
    return _place_record(g, gb, c, cb, buf[p : p + 8 * n].view(np.float64), lo, n_cells, fill, cells, vals)


@njit(nogil=True, cache=True)
def _place_c(
    g: np.ndarray,
    gb: int,
    buf: np.ndarray,
    c_code: int,
    cb: int,
    v_code: int,
    p: int,
    n: int,
    lo: int,
    n_cells: int,
    fill: np.ndarray,
    cells: np.ndarray,
    vals: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """:func:`_place_v` with the record's cells (at ``p``) viewed in their type."""
    if c_code == 2:
        c8 = buf[p : p + n]
        return _place_v(g, gb, c8, cb, buf, v_code, p + pad8(n), n, lo, n_cells, fill, cells, vals)
    if c_code == 0:
        c16 = buf[p : p + 2 * n].view(np.uint16)
        return _place_v(g, gb, c16, cb, buf, v_code, p + pad8(2 * n), n, lo, n_cells, fill, cells, vals)
    c32 = buf[p : p + 4 * n].view(np.uint32)
    return _place_v(g, gb, c32, cb, buf, v_code, p + pad8(4 * n), n, lo, n_cells, fill, cells, vals)


@njit(nogil=True, cache=True)
def count_records(
    buf: np.ndarray, magic: int, lo: int, width: int, indptr: np.ndarray
) -> tuple[int, int, int]:  # pragma: no cover - compiled
    """The first pass of a bucket's counting sort by gene, over one of its files' bytes
    (``buf``, 8-byte aligned; the layout is :mod:`~._buckets`'s): adds each record's genes to
    ``indptr[1:]``. Returns ``(values, status, at)``: the values counted, and
    :data:`RECORD_OK` or what was wrong (``at``: the byte where the bad record starts;
    :data:`RECORD_RANGE`: a gene outside ``lo..lo+width-1``, ``values`` its position)."""
    size = buf.shape[0]
    total = 0
    at = 0
    while at < size:
        if at + 32 > size:
            return total, RECORD_SHORT, at
        n, g_code, _, _, gene_base, _, p, end = sections(buf, at, magic)
        if n < 0:
            return total, RECORD_HEADER, at
        if end > size:
            return total, RECORD_SHORT, at
        if g_code == 2:
            bad = _count_genes(buf[p : p + n], gene_base, lo, width, indptr)
        elif g_code == 0:
            bad = _count_genes(buf[p : p + 2 * n].view(np.uint16), gene_base, lo, width, indptr)
        else:
            bad = _count_genes(buf[p : p + 4 * n].view(np.uint32), gene_base, lo, width, indptr)
        if bad >= 0:
            return total + bad, RECORD_RANGE, at
        total += n
        at = end
    return total, RECORD_OK, 0


@njit(nogil=True, cache=True)
def place_records(
    buf: np.ndarray,
    magic: int,
    lo: int,
    n_cells: int,
    fill: np.ndarray,
    cells: np.ndarray,
    vals: np.ndarray,
) -> tuple[int, int, int]:  # pragma: no cover - compiled
    """The second pass over one file's bytes, after :func:`count_records` passed over every
    file of the bucket: places each value at ``fill[gene - lo]`` (then advanced), so cells
    stay in file order per gene. Returns ``(values, status, at)`` as :func:`count_records`
    (:data:`RECORD_RANGE`: a cell outside ``0..n_cells-1``)."""
    size = buf.shape[0]
    done = 0
    at = 0
    while at < size:
        n, g_code, c_code, v_code, gene_base, cell_base, p, end = sections(buf, at, magic)
        if g_code == 2:
            g8 = buf[p : p + n]
            bad = _place_c(
                g8, gene_base, buf, c_code, cell_base, v_code, p + pad8(n), n, lo, n_cells, fill, cells, vals
            )
        elif g_code == 0:
            g16 = buf[p : p + 2 * n].view(np.uint16)
            q = p + pad8(2 * n)
            bad = _place_c(
                g16, gene_base, buf, c_code, cell_base, v_code, q, n, lo, n_cells, fill, cells, vals
            )
        else:
            g32 = buf[p : p + 4 * n].view(np.uint32)
            q = p + pad8(4 * n)
            bad = _place_c(
                g32, gene_base, buf, c_code, cell_base, v_code, q, n, lo, n_cells, fill, cells, vals
            )
        if bad >= 0:
            return done + bad, RECORD_RANGE, at
        done += n
        at = end
    return done, RECORD_OK, 0


def sort_records(
    bufs: list[np.ndarray],
    magic: int,
    lo: int,
    width: int,
    n_cells: int,
    indptr: np.ndarray,
    cells: np.ndarray,
    vals: np.ndarray,
) -> tuple[int, int, int, int]:
    """Counting-sort a bucket's records by gene into CSC order, straight from the bytes of
    its files (``bufs``, in row order: each mapped or read on its own, never joined): one
    pass over every file's headers and genes counts, a second places each value. No widened
    copy of the bucket is made.

    Returns ``(values, status, file, at)``: the values counted, and :data:`RECORD_OK` or
    what was wrong in file ``file`` at byte ``at`` (see :func:`count_records`), so the
    per-gene kernels that index by cell never see a damaged file.
    """
    width_ok = indptr.shape[0] == width + 1
    if not width_ok:
        return 0, RECORD_OVERFLOW, 0, 0
    indptr[:] = 0
    total = 0
    for i, buf in enumerate(bufs):
        got, status, at = count_records(buf, magic, lo, width, indptr)
        if status != RECORD_OK:
            return total + got, status, i, at
        total += got
    if total > min(cells.shape[0], vals.shape[0]):
        return total, RECORD_OVERFLOW, 0, 0
    np.cumsum(indptr, out=indptr)
    fill = indptr[:width].copy()
    done = 0
    for i, buf in enumerate(bufs):
        got, status, at = place_records(buf, magic, lo, n_cells, fill, cells, vals)
        if status != RECORD_OK:
            return done + got, status, i, at
        done += got
    return total, RECORD_OK, 0, 0


_RANGES = 64
"""Ranges of genes a slab's per-gene kernels are cut into (:func:`gene_ranges`): many per
thread, claimed one at a time (:func:`_claim`), scratch allocated once per range, not per gene."""


@intrinsic
def _claim_next(typingctx: Any, counter: Any) -> Any:  # pragma: no cover - compiled
    """``counter[0] += 1`` as one atomic step, returning the value before: the next range of
    work for the thread that asks.

    numba deals a ``prange``'s iterations out in equal consecutive shares once, at the start
    (its OpenMP layer ignores ``numba.set_parallel_chunksize``): when one share took longer
    (costlier genes, or a thread that a writer or the next slab's reader took the core from),
    the other thread finished and its core sat idle. Sampled every 5 ms over pass 2 of the
    Poisson B100k, one thread alone inside ``gene_quantiles``, ``gene_moments`` or
    ``welch_t_p`` was 8.7 % of the time. Each iteration of a claiming kernel's ``prange``
    claims ranges until none is left: a thread's first iteration works until every range is
    claimed, its others find none, and both cores stay busy to the last range (no thread
    count needed: ``numba.get_num_threads`` in a kernel would keep numba from caching it)."""
    sig = types.int64(counter)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        first = cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
            context, builder, array_type, array, [context.get_constant(types.intp, 0)]
        )
        return builder.atomic_rmw("add", first, context.get_constant(types.int64, 1), "seq_cst")

    return sig, codegen


_claim = cast("Callable[[np.ndarray], int]", _claim_next)
""":func:`_claim_next` as kernels call it: ``_claim(counter)``."""


@njit(nogil=True, cache=True)
def gene_ranges(indptr: np.ndarray, n_ranges: int) -> np.ndarray:  # pragma: no cover - compiled
    """Bounds of ``n_ranges`` consecutive ranges of a slab's genes holding about as many
    stored values each (``gene_ranges[r]..gene_ranges[r+1]-1``; a gene holding more than a
    share makes some empty). numba deals a ``prange``'s iterations out to its threads in
    equal consecutive shares: ranges of equal gene counts left one core idle while the other
    finished the half of the slab with the busier genes (up to 10 % more values measured)."""
    n_genes = indptr.shape[0] - 1
    bounds = np.zeros(n_ranges + 1, dtype=np.int64)
    if n_ranges == 0:
        return bounds
    total = indptr[n_genes] - indptr[0]
    j = 0
    for r in range(n_ranges + 1):
        target = indptr[0] + total * r // n_ranges
        while j < n_genes and indptr[j + 1] <= target:
            j += 1
        bounds[r] = j
    bounds[0], bounds[n_ranges] = 0, n_genes
    return bounds


@njit(nogil=True, cache=True)
def _gene_moments(
    j: int,
    indptr: np.ndarray,
    cells: np.ndarray,
    vals: np.ndarray,
    scale: np.ndarray,
    table: np.ndarray,
    codes: np.ndarray,
    out_sum: np.ndarray,
    out_sumsq: np.ndarray,
    out_nnz: np.ndarray,
    out_min: np.ndarray,
    out_max: np.ndarray,
    normalized: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """:func:`gene_moments` of gene ``j``."""
    n_groupings = codes.shape[0]
    small = np.float64(table.shape[1])
    every = out_sum.shape[2] - 1
    two = out_sum.shape[0] > 1
    s_row, q_row = out_sum[0, j], out_sumsq[0, j]
    s2_row, q2_row = out_sum[-1, j], out_sumsq[-1, j]
    n_row = out_nnz[j]
    s_row[:] = 0.0
    q_row[:] = 0.0
    s2_row[:] = 0.0
    q2_row[:] = 0.0
    n_row[:] = 0
    lo, hi, lo2, hi2 = np.inf, -np.inf, np.inf, -np.inf
    s, q, s2, q2 = 0.0, 0.0, 0.0, 0.0
    if two:
        for k in range(indptr[j], indptr[j + 1]):
            v = np.float64(vals[k])
            c = cells[k]
            if v >= 1.0 and v <= small and v == np.floor(v):
                x = table[c, np.int64(v) - 1]  # the same log1p of the same product, computed once
            else:
                x = np.log1p(v * scale[c])
            normalized[k] = x
            v2 = v * v
            x2 = x * x
            for g in range(n_groupings):
                code = codes[g, c]
                s_row[code] += v
                q_row[code] += v2
                n_row[code] += 1
                s2_row[code] += x
                q2_row[code] += x2
            s, q, s2, q2 = s + v, q + v2, s2 + x, q2 + x2
            lo, hi = min(lo, v), max(hi, v)
            lo2, hi2 = min(lo2, x), max(hi2, x)
        s2_row[every], q2_row[every] = s2, q2
        out_min[1, j], out_max[1, j] = lo2, hi2
    else:
        for k in range(indptr[j], indptr[j + 1]):
            v = np.float64(vals[k])
            c = cells[k]
            v2 = v * v
            for g in range(n_groupings):
                code = codes[g, c]
                s_row[code] += v
                q_row[code] += v2
                n_row[code] += 1
            s, q = s + v, q + v2
            lo, hi = min(lo, v), max(hi, v)
    s_row[every], q_row[every] = s, q
    n_row[every] = indptr[j + 1] - indptr[j]
    out_min[0, j], out_max[0, j] = lo, hi


@njit(parallel=True, nogil=True, cache=True)
def gene_moments(
    indptr: np.ndarray,
    cells: np.ndarray,
    vals: np.ndarray,
    scale: np.ndarray,
    table: np.ndarray,
    codes: np.ndarray,
    out_sum: np.ndarray,
    out_sumsq: np.ndarray,
    out_nnz: np.ndarray,
    out_min: np.ndarray,
    out_max: np.ndarray,
    normalized: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Per gene ``j`` of a slab: sum, sum of squares and non-zeros per stacked group, of the
    stored values and, in the same pass, of their normalized layer.

    ``codes[g, cell]`` is the stacked group of a cell in grouping ``g``; the last stacked
    group, after every grouping's, is every cell (the gene's totals, added in registers
    rather than in memory). ``out_sum`` and ``out_sumsq`` are ``(n_layers, n_genes_in_slab,
    n_groups)``, ``out_min``/``out_max`` ``(n_layers, n_genes_in_slab)`` (over stored
    values), ``out_nnz`` ``(n_genes_in_slab, n_groups)`` (stored values, the same in both
    layers); every entry is written. With two layers, layer 1 is :func:`log_normalize`'s
    ``log1p(vals · scale[cells])``, also written to ``normalized`` (as long as ``vals``):
    one pass over the slab instead of three; ``table`` is :func:`log1p_table` of ``scale`` (a
    stored count of 1 to ``table.shape[1]`` takes its log1p from there: the same bits, without
    a libm call for most values of a count matrix; ``(n, 0)`` for none). Every group's values
    are added in slab order, as one pass per layer and grouping would add them: the same sums
    to the bit. Genes are cut into :data:`_RANGES` ranges of about as many values
    (:func:`gene_ranges`), claimed by the threads one at a time (:func:`_claim`).
    """
    n_genes = indptr.shape[0] - 1
    n_ranges = min(n_genes, _RANGES)
    bounds = gene_ranges(indptr, n_ranges)
    claimed = np.zeros(1, dtype=np.int64)
    for _ in prange(n_ranges):
        r = _claim(claimed)
        while r < n_ranges:
            for j in range(bounds[r], bounds[r + 1]):
                _gene_moments(
                    j,
                    indptr,
                    cells,
                    vals,
                    scale,
                    table,
                    codes,
                    out_sum,
                    out_sumsq,
                    out_nnz,
                    out_min,
                    out_max,
                    normalized,
                )
            r = _claim(claimed)


@njit(nogil=True, cache=True)
def _any_negative(values: np.ndarray, s: int, e: int) -> bool:  # pragma: no cover - compiled
    for k in range(s, e):  # noqa: SIM110 - a plain loop compiles to the early exit
        if values[k] < 0.0:
            return True
    return False


@njit(nogil=True, cache=True)
def _place(
    values: np.ndarray,
    s: int,
    e: int,
    group: np.ndarray,
    start: np.ndarray,
    fill: np.ndarray,
    negative: np.ndarray,
    bucket: np.ndarray,
    slot: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Copy the stored values ``values[s:e]`` of the groups to select in (``start >= 0``)
    into their range of ``bucket`` (as float64), counting each group's negatives; where each
    went (-1: not copied) in ``slot``."""
    for k in range(s, e):
        c = group[k - s]
        if start[c] >= 0:
            v = np.float64(values[k])
            p = fill[c]
            bucket[p] = v
            slot[k - s] = p
            fill[c] = p + 1
            negative[c] += v < 0.0
        else:
            slot[k - s] = -1


@njit(nogil=True, cache=True)
def _place_at(
    values: np.ndarray, s: int, e: int, slot: np.ndarray, bucket: np.ndarray
) -> None:  # pragma: no cover
    """Copy ``values[s:e]`` to the places :func:`_place` gave another layer's values."""
    for k in range(s, e):
        p = slot[k - s]
        if p >= 0:
            bucket[p] = values[k]


@njit(parallel=True, nogil=True, cache=True)
def gene_quantiles(
    indptr: np.ndarray,
    cells: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    codes: np.ndarray,
    offsets: np.ndarray,
    group_size: np.ndarray,
    qs: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Exact per-group quantiles (numpy's "linear" method), implicit zeros included.

    ``first`` are the slab's stored values (float32 or float64), ``second`` the same entries
    in a second layer (float64; read only when ``out`` has two layers, may be empty
    otherwise); ``codes[g, cell]`` the stacked group of a cell in grouping ``g`` (groups
    ``offsets[g]..offsets[g+1]-1``); ``group_size`` the cells per stacked group (all > 0).
    ``out`` is ``(n_layers, len(qs), n_stacked_groups, n_genes_in_slab)`` (float32 or
    float64; each value rounded once, from the float64 quantile), every entry written, so
    ``out[l, t, a:b]`` is one layer's quantile ``t`` of groups ``a..b-1``, groups × genes.

    Per gene and grouping the values are counted by group once; per layer, when the gene
    has no negative value there, only the groups whose highest needed rank lies above their
    zeros get their values placed (a sparse gene: none); with negatives every group does,
    counting its negatives. Then :func:`group_quantiles` selects only the order statistics
    the quantiles need. Genes are cut into :data:`_RANGES` ranges of about as many values
    (:func:`gene_ranges`), claimed by the threads one at a time (:func:`_claim`), each with
    its scratch allocated once.
    """
    n_genes = indptr.shape[0] - 1
    n_total = group_size.shape[0]
    n_q = qs.shape[0]
    n_layers = out.shape[0]
    n_ranges = min(n_genes, _RANGES)
    bounds = gene_ranges(indptr, n_ranges)
    claimed = np.zeros(1, dtype=np.int64)
    for _ in prange(n_ranges):
        r = _claim(claimed)
        while r < n_ranges:
            j0, j1 = bounds[r], bounds[r + 1]
            longest = 0
            for j in range(j0, j1):
                longest = max(longest, indptr[j + 1] - indptr[j])
            count = np.zeros(n_total, dtype=np.int64)
            negative = np.zeros(n_total, dtype=np.int64)
            start = np.empty(n_total, dtype=np.int64)
            fill = np.empty(n_total, dtype=np.int64)
            touched = np.empty(longest, dtype=np.int64)
            group = np.empty(longest, dtype=np.int64)
            slot = np.empty(longest, dtype=np.int64)
            bucket = np.empty(longest, dtype=np.float64)
            ranks = np.empty(4 * n_q + 4, dtype=np.int64)
            stack = np.empty((130, 5), dtype=np.int64)
            hist = np.empty(COUNT_RANGE, dtype=np.int64)
            result = np.empty(n_q, dtype=np.float64)
            for j in range(j0, j1):
                for layer in range(n_layers):
                    for t in range(n_q):
                        for c in range(n_total):
                            out[layer, t, c, j] = 0.0
                s, e = indptr[j], indptr[j + 1]
                if e == s:
                    continue
                has_negative = _any_negative(first, s, e)
                has_negative_2 = n_layers > 1 and _any_negative(second, s, e)
                for g in range(codes.shape[0]):
                    n_touched = 0
                    for k in range(s, e):
                        c = codes[g, cells[k]]
                        group[k - s] = c
                        if count[c] == 0:
                            touched[n_touched] = c
                            n_touched += 1
                        count[c] += 1
                    offset = 0
                    for layer in range(n_layers):
                        negatives = has_negative if layer == 0 else has_negative_2
                        if layer == 1 and not has_negative and not negatives:
                            # no negatives in either layer: the same groups as layer 0, each
                            # value to the place its layer-0 value took
                            if offset == 0:
                                continue
                            _place_at(second, s, e, slot, bucket)
                        else:
                            offset = 0
                            for i in range(n_touched):
                                c = touched[i]
                                n = group_size[c]
                                negative[c] = 0
                                if negatives or top_rank(n, qs) >= n - count[c]:
                                    start[c] = offset
                                    fill[c] = offset
                                    offset += count[c]
                                else:
                                    start[c] = -1
                            if offset == 0:
                                continue
                            if layer == 0:
                                _place(first, s, e, group, start, fill, negative, bucket, slot)
                            else:
                                _place(second, s, e, group, start, fill, negative, bucket, slot)
                        for i in range(n_touched):
                            c = touched[i]
                            if start[c] >= 0:
                                group_quantiles(
                                    bucket[start[c] : fill[c]],
                                    group_size[c],
                                    negative[c],
                                    qs,
                                    result,
                                    ranks,
                                    stack,
                                    hist,
                                )
                                for t in range(n_q):
                                    out[layer, t, c, j] = result[t]
                    for i in range(n_touched):
                        count[touched[i]] = 0
            r = _claim(claimed)


def cell_scale(total_counts: np.ndarray, target_sum: float) -> np.ndarray:
    """Per cell ``target_sum / library size`` (0 for an empty cell): the factor
    :func:`log_normalize` applies, for the ingest and for on-the-fly queries alike."""
    total = np.asarray(total_counts, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(total > 0, target_sum / total, 0.0)


@njit(parallel=True, nogil=True, cache=True)
def log1p_table(scale: np.ndarray, k: int) -> np.ndarray:
    """``out[c, i] = log1p((i + 1) · scale[c])``: the normalized value of a count of ``i + 1``
    in cell ``c``, by the very expression :func:`gene_moments` evaluates (the same bits)."""
    # pragma: no cover - compiled
    out = np.empty((scale.shape[0], k))
    for c in prange(scale.shape[0]):
        for i in range(k):
            out[c, i] = np.log1p(np.float64(i + 1) * scale[c])
    return out


@njit(parallel=True, nogil=True, cache=True)
def log_normalize(cells: np.ndarray, vals: np.ndarray, scale: np.ndarray, out: np.ndarray) -> None:
    """``out = log1p(vals * scale[cells])``: counts per ``target_sum``, then log1p."""  # pragma: no cover
    for k in prange(vals.shape[0]):
        out[k] = np.log1p(np.float64(vals[k]) * scale[cells[k]])


# scipy's own Student t CDF, called from numba (the C function of scipy.special's Cython API,
# declared to LLVM by name), so p-values run on all cores without leaving nopython mode. By
# name, not as a ctypes pointer, so the kernel is cached like the others (a pointer is a
# "dynamic global": the kernel was compiled again by every process, ~1 s of CPU per ingest).
add_symbol(
    "widecube_scipy_stdtr", get_cython_function_address("scipy.special.cython_special", "__pyx_fuse_0stdtr")
)
_stdtr: Any = types.ExternalFunction("widecube_scipy_stdtr", types.float64(types.float64, types.float64))


@njit(parallel=True, nogil=True, cache=True)
def welch_t_p(
    n_in: np.ndarray,
    s_in: np.ndarray,
    sq_in: np.ndarray,
    n_all: float,
    s_all: np.ndarray,
    sq_all: np.ndarray,
    t_out: np.ndarray,
    p_out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Welch's t and two-sided p of each group (rows) against the rest, per gene (columns).

    ``n_in`` is cells per group; ``s_all``/``sq_all`` are the per-gene totals over all cells.
    p is 1 where t is not finite or 0 (no evidence), as scanpy reports it.
    """
    n_groups = s_in.shape[0]
    claimed = np.zeros(1, dtype=np.int64)
    for _ in prange(n_groups):
        g = _claim(claimed)
        while g < n_groups:
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
            g = _claim(claimed)
