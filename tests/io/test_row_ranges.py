"""Row ranges (``MatrixSource.row_ranges``/``iter_rows``), what a pass 1 split by rows reads:
the rows ``start..stop-1`` of CSR and dense h5ad and of a 10x h5 equal the reference matrix's;
a CSC h5ad says it cannot read them alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from _data import small_adata, write_h5ad
from _io_writers import write_10x_h5
from widecube.io import open_input


def _rows(source, start: int, stop: int, block_nnz: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    n_genes = source.shape[1]
    out = np.zeros((stop - start, n_genes))
    last = start
    for block in source.iter_rows(start, stop, block_nnz=block_nnz):
        assert block.row_start == last and block.col_start == 0  # full-width, in order
        m = sp.csr_matrix(block.matrix)
        out[block.row_start - start : block.row_start - start + m.shape[0]] = m.toarray()
        last = block.row_start + m.shape[0]
    assert last == stop
    return out


@pytest.mark.parametrize("layout", ["csr", "dense", "10x"])
@pytest.mark.parametrize(("start", "stop"), [(0, 240), (0, 1), (17, 18), (100, 203), (239, 240), (50, 50)])
def test_a_range_of_rows_is_read_alone(layout: str, start: int, stop: int, tmp_path: Path) -> None:
    adata = small_adata()
    x = np.asarray(adata.X)
    if layout == "10x":
        path = write_10x_h5(tmp_path / "m.h5", x, list(adata.obs_names), list(adata.var_names))
    else:
        path = write_h5ad(adata, tmp_path / "m.h5ad", layout=layout)
    with open_input(path) as source:
        assert source.row_ranges
        np.testing.assert_array_equal(_rows(source, start, stop, block_nnz=97), x[start:stop])


def test_a_csc_h5ad_reads_no_row_range(tmp_path: Path) -> None:
    path = write_h5ad(small_adata(), tmp_path / "m.h5ad", layout="csc")
    with open_input(path) as source:
        assert not source.row_ranges
        with pytest.raises(NotImplementedError, match="m.h5ad"):
            list(source.iter_rows(0, 10, block_nnz=100))


def test_a_ring_reuses_the_arrays_of_a_block_that_many_blocks_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ring=3``: each block is still the reference's rows when read, and block ``j + 3``
    is read into the very arrays of block ``j`` (no fresh array per block); a block larger
    than the ring's arrays (one row past ``block_nnz``) gets arrays of its own. (Stores that
    lie raw in the file are mapped instead, ``test_io_mapped.py``: not here.)"""
    monkeypatch.setattr("widecube.io.formats._compressed.file_span", lambda dataset: None)
    adata = small_adata()
    adata.X[7, :] = np.arange(1, 61)  # row 7 holds 60 values, more than a block of 40
    x = np.asarray(adata.X)
    path = write_h5ad(adata, tmp_path / "m.h5ad", layout="csr")
    seen: list[tuple[int, int, int]] = []
    with open_input(path) as source:
        for block in source.iter_rows(0, 240, block_nnz=40, ring=3):
            m = block.matrix
            rows = x[block.row_start : block.row_start + m.shape[0]]
            np.testing.assert_array_equal(m.toarray(), rows)  # read before the ring comes round
            seen.append((block.row_start, m.data.__array_interface__["data"][0], m.nnz))
    assert len(seen) > 6 and seen[-1][0] + 1 <= 240
    ring = [at for start, at, nnz in seen if start != 7]
    big = [at for start, at, nnz in seen if start == 7]
    assert len(big) == 1 and big[0] not in ring  # the 60-value row: its own arrays
    assert len(set(ring)) == 3  # three pairs of arrays, used in turn
    firsts = [at for start, at, _ in seen if start != 7]
    assert all(firsts[i] == firsts[i + 3] for i in range(len(firsts) - 3))
