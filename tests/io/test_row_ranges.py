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
