"""Pass 1: stream the input's blocks, check them, and spill them by gene.

Reading (h5py, decompression) and the finite-value check run in a background thread while
the scatter kernel runs in the caller, so I/O overlaps compute.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InvalidValue, UnreadableInput
from ..io import Block, MatrixSource, prefetch
from ._buckets import SpillPart
from ._malloc import bound_heap
from ._spill import GeneSpill

__all__ = ["check_finite", "spill_by_gene", "spill_rows"]


def check_finite(
    source: MatrixSource, obs_names: Sequence[str], var_names: Sequence[str]
) -> Callable[[Block], None]:
    """A block check: the block lies inside the declared shape (else :class:`UnreadableInput`)
    and holds only finite values (else :class:`InvalidValue` naming the 1-based row and
    column, the cell and the gene). Every index inside the block is checked again by the
    scatter kernel (:meth:`GeneSpill.add`)."""

    n_cells, n_genes = source.shape

    def check(block: Block) -> None:
        m = block.matrix
        if (
            block.row_start < 0
            or block.col_start < 0
            or block.row_start + m.shape[0] > n_cells
            or block.col_start + m.shape[1] > n_genes
        ):
            raise UnreadableInput(
                f"{source.path.name}: corrupt matrix: a block of rows {block.row_start + 1}–"
                f"{block.row_start + m.shape[0]}, columns {block.col_start + 1}–"
                f"{block.col_start + m.shape[1]} lies outside the {n_cells} × {n_genes} matrix"
            )
        data = m.data
        if data.dtype.kind != "f":
            return
        finite = np.isfinite(data)
        if finite.all():
            return
        k = int(np.argmin(finite))
        row = int(np.searchsorted(block.matrix.indptr, k, side="right")) - 1 + block.row_start
        col = int(block.matrix.indices[k]) + block.col_start
        what = "NaN" if np.isnan(data[k]) else "infinite value"
        raise InvalidValue(
            f"{source.path.name}: {what} found at row {row + 1} (cell {obs_names[row]!r}), "
            f"column {col + 1} (gene {var_names[col]!r})"
        )

    return check


def spill_by_gene(
    source: MatrixSource,
    *,
    obs_names: Sequence[str],
    var_names: Sequence[str],
    workdir: Path,
    block_nnz: int,
    slab_bytes: int,
    progress: Callable[[float], None] | None = None,
) -> GeneSpill:
    """Pass 1 over ``source``: a :class:`GeneSpill` holding every non-zero by gene bucket.

    Pins the process's malloc policy first (:func:`~widecube.compute._malloc.bound_heap`):
    without it the heap grows with every block streamed, by pass 2 of B1M past 1 GB.
    """
    bound_heap()
    n_cells, n_genes = source.shape
    spill = _new_spill(source, workdir, slab_bytes)
    try:
        check = check_finite(source, obs_names, var_names)
        for block in prefetch(source.iter_blocks(block_nnz=block_nnz), check=check):
            spill.add(block)
            if progress is not None:
                m = block.matrix
                progress(m.shape[0] * m.shape[1] / (n_cells * n_genes))
    except BaseException:
        spill.cleanup()
        raise
    spill.close()
    return spill


def spill_rows(
    source: MatrixSource,
    start: int,
    stop: int,
    *,
    obs_names: Sequence[str],
    var_names: Sequence[str],
    workdir: Path,
    block_nnz: int,
    slab_bytes: int,
) -> SpillPart:
    """Pass 1 over rows ``start..stop-1`` of ``source`` (one task of a pass 1 split by rows)
    into a spill of its own in ``workdir``, with the bucket geometry every task of the same
    input computes alike; what a run of it killed before left there is removed first."""
    bound_heap()
    shutil.rmtree(workdir / "spill", ignore_errors=True)
    spill = _new_spill(source, workdir, slab_bytes)
    try:
        check = check_finite(source, obs_names, var_names)
        for block in prefetch(source.iter_rows(start, stop, block_nnz=block_nnz), check=check):
            spill.add(block)
    except BaseException:
        spill.cleanup()
        raise
    spill.close()
    return spill.part(start, stop)


def _new_spill(source: MatrixSource, workdir: Path, slab_bytes: int) -> GeneSpill:
    n_cells, n_genes = source.shape
    expected = source.nnz_hint if source.nnz_hint is not None else n_cells * n_genes // 10
    return GeneSpill(
        workdir,
        n_cells=n_cells,
        n_genes=n_genes,
        dtype=source.dtype,
        expected_nnz=expected,
        slab_bytes=slab_bytes,
        where=source.path.name,
    )
