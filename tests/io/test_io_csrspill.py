"""The text readers' binary CSR spill (``io/formats/text/_csrspill.py``): what goes in comes
back, block by block, equal to the scipy matrix appended, on both sides of the 2-byte index
limit (65,536 columns)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from widecube.io.formats.text._csrspill import CsrSpill, index_dtype


@pytest.mark.parametrize("n_cols", [1, 65_535, 65_536, 65_537, 200_000])
def test_round_trip_on_both_sides_of_the_2_byte_limit(n_cols: int, tmp_path: Path) -> None:
    rng = np.random.default_rng(n_cols)
    parts = [
        sp.random(37, n_cols, density=min(1.0, 40 / n_cols), random_state=rng, format="csr", dtype=np.float32)
        for _ in range(3)
    ]
    if n_cols > 1:  # the last column, which needs every bit of the index
        lil = parts[1].tolil()
        lil[5, n_cols - 1] = 7.0
        parts[1] = lil.tocsr()
    for m in parts:
        m.sort_indices()
    spill = CsrSpill(tmp_path / "s", n_cols=n_cols, dtype=np.float32)
    for m in parts:
        spill.append(m)
    stored = spill.finish()
    want = sp.vstack(parts).tocsr()
    got = [b for b in stored.iter_blocks(block_nnz=50, where="m")]
    assert len(got) > 1
    assert all(b.matrix.indices.dtype == np.int32 for b in got)
    rows = sp.vstack([b.matrix for b in got]).tocsr()
    assert [b.row_start for b in got] == list(np.cumsum([0] + [b.matrix.shape[0] for b in got[:-1]]))
    assert (rows != want).nnz == 0 and rows.shape == want.shape
    expected = np.uint16 if n_cols <= 65_536 else np.int32
    assert index_dtype(n_cols) == expected
    assert (tmp_path / "s" / "indices.bin").stat().st_size == want.nnz * np.dtype(expected).itemsize
