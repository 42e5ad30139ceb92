"""The out-of-core transpose: row blocks in, gene slabs (all cells of a gene contiguous) out.

Pass 1 (:meth:`GeneSpill.add`) routes each block's non-zeros to the bucket of its gene, an
append-only file of records in the job's work folder (:mod:`._buckets` says how a record
stores them in as few bytes as they allow), and counts every cell's library size on the way.
Pass 2 (:meth:`GeneSpill.slabs`, through :class:`~._buckets.SpillBuckets`) reads one bucket
at a time, counting-sorts it by gene into CSC order and yields it as a :class:`GeneSlab`.
Buckets are sized so one slab fits the memory budget; a bucket that outgrows it (skewed genes)
is split again on disk before it is loaded. Memory never depends on the number of cells beyond
the per-cell library sizes.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..errors import InvalidValue, UnreadableInput
from ..io import Block
from ._buckets import (
    INDEX_TYPES,
    MAGIC,
    VALUE_TYPES,
    GeneSlab,
    ReadBuffers,
    SpillBuckets,
    SpillPart,
    bucket_path,
    index_code,
    value_code,
)
from ._direct import StagedFiles
from ._route import (
    BAD_COLUMN,
    BAD_POINTER,
    BAD_VALUE,
    NEGATIVE,
    NON_INTEGER,
    SCATTER_OK,
    count_block,
    record_sizes,
    scatter_records,
)

__all__ = ["BYTES_PER_VALUE", "MAX_BUCKETS", "GeneSlab", "GeneSpill", "bucket_geometry", "chunk_buckets"]

BYTES_PER_VALUE = 12  # gene int32 + cell int32 + value float32 in a slab (5-16 on disk)
MAX_BUCKETS = 256  # one open file each; oversized buckets are split on disk in pass 2
NARROW_NNZ = 1 << 26  # past this many values, buckets narrow enough for 8-bit gene offsets


def bucket_geometry(n_genes: int, expected_nnz: int, slab_bytes: int) -> tuple[int, int]:
    """``(width, n_buckets)`` of a spill: genes per bucket (also the column chunk of every
    per-group view array) and buckets (pass 2's tasks on a cluster). About two slabs of
    ``slab_bytes`` per bucket, at most :data:`MAX_BUCKETS`; for a spill of more than
    :data:`NARROW_NNZ` values, buckets at most 256 genes wide where that many buckets are
    allowed, so a record stores its genes in 8 bits (one byte a value less on disk).

    >>> bucket_geometry(50_000, 2 * 10**10, 2 * 1024**3 // 16)
    (196, 256)
    >>> bucket_geometry(30_000, 530_000_000, 2 * 1024**3 // 16)  # 95 buckets of 316 otherwise
    (255, 118)
    """
    slab_values = max(1, slab_bytes // BYTES_PER_VALUE)
    wanted = math.ceil(2 * expected_nnz / slab_values)
    if expected_nnz > NARROW_NNZ:
        wanted = max(wanted, math.ceil(n_genes / 256))
    n_buckets = max(1, min(n_genes, MAX_BUCKETS, wanted))
    width = math.ceil(n_genes / n_buckets)
    return width, math.ceil(n_genes / width)


MAX_CHUNK_BUCKETS = 4
"""At most this many buckets per column chunk of a per-group view array."""


def chunk_buckets(n_buckets: int, nnz: int, slab_values: int) -> int:
    """Buckets per column chunk of the per-group view arrays, which is also how many buckets
    a pass-2 task on a cluster takes (a task writes whole chunks only): as many as hold about
    four slabs of values (``slab_values`` each; ``nnz`` values in all), at most
    :data:`MAX_CHUNK_BUCKETS`. From the spill alone, so one process and a cluster store the
    same chunks.

    A chunk per bucket made B1M's snapshot 16,434 objects, 12,240 of them chunks of its 48
    per-group arrays (255 buckets of 118 genes), each one PUT and, by verify, one GET; four
    buckets a chunk make them 3,072. A large matrix keeps a chunk per bucket: its buckets
    hold several slabs each already, and its pass 2 needs each bucket as a task of its own to
    keep 128 workers busy.

    >>> chunk_buckets(256, 2 * 10**10, 2 * 1024**3 // 16 // BYTES_PER_VALUE)  # 10^7 x 50,000
    1
    >>> chunk_buckets(255, 2 * 10**9, 2 * 1024**3 // 16 // BYTES_PER_VALUE)  # B1M
    4
    >>> chunk_buckets(1, 10**6, 2 * 1024**3 // 16 // BYTES_PER_VALUE)
    1
    """
    per_bucket = max(1, math.ceil(nnz / max(1, n_buckets)))
    return max(1, min(MAX_CHUNK_BUCKETS, n_buckets, 4 * max(1, slab_values) // per_bucket))


class GeneSpill:
    """Buckets of non-zeros by gene range, on disk, plus per-cell totals."""

    def __init__(
        self,
        workdir: Path,
        *,
        n_cells: int,
        n_genes: int,
        dtype: np.dtype,
        expected_nnz: int,
        slab_bytes: int,
        where: object = "input",
        direct: bool = True,
        name_value: Callable[[Block], None] | None = None,
    ) -> None:
        """``direct``: write the bucket files around the page cache where the file system
        allows it (:class:`~._direct.StagedFiles`); pass 2 reads them back the way they were
        written. ``name_value(block)`` raises the error naming a block's first NaN or
        infinity with its cell and gene (``_pass.check_finite``), for a block whose count
        found one; without it the error names the row and column."""
        self.where = where  # names the input in errors
        self.name_value = name_value
        self.dir = workdir / "spill"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n_cells, self.n_genes = n_cells, n_genes
        self.dtype = np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)
        self.slab_values = max(1, slab_bytes // BYTES_PER_VALUE)
        self.width, self.n_buckets = bucket_geometry(n_genes, expected_nnz, slab_bytes)
        self.cell_total = np.zeros(n_cells, dtype=np.float64)
        self.cell_nnz = np.zeros(n_cells, dtype=np.int64)
        self.bucket_nnz = np.zeros(self.n_buckets, dtype=np.int64)
        self.negative = False
        self.non_integer = False
        self._run_ends = np.empty(0, dtype=np.int32)  # count_block's runs, reused by add()
        self._ptr = np.empty(self.n_buckets + 1, dtype=np.int64)
        self._max = np.empty(self.n_buckets, dtype=np.float64)  # bounds on buckets' largest values
        self._gene_type = INDEX_TYPES[index_code(self.width)]
        self._bucket_of = (np.arange(n_genes, dtype=np.int64) // self.width).astype(np.int32)
        self._record_size = np.zeros(self.n_buckets, dtype=np.int64)  # a block's, bucket by bucket
        self._head = np.array([MAGIC, index_code(self.width), 0, 0], dtype=np.int64)  # of a record
        self._no_narrowing = np.zeros(self.n_buckets, dtype=np.bool_)
        # open for the whole of pass 1, closed by close()
        self._files = StagedFiles([bucket_path(self.dir, b) for b in range(self.n_buckets)], direct=direct)

    @property
    def nnz(self) -> int:
        return int(self.bucket_nnz.sum())

    def add(self, block: Block) -> None:
        """Pass 1: route one block's non-zeros to their buckets (refusing any index outside
        the declared shape, which the kernel reports instead of writing out of bounds), one
        record per bucket, in the narrowest types its values allow: counts in 8 bits in every
        bucket whose counts fit, even when another bucket's need 16."""
        m = block.matrix
        ptr = self._ptr
        flags, error, at = count_block(
            m.indptr,
            m.indices,
            m.data,
            block.row_start,
            block.col_start,
            self._bucket_of,
            self.width,
            self.n_cells,
            ptr,
            self._max,
            self._runs(m.indices.shape[0]),
        )
        if error != SCATTER_OK:
            raise self._refused(block, error, at)
        cell_type = INDEX_TYPES[index_code(m.shape[0])]
        val_code = value_code(flags, float(self._max.max()), self.dtype)
        val_type = VALUE_TYPES[val_code]
        self.negative |= bool(flags & NEGATIVE)
        self.non_integer |= bool(flags & NON_INTEGER)
        # 16-bit counts: 8 bits in each bucket whose counts fit
        narrow8 = (self._max <= 0xFF) if val_type == VALUE_TYPES[1] else self._no_narrowing
        self._head[2:] = (index_code(m.shape[0]), val_code)
        sizes = (self._gene_type.itemsize, cell_type.itemsize, val_type.itemsize)
        record_sizes(ptr, narrow8, *sizes, self._record_size)
        starts = self._files.reserve(self._record_size)  # where each bucket's file goes on
        arena = self._files.arena  # after reserve(), which may have made a larger one
        done = scatter_records(
            m.indptr,
            m.indices,
            m.data,
            block.row_start,
            block.col_start,
            self._bucket_of,
            self.width,
            flags,
            self._run_ends,
            ptr,
            self.cell_total,
            self.cell_nnz,
            narrow8,
            self._head,
            starts,
            arena,
            arena.view(self._gene_type),
            arena.view(cell_type),
            arena.view(val_type),
        )
        if not done:  # pragma: no cover - the arena's room is reserved from ptr just above
            raise RuntimeError("pass 1: records larger than the room reserved for them")
        self.bucket_nnz += np.diff(ptr)

    def _runs(self, n: int) -> np.ndarray:
        """Where count_block notes each run's end (one per stored value at most), kept from
        block to block (fresh arrays per block cost a page fault per 4 KiB written)."""
        if self._run_ends.shape[0] < n:
            self._run_ends = np.empty(n, dtype=np.int32)
        return self._run_ends

    def _refused(self, block: Block, error: int, at: int) -> UnreadableInput | InvalidValue:
        m, first = block.matrix, block.row_start + 1
        if error == BAD_VALUE:
            if self.name_value is not None:
                self.name_value(block)  # raises, naming the cell and the gene
            row = block.row_start + int(np.searchsorted(m.indptr, at, side="right"))
            col = int(m.indices[at]) + block.col_start + 1
            return InvalidValue(f"{self.where}: NaN or infinite value found at row {row}, column {col}")
        if error == BAD_COLUMN:
            row = block.row_start + int(np.searchsorted(m.indptr, at, side="right"))
            col = int(m.indices[at]) + block.col_start + 1
            return UnreadableInput(
                f"{self.where}: corrupt matrix: column {col} at row {row} is outside "
                f"the matrix (columns 1–{self.n_genes})"
            )
        if error == BAD_POINTER:
            return UnreadableInput(
                f"{self.where}: corrupt matrix: the stored values of row {first + at} "
                "are out of order or past the end of the block"
            )
        return UnreadableInput(
            f"{self.where}: corrupt matrix: a block of rows {first}–"
            f"{block.row_start + m.shape[0]} lies outside the matrix "
            f"(rows 1–{self.n_cells})"
        )

    def close(self) -> None:
        self._run_ends = np.empty(0, dtype=np.int32)
        self._files.close()

    def part(self, start: int, stop: int) -> SpillPart:
        """What a pass-1 task that spilled rows ``start..stop-1`` hands back (after close)."""
        return SpillPart(
            self.dir,
            start,
            stop,
            self.cell_total[start:stop].copy(),
            self.cell_nnz[start:stop].copy(),
            self.bucket_nnz.copy(),
            self.negative,
            self.non_integer,
            (self.width, self.n_buckets, self.slab_values, self.dtype),
            self._files.direct,
        )

    def buckets(self) -> SpillBuckets:
        """The read side of this spill (after :meth:`close`), for pass 2 here or elsewhere."""
        offsets = np.concatenate([[0], np.cumsum(self.bucket_nnz)[:-1]])
        return SpillBuckets(
            (self.dir,),
            self.n_cells,
            self.n_genes,
            self.width,
            self.n_buckets,
            self.dtype,
            self.slab_values,
            tuple(int(o) for o in offsets),
            (tuple(int(c) for c in self.bucket_nnz),),
            (self._files.direct,),
        )

    def slabs(self) -> Iterator[GeneSlab]:
        """Pass 2: every gene, in order, as CSC slabs that fit the budget."""
        self.close()
        buckets, buffers = self.buckets(), ReadBuffers()
        for b in range(self.n_buckets):
            yield from buckets.slabs(b, buffers=buffers)

    def cleanup(self) -> None:
        with contextlib.suppress(OSError):  # a write that failed: raised already, files going
            self.close()
        shutil.rmtree(self.dir, ignore_errors=True)
