"""Pass 1's routing kernels (``compute._route``) against numpy: a stable sort of every stored
non-zero by gene bucket (read back from the records the kernel writes, decoded here with
``struct`` from the layout ``compute._buckets`` documents), each row's sum added value by
value in stored order, and the flags and bucket bounds computed from the values themselves.

Blocks come sorted (the run path), with rows out of order or explicit zeros (the per-value
path), with negative, fractional and huge values, and with a column or a pointer out of range
anywhere in a row, and with a NaN or an infinity (the kernel must name the first fault in
stored order, the reference being numpy's ``isfinite`` and the declared width, and write
nothing)."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import scipy.sparse as sp

from widecube.compute._route import (
    BAD_COLUMN,
    BAD_POINTER,
    BAD_VALUE,
    LARGE,
    NEGATIVE,
    NON_INTEGER,
    PER_VALUE,
    SCATTER_OK,
    count_block,
    record_sizes,
    scatter_records,
)

N_GENES, WIDTH = 1000, 37  # 28 buckets, the last one short
N_BUCKETS = math.ceil(N_GENES / WIDTH)


def block(rng: np.random.Generator, n_rows: int, *, values: str, order: str = "sorted") -> sp.csr_matrix:
    m = sp.random(n_rows, N_GENES, density=0.2, format="csr", random_state=rng, dtype=np.float64)
    if values == "counts":
        m.data = rng.poisson(3, m.nnz).astype(np.float64) + 1
        m.data[rng.random(m.nnz) < 0.05] = rng.integers(256, 70_000, 1)  # some need 16 and 32 bits
    elif values == "fractions":
        m.data = rng.normal(0, 2, m.nnz)
    elif values == "huge":
        m.data = rng.poisson(3, m.nnz) + 1.0
        m.data[7] = 2.0**30
    m.data = m.data.astype(np.float32)
    if order == "zeros":
        m.data[rng.random(m.nnz) < 0.1] = 0.0  # stored zeros: not routed
    if order == "shuffled":  # one row's indices reversed
        r = n_rows // 2
        a, b = m.indptr[r], m.indptr[r + 1]
        m.indices[a:b] = m.indices[a:b][::-1].copy()
        m.data[a:b] = m.data[a:b][::-1].copy()
    return m


def reference(m: sp.csr_matrix, row_start: int):
    """Every stored non-zero, stably grouped by bucket, and each bucket's count."""
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    keep = m.data != 0
    genes, cells, vals = m.indices[keep].astype(np.int64), rows[keep], m.data[keep]
    order = np.argsort(genes // WIDTH, kind="stable")
    return genes[order], cells[order], vals[order], np.bincount(genes // WIDTH, minlength=N_BUCKETS)


MAGIC = 0x31534357
TYPES = {0: np.uint16, 1: np.uint32, 2: np.uint8}  # genes' and cells' codes
VALUES = {0: np.uint8, 1: np.uint16, 2: np.float32, 3: np.float64}


def decode(out: np.ndarray, starts: np.ndarray, sizes: np.ndarray):
    """Every bucket's record, from its bytes: (gene offsets, cells, values) as written, after
    checking the header and that each section's padding is zeros."""
    records = {}
    for b in np.flatnonzero(sizes):
        at, size = int(starts[b]), int(sizes[b])
        magic, g_code, c_code, v_code, n, gene_base, cell_base = struct.unpack_from("<IBBBxqqq", out, at)
        assert magic == MAGIC and gene_base == b * WIDTH
        p, parts = at + 32, []
        for code, table in ((g_code, TYPES), (c_code, TYPES), (v_code, VALUES)):
            length = n * np.dtype(table[code]).itemsize
            parts.append(np.frombuffer(out, table[code], n, p).copy())
            end = p + length + (-length % 8)
            assert not out[p + length : end].any()  # the padding
            p = end
        assert p == at + size
        records[int(b)] = (*parts, cell_base)
    return records


def run(m: sp.csr_matrix, row_start: int = 5, *, cell_type=np.uint16, val_type=np.float32, narrow8=None):
    """count_block, then scatter_records into an arena at shuffled places; what the records
    hold, joined in bucket order."""
    bucket_of = (np.arange(N_GENES) // WIDTH).astype(np.int32)
    ptr, top = np.empty(N_BUCKETS + 1, np.int64), np.empty(N_BUCKETS)
    runs = np.empty(m.nnz, np.int32)
    n_cells = row_start + m.shape[0]
    indptr = m.indptr.astype(np.int64)
    flags, error, at = count_block(
        indptr, m.indices, m.data, row_start, 0, bucket_of, WIDTH, n_cells, ptr, top, runs
    )
    if error != SCATTER_OK:
        return flags, error, at, None
    narrow8 = np.zeros(N_BUCKETS, np.bool_) if narrow8 is None else narrow8
    codes = {np.uint16: 0, np.uint32: 1, np.uint8: 2}
    items = np.array([2, np.dtype(cell_type).itemsize, np.dtype(val_type).itemsize], np.int64)
    sizes = np.empty(N_BUCKETS, np.int64)
    record_sizes(ptr, narrow8, *items.tolist(), sizes)
    order = np.random.default_rng(0).permutation(N_BUCKETS)  # records anywhere in the arena
    starts = np.zeros(N_BUCKETS, np.int64)
    starts[order] = np.concatenate([[0], np.cumsum(sizes[order])[:-1]]) + 64
    out = np.full(int(sizes.sum()) + 128, 0xEE, np.uint8)  # garbage where padding goes
    val_code = {np.uint8: 0, np.uint16: 1, np.float32: 2}[val_type]
    head = np.array([MAGIC, 0, codes[cell_type], val_code], np.int64)
    total, nnz = np.zeros(n_cells), np.zeros(n_cells, np.int64)
    ok = scatter_records(
        indptr,
        m.indices,
        m.data,
        row_start,
        0,
        bucket_of,
        WIDTH,
        flags,
        runs,
        ptr,
        total,
        nnz,
        narrow8,
        head,
        starts,
        out,
        out.view(np.uint16),
        out.view(cell_type),
        out.view(val_type),
    )
    assert ok
    assert (out[:64] == 0xEE).all() and (out[-64:] == 0xEE).all()  # nothing outside the records
    records = decode(out, starts, sizes)
    assert sorted(records) == [b for b in range(N_BUCKETS) if ptr[b + 1] > ptr[b]]
    assert all(r[3] == row_start for r in records.values())
    joined = [np.concatenate([records[b][k] for b in sorted(records)]) for k in range(3)]
    return flags, error, at, (ptr, top, *joined, total, nnz)


@pytest.mark.parametrize("values", ["counts", "fractions", "huge"])
@pytest.mark.parametrize("order", ["sorted", "zeros", "shuffled"])
def test_routes_like_a_stable_sort_by_bucket(values: str, order: str) -> None:
    rng = np.random.default_rng(len(values) * 7 + len(order))
    m = block(rng, 60, values=values, order=order)
    flags, error, _, out = run(m)
    assert error == SCATTER_OK and out is not None
    ptr, top, gene, cell, val, total, nnz = out
    genes, cells, vals, per_bucket = reference(m, 5)
    assert len(genes) > 1000
    assert np.array_equal(np.diff(ptr), per_bucket)
    assert np.array_equal(gene + (np.repeat(np.arange(N_BUCKETS), per_bucket) * WIDTH), genes)
    assert np.array_equal(cell, cells) and np.array_equal(val, vals)
    # each row's sum has the bits of adding in stored order; stored zeros are not counted
    expected = np.zeros(65)
    for r in range(60):
        t = 0.0
        for v in m.data[m.indptr[r] : m.indptr[r + 1]]:
            t += float(v)
        expected[5 + r] = t
    assert np.array_equal(total, expected)
    assert np.array_equal(nnz[5:], np.diff(m.indptr) - np.add.reduceat(m.data == 0, m.indptr[:-1]))
    nonzero = m.data[m.data != 0].astype(np.float64)
    assert bool(flags & NEGATIVE) == bool((nonzero < 0).any())
    assert bool(flags & NON_INTEGER) == bool((nonzero != np.floor(nonzero)).any())
    assert bool(flags & LARGE) == bool((np.abs(nonzero) > 2**24).any())
    assert bool(flags & PER_VALUE) == (order != "sorted")
    # each bucket's bound: the first of 0, 255, 65535, inf not below its largest value
    for b in range(N_BUCKETS):
        mine = vals[ptr[b] : ptr[b + 1]].astype(np.float64)
        largest = max(0.0, mine.max()) if len(mine) else 0.0
        bound = next(x for x in (0.0, 255.0, 65535.0, np.inf) if x >= largest)
        assert top[b] == bound, (b, largest, top[b])


def test_narrow_outputs_take_offsets_and_counts() -> None:
    m = block(np.random.default_rng(3), 40, values="counts")
    m.data = np.minimum(m.data, 255).astype(np.float32)
    flags, error, _, out = run(m, 0, cell_type=np.uint8, val_type=np.uint8)
    assert error == SCATTER_OK and flags == 0 and out is not None
    ptr, top, gene, cell, val, total, nnz = out
    assert top.max() == 255 and cell.dtype == np.uint8 and val.dtype == np.uint8
    genes, cells, vals, _ = reference(m, 0)
    assert np.array_equal(gene.astype(np.int64) + genes // WIDTH * WIDTH, genes)
    assert np.array_equal(cell, cells) and np.array_equal(val, vals.astype(np.uint8))
    assert np.array_equal(total, np.asarray(m.sum(axis=1)).ravel())


@pytest.mark.parametrize("order", ["sorted", "zeros"])
def test_16_bit_counts_take_8_bits_in_the_buckets_where_they_fit(order: str) -> None:
    m = block(np.random.default_rng(4), 40, values="counts", order=order)
    m.data = np.minimum(m.data, 255).astype(np.float32)
    m.data[m.indices < 3 * WIDTH] *= 200  # buckets 0-2 need 16 bits, the others fit in 8
    narrow8 = np.arange(N_BUCKETS) >= 3
    flags, error, _, out = run(m, 0, val_type=np.uint16, narrow8=narrow8)
    assert error == SCATTER_OK and out is not None
    ptr, _, gene, cell, val, _, _ = out
    genes, cells, vals, per_bucket = reference(m, 0)
    assert val.dtype == np.uint16  # the records of 8 and of 16 bits joined
    assert np.array_equal(cell, cells) and np.array_equal(val, vals.astype(np.uint16))
    assert vals.max() > 255 and np.diff(ptr)[:3].sum() > 0


@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("bad", [N_GENES, N_GENES + 500, -1])
def test_a_column_outside_is_the_first_in_stored_order(where: str, bad: int) -> None:
    m = block(np.random.default_rng(5), 30, values="counts")
    r = 11
    a, b = m.indptr[r], m.indptr[r + 1]
    k = {"first": a, "middle": (a + b) // 2, "last": b - 1}[where]
    indices = m.indices.copy()
    indices[k] = bad
    if bad >= N_GENES and where != "last":  # sorted still when it is past every gene
        indices[k:b] = bad + np.arange(b - k)
    m2 = sp.csr_matrix((m.data, indices, m.indptr), shape=(30, N_GENES + 10**4))
    flags, error, at, out = run(m2)
    assert error == BAD_COLUMN and out is None
    assert at == k


@pytest.mark.parametrize("order", ["sorted", "zeros", "shuffled"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_value_that_is_not_finite_is_the_first_fault_in_stored_order(
    order: str, dtype: type, bad: float
) -> None:
    rng = np.random.default_rng(17)
    m = block(rng, 30, values="fractions", order=order)
    m.data = m.data.astype(dtype)
    first = m.indptr[11] + 3
    m.data[[first, m.indptr[20] + 1]] = bad  # the second is never reached
    expected = int(np.flatnonzero(~np.isfinite(m.data))[0])
    assert expected == first
    flags, error, at, out = run(m)
    assert (error, at, out) == (BAD_VALUE, first, None)
    # a column outside before it in stored order is named instead; after it, the value is
    m2 = m.copy()
    m2.indices[first - 1] = N_GENES + 10  # row 11 no longer sorted, nor inside
    assert run(m2)[1:3] == (BAD_COLUMN, first - 1)
    m3 = m.copy()
    m3.indices[m3.indptr[12] - 1] = N_GENES + 10  # the row's last value, after the NaN
    assert run(m3)[1:3] == (BAD_VALUE, first)


def test_finite_extremes_pass_the_count() -> None:
    m = block(np.random.default_rng(18), 30, values="counts")
    m.data = m.data.astype(np.float64)
    m.data[:3] = [np.finfo(np.float64).max, -np.finfo(np.float64).max, np.finfo(np.float64).tiny]
    flags, error, _, _ = run_count(m)
    assert error == SCATTER_OK and flags & LARGE and flags & NEGATIVE


def run_count(m: sp.csr_matrix) -> tuple[int, int, int, None]:
    bucket_of = (np.arange(N_GENES) // WIDTH).astype(np.int32)
    ptr, top, runs = np.empty(N_BUCKETS + 1, np.int64), np.empty(N_BUCKETS), np.empty(m.nnz, np.int32)
    flags, error, at = count_block(
        m.indptr.astype(np.int64), m.indices, m.data, 0, 0, bucket_of, WIDTH, m.shape[0], ptr, top, runs
    )
    return flags, error, at, None


def test_a_pointer_past_the_values_names_its_row() -> None:
    m = block(np.random.default_rng(6), 30, values="counts")
    indptr = m.indptr.copy()
    indptr[9] = indptr[10] + 1  # row 8 ends after row 9 starts
    bucket_of = (np.arange(N_GENES) // WIDTH).astype(np.int32)
    ptr, top, runs = np.empty(N_BUCKETS + 1, np.int64), np.empty(N_BUCKETS), np.empty(m.nnz, np.int32)
    _, error, at = count_block(
        indptr.astype(np.int64), m.indices, m.data, 0, 0, bucket_of, WIDTH, 30, ptr, top, runs
    )
    assert (error, at) == (BAD_POINTER, 9)
