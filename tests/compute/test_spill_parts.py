"""A pass 1 split by rows (``spill_rows`` per range, ``JoinedSpill``) gives pass 2 the very
slabs, library sizes and flags of one pass over every row (``spill_by_gene``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _data import small_adata, write_h5ad
from widecube.compute import JoinedSpill, spill_by_gene, spill_rows
from widecube.io import open_input


@pytest.mark.parametrize("skewed", [False, True], ids=["even", "skewed"])
@pytest.mark.parametrize("cuts", [[0, 240], [0, 1, 2, 120, 240], [0, 37, 80, 81, 200, 240]])
def test_parts_joined_in_row_order_are_one_spill(cuts: list[int], skewed: bool, tmp_path: Path) -> None:
    """``skewed``: genes 10..15 are expressed in every cell, so their buckets outgrow a slab
    and are split on disk in pass 2 (joined into a task's own folder first)."""
    adata = small_adata()
    if skewed:
        adata.X[:, 10:16] += 1
    adata.X = adata.X * 0.37  # fractions: library sizes that depend on the order of the sums
    path = write_h5ad(adata, tmp_path / "m.h5ad", layout="csr")
    kw = {"block_nnz": 50, "slab_bytes": 150 * 12}  # several buckets, several blocks per part
    with open_input(path) as source:
        names = {"obs_names": source.obs().index, "var_names": source.var().index}
        whole = spill_by_gene(source, workdir=tmp_path / "whole", **names, **kw)
        parts = [
            spill_rows(source, a, b, workdir=tmp_path / f"p{i}", **names, **kw)
            for i, (a, b) in reversed(list(enumerate(zip(cuts[:-1], cuts[1:], strict=True))))
        ]
    joined = JoinedSpill(parts, n_cells=240, n_genes=60)
    assert joined.n_buckets == whole.n_buckets > 3
    np.testing.assert_array_equal(joined.cell_total, whole.cell_total)
    np.testing.assert_array_equal(joined.cell_nnz, whole.cell_nnz)
    assert (joined.nnz, joined.negative, joined.non_integer) == (whole.nnz, whole.negative, whole.non_integer)
    ours = list(joined.buckets().slabs(b, consume=False) for b in range(joined.n_buckets))
    theirs = list(whole.slabs())
    flat = [s for bucket in ours for s in bucket]
    assert len(flat) == len(theirs)
    assert (len(flat) > joined.n_buckets) == skewed  # oversized buckets were split
    for a, b in zip(flat, theirs, strict=True):
        assert (a.lo, a.hi, a.start) == (b.lo, b.hi, b.start)
        for x, y in ((a.indptr, b.indptr), (a.cells, b.cells), (a.vals, b.vals)):
            np.testing.assert_array_equal(x, y)
    assert all(p.dir.exists() for p in parts)  # read, not consumed: a task may run again
    joined.cleanup()
    assert not any(p.dir.exists() for p in parts)


def test_parts_must_cover_every_row_once(tmp_path: Path) -> None:
    path = write_h5ad(small_adata(), tmp_path / "m.h5ad", layout="csr")
    kw = {"block_nnz": 1000, "slab_bytes": 1 << 20}
    with open_input(path) as source:
        names = {"obs_names": source.obs().index, "var_names": source.var().index}
        a = spill_rows(source, 0, 100, workdir=tmp_path / "a", **names, **kw)
        c = spill_rows(source, 120, 240, workdir=tmp_path / "c", **names, **kw)
    with pytest.raises(ValueError, match="do not cover rows 0..239"):
        JoinedSpill([a, c], n_cells=240, n_genes=60)
