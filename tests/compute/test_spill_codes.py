"""Pass 1's spill stores each block's values as narrow as they allow (8 or 16 bits for counts,
the input's float type otherwise; 16-bit gene and cell offsets where they fit) and pass 2
reads back exactly the matrix scipy makes of the input, by gene."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from widecube.compute._buckets import GeneSlab, JoinedSpill, append_record
from widecube.compute._spill import GeneSpill
from widecube.io import Block

HEADER_BYTES = 32


def _pad(n: int) -> int:
    return n + (-n % 8)


def _matrix(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> sp.csr_matrix:
    dense = rng.random(shape) < 0.2
    dtype = np.float64 if kind == "float64 fractions" else np.float32
    values = {
        "small counts": rng.integers(1, 256, shape),  # each block's values decide its
        "16-bit counts": rng.integers(256, 65_536, shape),  # width: every block alike here
        "counts past 16 bits": rng.integers(65_536, 70_000, shape),
        "negative counts": rng.integers(-5, 0, shape),
        "fractions": rng.random(shape) * 3,
        "float64 fractions": rng.random(shape) / 7,
    }[kind]
    return sp.csr_matrix(np.where(dense, values, 0).astype(dtype))


def _spill(tmp: Path, x: sp.csr_matrix, slab_bytes: int = 1 << 20) -> GeneSpill:
    return GeneSpill(
        tmp,
        n_cells=x.shape[0],
        n_genes=x.shape[1],
        dtype=x.dtype,
        expected_nnz=x.nnz,
        slab_bytes=slab_bytes,
        where="m.h5ad",
    )


def _by_gene(spill: GeneSpill) -> sp.csc_matrix:
    """The slabs of pass 2 put together as one CSC matrix."""
    return _slabs_as_csc(spill.slabs(), spill.n_cells, spill.n_genes)


@pytest.mark.parametrize(
    ("kind", "value_bytes"),
    [
        ("small counts", 1),
        ("16-bit counts", 2),
        ("counts past 16 bits", 4),
        ("negative counts", 4),
        ("fractions", 4),
        ("float64 fractions", 8),
    ],
)
def test_values_are_stored_as_narrow_as_they_allow_and_read_back_exactly(
    kind: str, value_bytes: int, tmp_path: Path
) -> None:
    x = _matrix(kind, (300, 50), np.random.default_rng(7))
    spill = _spill(tmp_path, x, slab_bytes=1_000 * 12)  # several buckets
    assert spill.n_buckets > 2
    rows = [0, 64, 65, 200, 300]  # blocks of 64, 1, 135 and 100 rows
    for a, b in zip(rows[:-1], rows[1:], strict=True):
        spill.add(Block(a, 0, x[a:b]))
    spill.close()
    # on disk: per block and bucket with values, a header, then genes (buckets of at most
    # 256 genes) and cells (blocks of at most 256 rows) in 8 bits and the values in
    # `value_bytes`, each padded to 8 bytes
    assert spill.width <= 256
    want = 0
    for a, b in zip(rows[:-1], rows[1:], strict=True):
        genes = x[a:b].indices
        for n in np.bincount(genes // spill.width, minlength=spill.n_buckets):
            want += HEADER_BYTES + 2 * _pad(n) + _pad(value_bytes * n) if n else 0
    assert sum(f.stat().st_size for f in spill.dir.iterdir()) == want
    got = _by_gene(spill)
    reference = x.tocsc()
    reference.sort_indices()
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got.indptr, reference.indptr)
    np.testing.assert_array_equal(got.indices, reference.indices)
    np.testing.assert_array_equal(got.data, reference.data)  # bit for bit
    assert spill.negative == (kind == "negative counts")
    assert spill.non_integer == ("fractions" in kind)
    totals = x.toarray().astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(spill.cell_total, totals, rtol=1e-12)
    np.testing.assert_array_equal(spill.cell_nnz, np.diff(x.indptr))
    spill.cleanup()


@pytest.mark.parametrize(
    ("shape", "other"),
    [((3, 70_000), 1), ((70_000, 3), 1), ((300, 70_000), 2), ((70_000, 300), 2)],
    ids=["wide bucket", "tall block", "wide bucket, 300 rows", "tall block, 300 genes"],
)
def test_offsets_past_16_bits_take_32(shape: tuple[int, int], other: int, tmp_path: Path) -> None:
    """A bucket wider than 65,536 genes stores its genes in 32 bits, a block taller than
    65,536 rows its cells: nothing wraps around; the other offsets take 8 bits up to 256
    (3 rows or genes), 16 past it (300)."""
    rng = np.random.default_rng(3)
    rows = np.append(rng.integers(0, shape[0], 20), shape[0] - 1)  # the far corner too:
    cols = np.append(rng.integers(0, shape[1], 20), shape[1] - 1)  # offsets of 69,999
    counts = rng.integers(1, 10, 21).astype(np.float32)  # 8-bit values
    x = sp.coo_matrix((counts, (rows, cols)), shape=shape).tocsr()
    spill = _spill(tmp_path, x)
    assert spill.n_buckets == 1
    spill.add(Block(0, 0, x))
    spill.close()
    (path,) = spill.dir.iterdir()
    # one of genes and cells in 32 bits, the other in 8 or 16, the values in 8
    assert path.stat().st_size == HEADER_BYTES + _pad(x.nnz * 4) + _pad(x.nnz * other) + _pad(x.nnz)
    got = _by_gene(spill)
    reference = x.tocsc()
    reference.sort_indices()
    assert got.nnz == x.nnz and (got != reference).nnz == 0
    spill.cleanup()


def test_a_damaged_record_header_is_an_io_error(tmp_path: Path) -> None:
    x = sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0]], dtype=np.float32))
    spill = _spill(tmp_path, x)
    spill.add(Block(0, 0, x))
    spill.close()
    (path,) = spill.dir.iterdir()
    raw = path.read_bytes()
    assert raw[:4] == b"WCS1" and len(raw) == HEADER_BYTES + 8 + 8 + 8
    path.write_bytes(raw[: HEADER_BYTES + 4])
    with pytest.raises(OSError, match="spill file damaged: .* a record is cut short"):
        list(spill.slabs())
    path.write_bytes(b"XXXX" + raw[4:])
    with pytest.raises(OSError, match="spill file damaged: .* not a record header"):
        list(spill.slabs())
    spill.cleanup()


def test_a_bucket_with_larger_counts_widens_only_its_own_records(tmp_path: Path) -> None:
    """Counts are stored per record: one count of 1,000 makes its own bucket's record of that
    block 16-bit; the block's other buckets, and the other blocks, stay 8-bit."""
    rng = np.random.default_rng(11)
    dense = np.where(rng.random((300, 50)) < 0.2, rng.integers(1, 256, (300, 50)), 0)
    dense[10, 3] = 1_000
    x = sp.csr_matrix(dense.astype(np.float32))
    spill = _spill(tmp_path, x, slab_bytes=1_000 * 12)
    rows = [0, 64, 300]
    for a, b in zip(rows[:-1], rows[1:], strict=True):
        spill.add(Block(a, 0, x[a:b]))
    spill.close()
    wide_bucket = 3 // spill.width
    want = 0
    for a, b in zip(rows[:-1], rows[1:], strict=True):
        genes = x[a:b].indices
        for bucket, n in enumerate(np.bincount(genes // spill.width, minlength=spill.n_buckets)):
            value_bytes = 2 if (a, bucket) == (0, wide_bucket) else 1  # genes, cells: 8 bits
            want += HEADER_BYTES + 2 * _pad(n) + _pad(value_bytes * n) if n else 0
    assert spill.n_buckets > 2
    assert sum(f.stat().st_size for f in spill.dir.iterdir()) == want
    got = _by_gene(spill)
    reference = x.tocsc()
    reference.sort_indices()
    np.testing.assert_array_equal(got.data, reference.data)
    np.testing.assert_array_equal(got.indices, reference.indices)
    assert got[10, 3] == 1_000
    spill.cleanup()


def test_a_short_write_is_finished_from_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``writev`` may write less than asked (a signal): the record still lands whole, once."""
    real = os.writev

    def at_most_37(fd: int, parts: list) -> int:  # type: ignore[type-arg]
        joined = b"".join(bytes(memoryview(p).cast("B")) for p in parts)
        return real(fd, [joined[:37]])

    genes, cells = np.arange(50, dtype=np.uint8), np.arange(50, dtype=np.uint16)
    values = np.arange(50, dtype=np.float32)
    path = tmp_path / "b.spill"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    append_record(fd, 0, 0, genes, cells, values)
    whole = path.read_bytes()
    monkeypatch.setattr("widecube.compute._buckets.os.writev", at_most_37)
    append_record(fd, 0, 0, genes, cells, values)
    os.close(fd)
    assert len(whole) == HEADER_BYTES + _pad(50) + _pad(100) + _pad(200)
    assert path.read_bytes() == whole + whole


def test_a_bucket_in_several_part_files_is_sorted_from_each_and_damage_names_the_file(
    tmp_path: Path,
) -> None:
    """Pass 1 in threads leaves a bucket in one file per range of rows; pass 2 maps each and
    sorts across them (cells in row order per gene), and a damaged part is named."""
    rng = np.random.default_rng(5)
    dense = np.where(rng.random((40, 9)) < 0.4, rng.integers(1, 300, (40, 9)), 0).astype(np.float32)
    x = sp.csr_matrix(dense)
    parts = []
    for i, (a, b) in enumerate(((0, 17), (17, 40))):
        spill = _spill(tmp_path / f"p{i}", x)
        spill.add(Block(a, 0, x[a:b]))
        spill.close()
        parts.append(spill.part(a, b))
    joined = JoinedSpill(parts, n_cells=40, n_genes=9)
    assert joined.n_buckets == 1 and all(len(os.listdir(p.dir)) == 1 for p in parts)
    (second,) = parts[1].dir.iterdir()
    raw = second.read_bytes()
    reference = sp.csc_matrix(dense)
    reference.sort_indices()
    got = _slabs_as_csc(joined.buckets().slabs(0, consume=False), 40, 9)
    assert got.has_sorted_indices and (got != reference).nnz == 0 and got.nnz == x.nnz
    second.write_bytes(b"XXXX" + raw[4:])
    with pytest.raises(OSError, match=f"spill file damaged: {second} at byte 0: not a record header"):
        list(joined.buckets().slabs(0, consume=False))
    second.write_bytes(raw[:-8])
    with pytest.raises(OSError, match=f"spill file damaged: {second} at byte 0: a record is cut short"):
        list(joined.buckets().slabs(0, consume=False))


def _slabs_as_csc(slabs: Iterator[GeneSlab], n_cells: int, n_genes: int) -> sp.csc_matrix:
    """Slabs of pass 2 put together as one CSC matrix."""
    indptr, cells, vals = [np.zeros(1, np.int64)], [], []
    for slab in slabs:
        indptr.append(slab.indptr[1:] + indptr[-1][-1])
        cells.append(slab.cells)
        vals.append(slab.vals)
    return sp.csc_matrix(
        (np.concatenate(vals), np.concatenate(cells), np.concatenate(indptr)), shape=(n_cells, n_genes)
    )
