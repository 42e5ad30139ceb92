"""Pass 1: stream the input's blocks, check them, and spill them by gene.

Reading (h5py, decompression) and the finite-value check run in a background thread while
the scatter kernel runs in the caller, so I/O overlaps compute. An input that reads row
ranges alone (:attr:`~widecube.io.MatrixSource.row_ranges`) is cut into one range of rows
per thread, each spilled into bucket files of its own (:func:`spill_rows`, as a cluster's
tasks do) and joined in row order (:class:`~._buckets.JoinedSpill`): every core scatters
and writes, and no two threads share a file or a lock beyond the reader's own. With a spill on
an object store (``remote``), each range is uploaded as one object once spilled
(:func:`upload_part`, :mod:`._spillstore`), and there are more ranges than threads
(:func:`row_bounds`, as a cluster's tasks are cut), so local disk holds the ranges being
spilled, not the whole spill.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from ..errors import InvalidValue, UnreadableInput
from ..io import Block, MatrixSource, prefetch
from ._buckets import JoinedSpill, SpillPart, bucket_path
from ._malloc import bound_heap
from ._spill import GeneSpill
from ._spillstore import upload_files

if TYPE_CHECKING:
    from ..snapshot import Storage

__all__ = [
    "check_finite",
    "row_bounds",
    "spill_by_gene",
    "spill_rows",
    "spill_rows_in_threads",
    "upload_part",
]


@njit(nogil=True, cache=True)
def _all_finite(data: np.ndarray) -> bool:  # pragma: no cover - compiled
    """No NaN and no infinity in ``data`` (``v - v`` is 0 exactly for finite ``v``)."""
    bad = 0
    for i in range(data.shape[0]):
        bad += int(data[i] - data[i] != 0)
    return bad == 0


PREFETCH = 2
"""Blocks read ahead of the scatter: with the one being read and the one being scattered, at
most ``PREFETCH + 2`` blocks are alive, so a reader may reuse a block's arrays ``PREFETCH + 3``
blocks later (``ring``)."""


RING_BLOCK_NNZ = 2_000_000
"""Stored values per block of a pass over a range of rows (at most the job's ``block_nnz``).
A block of 16 MB is still in the cache when the scatter reads it again after the count, and
the ring of ``PREFETCH + 3`` blocks per thread is 80 MB instead of 320 MB at 8 M values: fresh
memory costs system time to zero on first touch. Measured on the Poisson B100k (pass 1 alone,
two threads, 530 M values, blocks of 1, 2, 4 and 8 M values): 3.7-3.9, 3.6-4.0, 3.8-4.0 and
4.4-4.5 s wall, system time 1.6, 1.6-1.8, 1.9 and 2.6-2.7 s."""


BLOCK_ROWS, MIN_BLOCK_NNZ = 256, 1_000_000
"""A pass over a range of rows reads blocks of about :data:`BLOCK_ROWS` rows (an average
row's values each), so a record stores its cells in 8 bits (``_buckets.index_code``), but
never fewer than :data:`MIN_BLOCK_NNZ` values: below that, the records and writes per block
cost more than the byte a value saves."""


class Cancelled(Exception):
    """A range of rows stopped because an earlier one failed (never seen by callers of
    :func:`spill_by_gene`: the earlier range's error is raised instead)."""


def check_finite(
    source: MatrixSource, obs_names: Sequence[str], var_names: Sequence[str]
) -> Callable[[Block], None]:
    """A block check: the block lies inside the declared shape (else :class:`UnreadableInput`)
    and holds only finite values (else :class:`InvalidValue` naming the 1-based row and
    column, the cell and the gene). Pass 1 calls it only on a block whose count found a NaN or
    an infinity, to name it (:class:`GeneSpill`'s ``name_value``): the count checks every
    index and every value as it reads them."""

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
        if data.dtype in (np.float32, np.float64) and _all_finite(data):
            # one vectorized pass, no temporary: the float64 sum it replaces (a cast of every
            # value, then a pairwise sum) was 6 % of pass 1's samples on the Poisson B100k
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
    threads: int = 1,
    direct: bool = True,
    remote: Storage | None = None,
) -> GeneSpill | JoinedSpill:
    """Pass 1 over ``source``: every non-zero by gene bucket, in one :class:`GeneSpill`, or
    with ``threads`` > 1 and an input that reads row ranges, in one spill per range of rows
    joined in row order (:func:`spill_rows_in_threads`) when there are at least two blocks
    of ``block_nnz`` values per thread. ``direct``: the spill is written around the page
    cache where the file system allows it (``Settings.spill_direct``). ``remote``: each
    range's buckets are uploaded there as one object once spilled (in ranges of
    :func:`row_bounds`, ``threads`` at a time; an input that reads no range of rows alone is
    spilled whole, then uploaded), and pass 2 reads them from there (:func:`upload_part`
    reads each range's files back, as ``direct`` says they were written, and removes them).

    Pins the process's malloc policy first (:func:`~widecube.compute._malloc.bound_heap`):
    without it the heap grows with every block streamed, by pass 2 of B1M past 1 GB.
    """
    bound_heap()
    n_cells, n_genes = source.shape
    if remote is not None and source.row_ranges:
        return spill_rows_in_threads(
            source,
            row_bounds(n_cells, source.nnz_expected, threads, block_nnz),
            obs_names=obs_names,
            var_names=var_names,
            workdir=workdir,
            block_nnz=block_nnz,
            slab_bytes=slab_bytes,
            progress=progress,
            direct=direct,
            threads=threads,
            remote=remote,
        )
    threads = min(threads, n_cells, source.nnz_expected // (2 * block_nnz))
    if threads > 1 and source.row_ranges:
        return spill_rows_in_threads(
            source,
            [n_cells * i // threads for i in range(threads + 1)],
            obs_names=obs_names,
            var_names=var_names,
            workdir=workdir,
            block_nnz=block_nnz,
            slab_bytes=slab_bytes,
            progress=progress,
            direct=direct,
        )
    spill = _new_spill(source, workdir, slab_bytes, direct, check_finite(source, obs_names, var_names))
    try:
        for block in prefetch(source.iter_blocks(block_nnz=block_nnz)):
            spill.add(block)
            if progress is not None:
                m = block.matrix
                progress(m.shape[0] * m.shape[1] / (n_cells * n_genes))
    except BaseException:
        spill.cleanup()
        raise
    spill.close()
    if remote is None:
        return spill
    try:
        part = upload_part(spill.part(0, n_cells), remote, "p00000.spill")
    except BaseException:
        spill.cleanup()
        raise
    return JoinedSpill([part], n_cells=n_cells, n_genes=n_genes)


def row_bounds(n_cells: int, expected_nnz: int, threads: int, block_nnz: int) -> list[int]:
    """The first row of each range of a pass 1 split by rows (a cluster's tasks, or a
    spill uploaded range by range), and ``n_cells``: at least two ranges per thread, more
    for a large input (about 16 blocks of ``block_nnz`` values each).

    >>> len(row_bounds(10**7, 2 * 10**10, 16, 8_000_000)) - 1       # tasks of a 10^7-cell ingest
    157
    """
    n_tasks = max(1, min(n_cells, max(2 * threads, math.ceil(expected_nnz / (16 * block_nnz)))))
    return [n_cells * i // n_tasks for i in range(n_tasks + 1)]


def upload_part(part: SpillPart, storage: Storage, relpath: str) -> SpillPart:
    """A finished range's bucket files uploaded as one object ``relpath`` in ``storage``
    (:func:`~._spillstore.upload_files`), then removed: the part as pass 2 reads it from there."""
    paths = [bucket_path(part.dir, b) for b in range(part.geometry[1])]
    spilled = upload_files(paths, storage, relpath, direct=part.direct)
    shutil.rmtree(part.dir, ignore_errors=True)
    with contextlib.suppress(OSError):  # the range's own folder, if nothing else is there
        part.dir.parent.rmdir()
    return dataclasses.replace(part, remote=spilled)


def spill_rows_in_threads(
    source: MatrixSource,
    bounds: list[int],
    *,
    obs_names: Sequence[str],
    var_names: Sequence[str],
    workdir: Path,
    block_nnz: int,
    slab_bytes: int,
    progress: Callable[[float], None] | None = None,
    direct: bool = True,
    threads: int | None = None,
    remote: Storage | None = None,
) -> JoinedSpill:
    """Pass 1 over the row ranges ``bounds[i]..bounds[i+1]-1``, ``threads`` at a time (None:
    one thread each), into ``workdir/pass1/p<i>``, joined in row order; with ``remote``,
    each range uploaded there as ``p<i>.spill`` once spilled (:func:`upload_part`, by threads
    of their own while the others spill the next ranges; at most ``threads`` ranges wait for
    them on disk), and everything under ``remote`` removed if any range fails.

    ``source`` is shared: its reads must be safe from several threads (h5py's are: it
    serializes them under its own lock, while the scatter kernel and the file writes run
    free of the GIL). The first bad input in row order is raised, as one pass over every
    row would raise it: a failing range stops the ranges after it, not those before it
    (they may hold an earlier fault)."""
    n_cells, n_genes = source.shape
    root = workdir / "pass1"
    ranges = list(zip(bounds[:-1], bounds[1:], strict=True))
    stop_after = [len(ranges)]  # ranges at or after this index stop at their next block
    lock = threading.Lock()

    def cancelled(i: int) -> bool:
        return i > stop_after[0]

    def advance(fraction: float) -> None:
        if progress is not None:
            with lock:
                progress(fraction)

    def run(i: int, start: int, stop: int) -> SpillPart | Future[SpillPart]:
        try:
            part = spill_rows(
                source,
                start,
                stop,
                obs_names=obs_names,
                var_names=var_names,
                workdir=root / f"p{i:05d}",
                block_nnz=block_nnz,
                slab_bytes=slab_bytes,
                progress=advance,
                cancelled=lambda: cancelled(i),
                direct=direct,
            )
        except BaseException:
            with lock:
                stop_after[0] = min(stop_after[0], i)
            raise
        if remote is None:
            return part
        room.acquire()  # blocks while `threads` ranges wait for their upload: bounded disk
        try:
            return uploads.submit(upload, i, part)
        except BaseException:
            room.release()
            raise

    def upload(i: int, part: SpillPart) -> SpillPart:
        assert remote is not None  # submitted only then
        try:
            return upload_part(part, remote, f"p{i:05d}.spill")
        finally:
            room.release()

    # with the spill on a store, ranges are compressed and uploaded (as many at once as
    # threads spill: compressing is 2.3 s of CPU a GB) while the threads spill the next ones
    room = threading.BoundedSemaphore(threads or len(ranges))
    with (
        ThreadPoolExecutor(threads or len(ranges), thread_name_prefix="widecube-upload") as uploads,
        ThreadPoolExecutor(threads or len(ranges), thread_name_prefix="widecube-pass1") as pool,
    ):
        futures = [pool.submit(run, i, a, b) for i, (a, b) in enumerate(ranges)]
    try:
        done = [future.result() for future in futures]  # in row order: the earliest fault
        parts = [p if isinstance(p, SpillPart) else p.result() for p in done]
        return JoinedSpill(parts, n_cells=n_cells, n_genes=n_genes)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        if remote is not None:
            remote.remove()
        raise


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
    progress: Callable[[float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    direct: bool = True,
) -> SpillPart:
    """Pass 1 over rows ``start..stop-1`` of ``source`` (one task of a pass 1 split by rows)
    into a spill of its own in ``workdir``, with the bucket geometry every task of the same
    input computes alike; what a run of it killed before left there is removed first.

    ``progress(fraction of the whole matrix)`` after each block; ``cancelled()`` is asked
    before each block, and when it says so the spill is removed and :class:`Cancelled`
    raised. ``direct`` as :func:`spill_by_gene` says."""
    bound_heap()
    shutil.rmtree(workdir / "spill", ignore_errors=True)
    spill = _new_spill(source, workdir, slab_bytes, direct, check_finite(source, obs_names, var_names))
    n_cells, n_genes = source.shape
    try:
        per_block = min(
            block_nnz, RING_BLOCK_NNZ, max(MIN_BLOCK_NNZ, source.nnz_expected // max(1, n_cells) * BLOCK_ROWS)
        )
        blocks = source.iter_rows(start, stop, block_nnz=per_block, ring=PREFETCH + 3)
        for block in prefetch(blocks, depth=PREFETCH):  # holds at most PREFETCH + 2
            if cancelled is not None and cancelled():
                raise Cancelled(f"rows {start + 1}–{stop}: another range of rows failed")
            spill.add(block)
            if progress is not None:
                m = block.matrix
                progress(m.shape[0] * m.shape[1] / (n_cells * n_genes))
    except BaseException:
        spill.cleanup()
        raise
    spill.close()
    return spill.part(start, stop)


def _new_spill(
    source: MatrixSource, workdir: Path, slab_bytes: int, direct: bool, name_value: Callable[[Block], None]
) -> GeneSpill:
    n_cells, n_genes = source.shape
    return GeneSpill(
        workdir,
        n_cells=n_cells,
        n_genes=n_genes,
        dtype=source.dtype,
        expected_nnz=source.nnz_expected,
        slab_bytes=slab_bytes,
        where=source.path.name,
        direct=direct,
        name_value=name_value,
    )
