"""A pass 1 split by rows (``spill_rows`` per range, ``JoinedSpill``) gives pass 2 the very
slabs, library sizes and flags of one pass over every row (``spill_by_gene``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from _data import small_adata, write_h5ad
from widecube.compute import JoinedSpill, _buckets, spill_by_gene, spill_rows
from widecube.errors import InvalidValue
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


def test_a_clusters_client_removes_the_buckets_a_task_has_read(tmp_path: Path) -> None:
    """``SpillBuckets.remove(first, stop)``: the files of those buckets in every part go, the
    others stay and still read as before."""
    path = write_h5ad(small_adata(), tmp_path / "m.h5ad", layout="csr")
    kw = {"block_nnz": 50, "slab_bytes": 150 * 12}
    with open_input(path) as source:
        names = {"obs_names": source.obs().index, "var_names": source.var().index}
        parts = [
            spill_rows(source, a, b, workdir=tmp_path / f"p{a}", **names, **kw)
            for a, b in ((0, 90), (90, 240))
        ]
        whole = spill_by_gene(source, workdir=tmp_path / "whole", **names, **kw)
    buckets = JoinedSpill(parts, n_cells=240, n_genes=60).buckets()
    assert buckets.n_buckets > 3
    files = {p.dir: sorted(f.name for f in p.dir.iterdir()) for p in parts}
    assert all(len(names) == buckets.n_buckets for names in files.values())
    buckets.remove(1, 3)
    for p in parts:
        assert sorted(f.name for f in p.dir.iterdir()) == [
            n for n in files[p.dir] if n not in {_buckets.bucket_path(p.dir, b).name for b in (1, 2)}
        ]
    theirs = [s for s in whole.slabs() if s.lo >= buckets.genes(3)[0]]
    ours = [s for b in range(3, buckets.n_buckets) for s in buckets.slabs(b, consume=False)]
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a.cells, b.cells)
        np.testing.assert_array_equal(a.vals, b.vals)


def test_parts_must_cover_every_row_once(tmp_path: Path) -> None:
    path = write_h5ad(small_adata(), tmp_path / "m.h5ad", layout="csr")
    kw = {"block_nnz": 1000, "slab_bytes": 1 << 20}
    with open_input(path) as source:
        names = {"obs_names": source.obs().index, "var_names": source.var().index}
        a = spill_rows(source, 0, 100, workdir=tmp_path / "a", **names, **kw)
        c = spill_rows(source, 120, 240, workdir=tmp_path / "c", **names, **kw)
    with pytest.raises(ValueError, match="do not cover rows 0..239"):
        JoinedSpill([a, c], n_cells=240, n_genes=60)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("skewed", [False, True], ids=["even", "skewed"])
def test_pass1_in_threads_gives_the_matrix_by_gene(threads: int, skewed: bool, tmp_path: Path) -> None:
    """``spill_by_gene(threads=N)`` cuts the rows into N ranges spilled side by side; pass 2
    reads the very CSC matrix scipy makes of the input, and the library sizes numpy sums."""
    adata = small_adata()
    if skewed:
        adata.X[:, 10:16] += 1
    adata.X = adata.X * 0.37
    path = write_h5ad(adata, tmp_path / "m.h5ad", layout="csr")
    x = np.asarray(adata.X, dtype=np.float32)
    reference = sp.csc_matrix(x)
    seen: list[float] = []
    with open_input(path) as source:
        names = {"obs_names": source.obs().index, "var_names": source.var().index}
        spill = spill_by_gene(
            source,
            workdir=tmp_path,
            block_nnz=50,
            slab_bytes=150 * 12,
            threads=threads,
            progress=seen.append,
            **names,
        )
    assert isinstance(spill, JoinedSpill) and len(spill.parts) == threads
    assert [p.start for p in spill.parts] == [240 * i // threads for i in range(threads)]
    assert sum(seen) == pytest.approx(1.0) and len(seen) > threads  # every block reported
    np.testing.assert_allclose(spill.cell_total, x.sum(axis=1, dtype=np.float64), rtol=1e-12)
    np.testing.assert_array_equal(spill.cell_nnz, (x != 0).sum(axis=1))
    assert spill.nnz == reference.nnz and not spill.negative and spill.non_integer
    slabs = list(spill.slabs())
    assert (len(slabs) > spill.n_buckets) == skewed  # oversized buckets split from their parts
    assert [s.lo for s in slabs] == sorted(s.lo for s in slabs) and slabs[-1].hi == 60
    for s in slabs:
        want = reference[:, s.lo : s.hi]
        np.testing.assert_array_equal(s.indptr - s.indptr[0], want.indptr)
        np.testing.assert_array_equal(s.cells, want.indices)
        np.testing.assert_array_equal(s.vals, want.data)
        assert s.start == reference.indptr[s.lo]
    spill.cleanup()
    assert not any((tmp_path / "pass1").iterdir())  # consumed, then removed


@pytest.mark.parametrize(
    ("bad_rows", "named"), [([30, 200], 31), ([200], 201), ([30], 31)], ids=["both", "later", "earlier"]
)
def test_pass1_in_threads_names_the_first_bad_row(bad_rows: list[int], named: int, tmp_path: Path) -> None:
    """The first fault in row order is the one raised, as one pass over every row raises it,
    whichever range's thread meets its fault first; nothing is left in the work folder."""
    adata = small_adata()
    for row in bad_rows:
        adata.X[row, 7] = np.nan
    path = write_h5ad(adata, tmp_path / "m.h5ad", layout="csr")
    with open_input(path) as source:
        names = {"obs_names": source.obs().index, "var_names": source.var().index}
        with pytest.raises(
            InvalidValue, match=rf"NaN found at row {named} \(cell 'cell{named - 1}'\), column 8"
        ):
            spill_by_gene(
                source, workdir=tmp_path / "w", block_nnz=50, slab_bytes=150 * 12, threads=2, **names
            )
    assert not (tmp_path / "w" / "pass1").exists()


def test_a_small_input_is_spilled_by_one_thread(tmp_path: Path) -> None:
    """Threads only for at least two blocks each: a small input gets one spill."""
    path = write_h5ad(small_adata(), tmp_path / "m.h5ad", layout="csr")
    with open_input(path) as source:
        names = {"obs_names": source.obs().index, "var_names": source.var().index}
        spill = spill_by_gene(
            source, workdir=tmp_path, block_nnz=10**6, slab_bytes=1 << 20, threads=4, **names
        )
    assert not isinstance(spill, JoinedSpill)
    spill.cleanup()


@pytest.mark.parametrize("direct", [True, False], ids=["around the cache", "through it"])
def test_pass_2_reads_the_spill_the_way_pass_1_wrote_it(
    direct: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``direct=False`` (``WIDECUBE_SPILL_DIRECT=false``: a spinning disk) writes the spill
    through the page cache and pass 2 maps it, never reading it around the cache (which would
    first write every dirty page to the disk); by default pass 2 reads around the cache what
    was written so. The matrix by gene is scipy's either way, skewed buckets split included."""
    adata = small_adata()
    adata.X[:, 10:16] += 1  # oversized buckets: split on disk in pass 2
    path = write_h5ad(adata, tmp_path / "m.h5ad", layout="csr")
    reference = sp.csc_matrix(np.asarray(adata.X, dtype=np.float32))
    direct_reads: list[Path] = []
    real = _buckets.read_direct

    def spy(file: Path, into: np.ndarray) -> np.ndarray | None:
        direct_reads.append(file)
        return real(file, into)

    monkeypatch.setattr(_buckets, "read_direct", spy)
    with open_input(path) as source:
        names = {"obs_names": source.obs().index, "var_names": source.var().index}
        spill = spill_by_gene(
            source, workdir=tmp_path, block_nnz=50, slab_bytes=150 * 12, threads=2, direct=direct, **names
        )
    assert isinstance(spill, JoinedSpill)
    written_so = [p.direct for p in spill.parts]
    if not direct:
        assert written_so == [False, False]
    slabs = list(spill.slabs())
    assert len(slabs) > spill.n_buckets  # some were split
    for s in slabs:
        want = reference[:, s.lo : s.hi]
        np.testing.assert_array_equal(s.indptr - s.indptr[0], want.indptr)
        np.testing.assert_array_equal(s.cells, want.indices)
        np.testing.assert_array_equal(s.vals, want.data)
    # read around the cache: pass 1's files written so, never the split halves (written through it)
    assert all(f.parent.name == "spill" for f in direct_reads)
    assert bool(direct_reads) == any(written_so)
    spill.cleanup()


def test_pass_2_slabs_read_one_by_one_reuse_their_arrays_and_equal_scipys(tmp_path: Path) -> None:
    """Each slab consumed before the next (as pass 2 does): the slabs' arrays come back for the
    next slabs, and every slab is still the matrix by gene."""
    adata = small_adata()
    adata.X[:, 10:16] += 1  # oversized buckets too
    path = write_h5ad(adata, tmp_path / "m.h5ad", layout="csr")
    reference = sp.csc_matrix(np.asarray(adata.X, dtype=np.float32))
    with open_input(path) as source:
        names = {"obs_names": source.obs().index, "var_names": source.var().index}
        spill = spill_by_gene(source, workdir=tmp_path, block_nnz=50, slab_bytes=150 * 12, **names)
    owners, seen = set(), 0
    for s in spill.slabs():
        want = reference[:, s.lo : s.hi]
        np.testing.assert_array_equal(s.indptr - s.indptr[0], want.indptr)
        np.testing.assert_array_equal(s.cells, want.indices)
        np.testing.assert_array_equal(s.vals, want.data)
        owners.add(id(s.cells.base))
        seen += 1
    assert seen > spill.n_buckets > 3
    # the slab held here while the next is sorted, a larger one now and then: reused, not
    # fresh each time
    assert len(owners) <= seen // 2, (len(owners), seen)
    spill.cleanup()
