"""Stored values mapped from the HDF5 file (``io.formats._mapped``) against h5py's reads.

The files are written as anndata does (chunked, no filter) and as a streaming writer does
(two datasets grown in turn, so HDF5's chunk index lands between chunks: many extents);
compressed, shuffled and big-endian stores must not be mapped. Pass 1's walk over such a file
must give the very blocks h5py's reads give, with the blocks mapped where they lie in one
extent (read-only) and cut before the gaps between extents."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from widecube.io import open_input
from widecube.io.formats._mapped import file_span

CHUNK = 128


def grown(path: Path, m: sp.csr_matrix, step: int = 3000) -> None:
    """An h5ad whose ``X/data`` and ``X/indices`` grow in turn, in small chunks (gaps)."""
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        x = f.create_group("X")
        x.attrs["encoding-type"], x.attrs["encoding-version"] = "csr_matrix", "0.1.0"
        x.attrs["shape"] = np.array(m.shape, dtype=np.int64)
        data = x.create_dataset("data", (0,), dtype=np.float32, maxshape=(None,), chunks=(CHUNK,))
        indices = x.create_dataset("indices", (0,), dtype=np.int32, maxshape=(None,), chunks=(CHUNK,))
        for s in range(0, m.nnz, step):
            e = min(m.nnz, s + step)
            data.resize((e,))
            data[s:e] = m.data[s:e]
            indices.resize((e,))
            indices[s:e] = m.indices[s:e]
        x.create_dataset("indptr", data=m.indptr.astype(np.int64))
        for name, n in (("obs", m.shape[0]), ("var", m.shape[1])):
            ad.io.write_elem(f, name, pd.DataFrame(index=[f"{name}{i}" for i in range(n)]))


def matrix(seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    m = sp.random(3000, 400, density=0.1, format="csr", random_state=rng, dtype=np.float64)
    m.data = rng.poisson(4, m.nnz).astype(np.float32) + 1
    return m.astype(np.float32)


def test_extents_of_a_grown_file_read_as_h5py_reads_them(tmp_path: Path) -> None:
    m = matrix()
    grown(tmp_path / "g.h5ad", m)
    with h5py.File(tmp_path / "g.h5ad", "r") as f:
        for key, ref in (("data", m.data), ("indices", m.indices)):
            span = file_span(f["X"][key])
            assert span is not None
            try:
                assert len(span.starts) > 3  # gaps between chunks: several extents
                rng = np.random.default_rng(1)
                for s in [0, *rng.integers(0, m.nnz, 40)]:
                    e = min(m.nnz, int(s) + int(rng.integers(1, 20_000)))
                    into = np.empty(30_000, span.dtype)
                    assert np.array_equal(span.view(int(s), e, into), ref[s:e])
                across = int(span.starts[1])  # a range across the first gap is copied, equal
                assert np.array_equal(
                    span.view(across - 5, across + 5, np.empty(10, span.dtype)), ref[across - 5 : across + 5]
                )
                inside = span.view(0, 10, np.empty(10, span.dtype))
                assert not inside.flags.writeable  # mapped, not copied
            finally:
                span.close()


def test_anndata_files_are_mapped_and_compressed_ones_are_not(tmp_path: Path) -> None:
    m = matrix(2)
    plain, packed = tmp_path / "plain.h5ad", tmp_path / "packed.h5ad"
    ad.AnnData(m).write_h5ad(plain)
    ad.AnnData(m).write_h5ad(packed, compression="gzip")
    with h5py.File(plain, "r") as f:
        span = file_span(f["X/data"])
        assert span is not None
        assert np.array_equal(span.view(0, m.nnz, np.empty(m.nnz, np.float32)), m.data)
        span.close()
    with h5py.File(packed, "r") as f:
        assert file_span(f["X/data"]) is None
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f.create_dataset("be", data=np.arange(100, dtype=">f4"))
        f.create_dataset("shuffled", data=np.arange(5000, dtype="f4"), chunks=(100,), shuffle=True)
        assert file_span(f["be"]) is None and file_span(f["shuffled"]) is None


@pytest.mark.parametrize("block_nnz", [700, 5_000, 50_000])
def test_pass_ones_walk_over_a_mapped_file_gives_the_matrix(tmp_path: Path, block_nnz: int) -> None:
    m = matrix(3)
    grown(tmp_path / "g.h5ad", m, step=1700)
    source = open_input(tmp_path / "g.h5ad")
    source = getattr(source, "source", source)
    blocks = list(source.iter_rows(0, m.shape[0], block_nnz=block_nnz, ring=5))
    rows = [b.row_start for b in blocks]
    assert rows == sorted(rows) and rows[0] == 0
    got = sp.vstack([b.matrix for b in blocks]).tocsr()
    assert np.array_equal(got.indptr, m.indptr) and np.array_equal(got.indices, m.indices)
    assert np.array_equal(got.data, m.data)
    mapped = sum(not b.matrix.data.flags.writeable for b in blocks)
    assert mapped >= len(blocks) // 2, (mapped, len(blocks))
