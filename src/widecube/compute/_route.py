"""Pass 1's kernels: route a CSR row block's stored values to the buckets of their genes.

:func:`count_block` looks at a block first (how many values each bucket gets, how wide its
values are, whether any index or pointer is out of range); :func:`scatter_records` then writes
every value, stably, into its bucket's record where the spill stages that bucket's file (the
records' sizes from :func:`record_sizes`), with each row's library size.

A row's genes come sorted (the readers hand over canonical blocks), so a row's values of one
bucket form one run. The count reduces the row's values for the flags with reductions of
comparisons (one long loop a row: two booleans for a row of counts, six counters for any
other), then finds where each run ends (comparing indices with the bucket's end, eight at a
time) and notes it, with the run's bound on its values only where the row holds a negative
value (a value above 255 raises its own bucket's bound); the scatter copies each noted run
out as one plain loop per section (genes, cells, values) — loops without a branch per
value, which the compiler vectorizes. Measured on 2026-12-04 (an AMD EPYC VM) on a Poisson B100k block of
0.5 M values, 45 values a run, warm: count 1.18 → 0.50 ns a value, scatter 1.85 → 0.82
against the kernels that reduced six counters per run and summed each row one add after
another; a whole pass 1 of the file, one thread, read and records written, 3.7 → 2.6 s. On
2026-12-05 (an AMD EPYC VM, znver4), blocks of 2 M values through a fresh spill: scatter 2.5
→ 1.8 ns a value with positions in place of per-run slices (see the loop). A row
whose indices do not strictly increase, and a block with an explicit zero (zeros are not
stored), take the per-value path, which is right for any order.

Numba does not check bounds and a negative index wraps around: every pointer and index is
checked here against the arrays and the declared shape, whatever the readers checked before.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "BAD_COLUMN",
    "BAD_POINTER",
    "BAD_ROWS",
    "BAD_VALUE",
    "LARGE",
    "NEGATIVE",
    "NON_INTEGER",
    "PER_VALUE",
    "SCATTER_OK",
    "count_block",
    "record_sizes",
    "scatter_records",
]

SCATTER_OK, BAD_POINTER, BAD_COLUMN, BAD_ROWS, BAD_VALUE = 0, 1, 2, 3, 4
"""What :func:`count_block` found: nothing, a row pointer out of order or past the stored
values, a column index outside the genes, rows outside the cells (or outputs that do not fit),
a NaN or an infinity."""

NEGATIVE, NON_INTEGER, PER_VALUE, LARGE = 1, 2, 4, 8
""":func:`count_block`'s flags (of a block it passed: every value finite): a value below
zero; a value that is not an integer; the block takes the per-value scatter (a row out of
order, or an explicit zero); a value of magnitude past 2**24. Without ``NON_INTEGER`` and
``LARGE`` every partial sum of a row is an integer below 2**53, exact in float64 in any
order, so the scatter adds a row with several accumulators and still gets the bits of adding
in order."""

_SMALL = 16777216.0  # 2**24
_NARROW = (255.0, 65535.0, np.inf)  # the bounds a bucket's largest value is rounded up to


@njit(nogil=True, cache=True, inline="always")
def _run_end(x: np.ndarray, k: int, limit: int) -> int:  # pragma: no cover - compiled
    """The first position from ``k`` of the increasing ``x`` whose index reaches ``limit``."""
    n = x.shape[0]
    while k + 8 <= n and x[k + 7] < limit:  # sorted: the eighth below means all eight are
        k += 8
    if k + 8 <= n:  # the run ends among the next eight: count those below (a prefix, as x
        below = 0  # is sorted) with no branch per value, in place of a loop whose exit the
        for i in range(8):  # CPU mispredicted once a run: count 1.03 -> 0.92 ns a value
            below += x[k + i] < limit
        return k + below
    while k < n and x[k] < limit:
        k += 1
    return k


@njit(nogil=True, cache=True)
def count_block(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    row_start: int,
    col_start: int,
    bucket_of: np.ndarray,
    width: int,
    n_cells: int,
    bucket_ptr: np.ndarray,
    bucket_max: np.ndarray,
    runs: np.ndarray,
) -> tuple[int, int, int]:  # pragma: no cover - compiled
    """How many non-zeros of a CSR block go to each gene bucket, and what its values are.

    ``bucket_of[g]`` is the bucket of gene ``g``, ``g // width`` (a table: a division per
    value in the per-value path cost more than the rest of its loop). Fills ``bucket_ptr``
    (``n_buckets + 1``) with the buckets' start positions in the scatter's output, and
    ``bucket_max`` (``n_buckets``) with a bound on each bucket's largest value: 0 (no value
    above 0), 255, 65535 or infinity, the first that is not below it — what the caller
    needs to store the values in as few bytes as they allow, bucket by bucket. ``runs`` (at
    least as long as ``indices``) gets the end of every run, for :func:`scatter_records`.
    Returns ``(flags, error, at)``: ``flags`` as :data:`NEGATIVE` … :data:`LARGE` say. On a
    violation ``error`` says which (``BAD_POINTER``: ``at`` is the block's row;
    ``BAD_COLUMN`` or ``BAD_VALUE``, whichever comes first in stored order: ``at`` is the
    stored position; ``BAD_ROWS``), for the caller to raise, and nothing may be scattered.

    The NaN and infinity check rides in the row's loop of counts (one more comparison a
    value, in the same pass over values already read): a check of its own, before the count,
    read every value once more from memory (0.29 of pass 1's 3.4 CPU-s on the Poisson B100k,
    an Intel VM, 2026-12-05).
    """
    n_rows = indptr.shape[0] - 1
    n_buckets = bucket_ptr.shape[0] - 1
    n_stored = min(indices.shape[0], data.shape[0])
    n_genes = bucket_of.shape[0]
    if n_rows < 0 or n_buckets < 1 or row_start < 0 or row_start + n_rows > n_cells:
        return 0, BAD_ROWS, 0
    if bucket_max.shape[0] != n_buckets or width < 1 or runs.shape[0] < n_stored:
        return 0, BAD_ROWS, 0
    bucket_ptr[:] = 0
    bucket_max[:] = 0.0
    flags, n_runs = (PER_VALUE, 0) if n_stored >= 2**31 else (0, 0)  # run ends are int32
    counts = True  # every row so far held only whole numbers from 1 to 2**24
    for r in range(n_rows):
        a = indptr[r]
        b = indptr[r + 1]
        if a < 0 or b < a or b > n_stored:
            return 0, BAD_POINTER, r
        x, d = indices[a:b], data[a:b]
        unordered = False
        for k in range(1, x.shape[0]):
            unordered |= x[k - 1] >= x[k]
        inside = not x.shape[0] or (x[0] + col_start >= 0 and x[x.shape[0] - 1] + col_start < n_genes)
        if unordered or flags & PER_VALUE or not inside:  # value by value: the first fault
            found, error, at = _count_values(x, d, col_start, bucket_of, bucket_ptr, bucket_max)
            if error != SCATTER_OK:
                return 0, error, a + at
            flags |= found | PER_VALUE
            continue
        neg = zeros = fraction = large = over8 = odd = 0
        if counts:  # the rows so far held counts: first the cheaper loop that says so
            whole: np.bool_ = np.True_  # reduced as booleans: 0.46 -> 0.31 ns a value (float32)
            above: np.bool_ = np.False_
            for i in range(d.shape[0]):
                w = np.float64(d[i])
                whole &= (w >= 1.0) & (w <= _SMALL) & (np.floor(w) == w)
                above |= w > 255.0
            counts, over8 = bool(whole), int(above)  # then neither negative, zero, fraction, large nor odd
        if not counts:
            over8 = 0
            for i in range(d.shape[0]):  # the whole row at once: one long vectorized loop
                w = np.float64(d[i])
                neg += int(w < 0.0)
                zeros += int(w == 0.0)
                fraction += int(np.floor(w) != w)
                large += int((w > _SMALL) | (w < -_SMALL))
                over8 += int(w > 255.0)
                odd += int(w - w != 0.0)  # NaN or infinity: 0 exactly for every finite value
        if zeros or odd:
            found, error, at = _count_values(x, d, col_start, bucket_of, bucket_ptr, bucket_max)
            if error != SCATTER_OK:
                return 0, error, a + at
            flags |= found | PER_VALUE
            continue
        flags |= (NEGATIVE if neg else 0) | (NON_INTEGER if fraction else 0) | (LARGE if large else 0)
        if over8 and not neg:  # the few values above 255 raise their own buckets' bounds
            _raise_bounds(x, d, col_start, bucket_of, bucket_max)
        k = 0
        while k < x.shape[0]:
            bucket = bucket_of[x[k] + col_start]
            j = _run_end(x, k + 1, (bucket + 1) * width - col_start)
            # every run of a row of positive values is bounded by 255 (a value above raised
            # its bucket's bound just above); a run of a row with a negative value by its own
            top = _run_bound(d[k:j]) if neg else _NARROW[0]
            bucket_ptr[bucket + 1] += j - k
            bucket_max[bucket] = max(bucket_max[bucket], top)
            runs[n_runs] = a + j
            n_runs += 1
            k = j
    for b in range(n_buckets):
        bucket_ptr[b + 1] += bucket_ptr[b]
    return flags, SCATTER_OK, 0


@njit(nogil=True, cache=True)
def _raise_bounds(
    x: np.ndarray, d: np.ndarray, col_start: int, bucket_of: np.ndarray, bucket_max: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Raise the bound of the bucket of each value of a row of positive values above 255 to
    that value's (65535 or infinity). Counted 64 values at a time, then one by one among the
    64 that hold one: a row of counts has a few (the demo data's B100k: 0.1 % of its values,
    in 95 % of its rows), where bounding each run of such a row value by value cost 0.75 ns
    a value of the whole count's 2.4 (its first 20 blocks, warm); this 0.3."""
    n = d.shape[0]
    for lo in range(0, n, 64):
        # unsigned positions: numba adds no wrap-around for negative indices (see the scatter)
        first, stop = np.uint64(lo), np.uint64(min(lo + 64, n))
        above = 0
        for i in range(first, stop):
            above += int(np.float64(d[i]) > _NARROW[0])
        if above:
            for i in range(first, stop):
                w = np.float64(d[i])
                if w > _NARROW[0]:
                    b = bucket_of[x[i] + col_start]
                    bucket_max[b] = max(bucket_max[b], _NARROW[1] if w <= _NARROW[1] else _NARROW[2])


@njit(nogil=True, cache=True, inline="always")
def _run_bound(v: np.ndarray) -> float:  # pragma: no cover - compiled
    """The bound :func:`count_block` notes for a run of non-zero values: 0 when none is above
    zero, else the first of 255, 65535 and infinity that none is above."""
    positive = over8 = over16 = 0
    for i in range(v.shape[0]):  # counts of comparisons: vectorized
        w = np.float64(v[i])
        positive += int(w > 0.0)
        over8 += int(w > 255.0)
        over16 += int(w > 65535.0)
    if not positive:
        return 0.0
    return _NARROW[2] if over16 else (_NARROW[1] if over8 else _NARROW[0])


@njit(nogil=True, cache=True)
def _count_values(
    x: np.ndarray,
    d: np.ndarray,
    col_start: int,
    bucket_of: np.ndarray,
    bucket_ptr: np.ndarray,
    bucket_max: np.ndarray,
) -> tuple[int, int, int]:  # pragma: no cover - compiled
    """Count the values of a row (or a run) in any order, one by one: ``(flags, error,
    at)``, ``error`` ``BAD_COLUMN`` or ``BAD_VALUE`` at the first gene outside the table or
    value that is not finite (position ``at``), whichever comes first, else ``SCATTER_OK``."""
    n_genes = bucket_of.shape[0]
    flags = 0
    for k in range(x.shape[0]):
        gene = x[k] + col_start
        if gene < 0 or gene >= n_genes:
            return 0, BAD_COLUMN, k
        v = np.float64(d[k])
        if v - v != 0.0:
            return 0, BAD_VALUE, k
        if v == 0.0:
            continue
        if v < 0.0:
            flags |= NEGATIVE
        if np.floor(v) != v:
            flags |= NON_INTEGER
        if not -_SMALL <= v <= _SMALL:
            flags |= LARGE
        bucket = bucket_of[gene]
        bucket_ptr[bucket + 1] += 1
        top = _NARROW[0] if v <= _NARROW[0] else (_NARROW[1] if v <= _NARROW[1] else _NARROW[2])
        bucket_max[bucket] = max(bucket_max[bucket], top if v > 0.0 else 0.0)
    return flags, SCATTER_OK, -1


@njit(nogil=True, cache=True)
def scatter_records(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    row_start: int,
    col_start: int,
    bucket_of: np.ndarray,
    width: int,
    flags: int,
    runs: np.ndarray,
    bucket_ptr: np.ndarray,
    cell_total: np.ndarray,
    cell_nnz: np.ndarray,
    narrow8: np.ndarray,
    head: np.ndarray,
    starts: np.ndarray,
    out: np.ndarray,
    out_gene: np.ndarray,
    out_cell: np.ndarray,
    out_val: np.ndarray,
) -> bool:  # pragma: no cover - compiled
    """Write a CSR block that :func:`count_block` passed as one record per gene bucket, each
    at ``out[starts[b]:]`` (the spill's staging arena, ``_direct.StagedFiles``; 8-byte
    aligned, :func:`record_sizes` bytes), in :mod:`~._buckets`' layout: a header (``head``:
    magic and the codes of genes, cells and values; the count, the bucket's first gene, the
    block's first row), then genes as offsets from the bucket's first gene (``b * width``),
    cells as offsets from ``row_start`` and values, each section padded to 8 bytes with
    zeros. Stable: a bucket's values keep the block's order, so cells stay sorted. Each
    row's sum and non-zero count are added to ``cell_total``/``cell_nnz``. ``flags``,
    ``runs`` and ``bucket_ptr`` are count_block's for this block.

    ``out_gene``, ``out_cell`` and ``out_val`` are ``out`` viewed in the record's types (from
    the same first byte): one compiled function per combination of types. A bucket with
    ``narrow8[b]`` stores its values in 8 bits (code 0) in a block of 16-bit values. Writing
    where the values go, in place of an array per type and a copy into records after,
    saved a pass over every value.

    Returns False, writing nothing, when a record would not lie inside ``out`` or the totals
    are too short (a caller's mistake, not the input's).
    """
    n_rows = indptr.shape[0] - 1
    n_buckets = bucket_ptr.shape[0] - 1
    gs, cs, vs = out_gene.itemsize, out_cell.itemsize, out_val.itemsize
    if row_start + n_rows > min(cell_total.shape[0], cell_nnz.shape[0]):
        return False
    if bucket_ptr[n_buckets] > indices.shape[0]:
        return False
    for b in range(n_buckets):
        n = bucket_ptr[b + 1] - bucket_ptr[b]
        if n:
            at = starts[b]
            end = _sections(at, n, gs, cs, 1 if narrow8[b] else vs)[3]
            if at < 0 or at % 8 or end > out.shape[0]:
                return False
    g_at = np.empty(n_buckets, dtype=np.int64)  # where each bucket's next gene, cell and value go
    c_at = np.empty(n_buckets, dtype=np.int64)
    v_at = np.empty(n_buckets, dtype=np.int64)
    for b in range(n_buckets):
        n = bucket_ptr[b + 1] - bucket_ptr[b]
        if n == 0:
            continue
        at, narrow = starts[b], narrow8[b]
        out[at : at + 4].view(np.uint32)[0] = head[0]
        out[at + 4] = head[1]
        out[at + 5] = head[2]
        out[at + 6] = 0 if narrow else head[3]
        out[at + 7] = 0
        counts = out[at + 8 : at + 32].view(np.int64)
        counts[0] = n
        counts[1] = b * width
        counts[2] = row_start
        g0, c0, v0, end = _sections(at, n, gs, cs, 1 if narrow else vs)
        for edge in (c0, v0, end):  # each section's last 8 bytes zeroed: its padding
            out[edge - 8 : edge] = 0
        g_at[b], c_at[b] = g0 // gs, c0 // cs
        v_at[b] = v0 if narrow else v0 // vs
    if flags & PER_VALUE:
        _scatter_values(
            indptr,
            indices,
            data,
            row_start,
            col_start,
            bucket_of,
            width,
            cell_total,
            cell_nnz,
            narrow8,
            g_at,
            c_at,
            v_at,
            out,
            out_gene,
            out_cell,
            out_val,
        )
        return True
    exact = not flags & (NON_INTEGER | LARGE)
    at = 0  # the next run
    for r in range(n_rows):
        a = indptr[r]
        b = indptr[r + 1]
        k = a
        while k < b:
            j = runs[at]
            at += 1
            bucket = bucket_of[indices[k] + col_start]
            m = j - k
            g, c, p = g_at[bucket], c_at[bucket], v_at[bucket]
            # positions, not slices: a slice per section per run counted its array's
            # references up and down (NRT_incref/decref, 10 % of a scatter thread's samples),
            # and unsigned, so numba adds no wrap-around for negative indices (which kept
            # LLVM from vectorizing: 4.9 ns a value with int64 positions)
            ug, uc, up, uk = np.uint64(g), np.uint64(c), np.uint64(p), np.uint64(k)
            shift = col_start - bucket * width
            for i in range(np.uint64(m)):  # one loop per section, each a plain vectorized copy
                out_gene[ug + i] = indices[uk + i] + shift
            for i in range(np.uint64(m)):
                out_cell[uc + i] = r
            if narrow8[bucket]:
                for i in range(np.uint64(m)):
                    out[up + i] = data[uk + i]
            else:
                for i in range(np.uint64(m)):
                    out_val[up + i] = data[uk + i]
            g_at[bucket], c_at[bucket], v_at[bucket] = g + m, c + m, p + m
            k = j
        cell = r + row_start
        if exact and b - a < 2**29:  # integers below 2**24: any order of adding is exact
            cell_total[cell] += _sum_exact(data[a:b])
        else:
            cell_total[cell] = _sum_in_order(data[a:b], cell_total[cell])
        cell_nnz[cell] += b - a
    return True


@njit(nogil=True, cache=True, fastmath={"reassoc"})
def _sum_exact(v: np.ndarray) -> float:  # pragma: no cover - compiled
    """The sum of ``v`` in any order (reassociated: vectorized), for integers whose every
    partial sum is exact in float64. Never ``inline="always"``: numba inlines its own IR into
    the caller, compiled with the caller's flags, and the sum became one add after another
    again (0.95 ns a value of the scatter's 1.8 on a Poisson B100k block; 0.1 called)."""
    total = 0.0
    for i in range(v.shape[0]):
        total += np.float64(v[i])
    return total


@njit(nogil=True, cache=True, inline="always")
def _sum_in_order(v: np.ndarray, total: float) -> float:  # pragma: no cover - compiled
    """``total`` plus ``v``, value by value in stored order."""
    for i in range(v.shape[0]):
        total += np.float64(v[i])
    return total


@njit(nogil=True, cache=True)
def _scatter_values(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    row_start: int,
    col_start: int,
    bucket_of: np.ndarray,
    width: int,
    cell_total: np.ndarray,
    cell_nnz: np.ndarray,
    narrow8: np.ndarray,
    g_at: np.ndarray,
    c_at: np.ndarray,
    v_at: np.ndarray,
    out: np.ndarray,
    out_gene: np.ndarray,
    out_cell: np.ndarray,
    out_val: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """:func:`scatter_records` value by value, for rows in any order and explicit zeros (not
    stored); a row's sum is added in stored order."""
    for r in range(indptr.shape[0] - 1):
        cell = r + row_start
        total, stored = cell_total[cell], cell_nnz[cell]
        for k in range(indptr[r], indptr[r + 1]):
            v = np.float64(data[k])
            if v == 0.0:
                continue
            gene = indices[k] + col_start
            b = bucket_of[gene]
            out_gene[g_at[b]] = gene - b * width
            out_cell[c_at[b]] = r
            if narrow8[b]:
                out[v_at[b]] = data[k]
            else:
                out_val[v_at[b]] = data[k]
            g_at[b] += 1
            c_at[b] += 1
            v_at[b] += 1
            total += v
            stored += 1
        cell_total[cell], cell_nnz[cell] = total, stored


@njit(nogil=True, cache=True)
def record_sizes(
    ptr: np.ndarray, narrow8: np.ndarray, gs: int, cs: int, vs: int, sizes: np.ndarray
) -> None:  # pragma: no cover - compiled
    """``sizes[b]``: the bytes of bucket ``b``'s record for :func:`scatter_records` (0 for a
    bucket without values), its values ``gs``, ``cs`` and ``vs`` bytes a gene, a cell and a
    value (1 where ``narrow8`` says so)."""
    for b in range(ptr.shape[0] - 1):
        n = ptr[b + 1] - ptr[b]
        sizes[b] = _sections(0, n, gs, cs, 1 if narrow8[b] else vs)[3] if n else 0


@njit(nogil=True, cache=True, inline="always")
def _sections(
    at: int, n: int, gs: int, cs: int, vs: int
) -> tuple[int, int, int, int]:  # pragma: no cover - compiled
    """Where a record of ``n`` values starting at byte ``at`` has its genes, its cells, its
    values and its end: a header of 32 bytes, then each section padded to 8 bytes."""
    g0 = at + 32
    c0 = g0 + _padded(n * gs)
    v0 = c0 + _padded(n * cs)
    return g0, c0, v0, v0 + _padded(n * vs)


@njit(nogil=True, cache=True, inline="always")
def _padded(n: int) -> int:  # pragma: no cover - compiled
    return n + (-n) % 8
