"""A binary CSR in the job's work folder: what text inputs become after one validating pass.

Text formats cannot say how many cells they hold, nor what the cell ids are, without being
read to the end, and the pipeline needs both before the first block. So CSV/TSV and MTX
readers parse the text exactly once, at open, and append each parsed slab here as CSR
(``data.bin``, ``indices.bin``, 2-byte indices when the columns allow; the row pointers stay
in memory, 8 bytes a cell). Blocks
are then read back with ``pread`` (not ``mmap``, so they do not count toward the
process's resident memory), and a second pass over genes costs no second parse.

:class:`TripletBuckets` handles coordinate entries that arrive in no particular order
(an MTX file not sorted by cell): entries are partitioned by cell range into bucket files,
and each bucket, small enough to sort in memory, becomes consecutive CSR rows.

    >>> spill = CsrSpill(work / "spill", n_cols=50_000, dtype=np.float32)   # doctest: +SKIP
    >>> spill.append(csr_slab); ...; stored = spill.finish()
    >>> for block in stored.iter_blocks(block_nnz=8_000_000, where="m.csv"): ...
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..._source import Block
from .._compressed import iter_row_slabs

__all__ = ["CsrSpill", "SpilledCsr", "TripletBuckets"]


class _FileArray:
    """A flat binary file read by slices, as if it were a 1-D numpy array."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.path, self.dtype = path, np.dtype(dtype)

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop = int(key.start or 0), int(key.stop)
        out = np.empty(max(0, stop - start), dtype=self.dtype)
        view = out.data.cast("B")
        with self.path.open("rb", buffering=0) as fh:
            fh.seek(start * self.dtype.itemsize)
            done = 0
            while done < len(view):
                n = fh.readinto(view[done:])
                if not n:
                    break
                done += n
        return out[: done // self.dtype.itemsize]


def index_dtype(n_cols: int) -> np.dtype:
    """How column indices are stored: 2 bytes when every column fits (65,536 genes and fewer,
    as in every Cell Ranger reference), else 4; a quarter less to write and read back for
    an integer matrix (the spill's cost is mostly the kernel's copying of its bytes)."""
    return np.dtype(np.uint16) if n_cols <= 1 << 16 else np.dtype(np.int32)


class SpilledCsr:
    """A CSR matrix stored in ``folder``; streamed back in row blocks."""

    def __init__(self, folder: Path, indptr: np.ndarray, n_cols: int, dtype: np.dtype) -> None:
        self.folder, self.indptr, self.n_cols, self.dtype = folder, indptr, n_cols, np.dtype(dtype)

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def iter_blocks(self, *, block_nnz: int, where: object) -> Iterator[Block]:
        """Full-width row blocks of at most about ``block_nnz`` stored values."""
        yield from iter_row_slabs(
            self.indptr,
            _FileArray(self.folder / "indices.bin", index_dtype(self.n_cols)),
            _FileArray(self.folder / "data.bin", self.dtype),
            n_rows=self.n_rows,
            n_cols=self.n_cols,
            nnz=self.nnz,
            block_nnz=block_nnz,
            where=where,
        )


class CsrSpill:
    """Appends row slabs (or raw entries already grouped by row) to a CSR in ``folder``."""

    def __init__(self, folder: Path, *, n_cols: int, dtype: np.dtype | type) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.n_cols, self.dtype = folder, n_cols, np.dtype(dtype)
        self._data = (folder / "data.bin").open("wb")
        self._indices = (folder / "indices.bin").open("wb")
        self._counts: list[np.ndarray] = []
        self._index_dtype = index_dtype(n_cols)

    def append(self, m: sp.csr_matrix) -> None:
        """Add the rows of ``m`` after those already stored."""
        self.append_entries(np.diff(m.indptr), m.indices, m.data)

    def append_entries(self, row_counts: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
        """Add rows given as per-row entry counts and their (column, value) entries in row order."""
        np.ascontiguousarray(cols, dtype=self._index_dtype).tofile(self._indices)
        np.ascontiguousarray(values, dtype=self.dtype).tofile(self._data)
        self._counts.append(np.asarray(row_counts, dtype=np.int64))

    def finish(self, counts: np.ndarray | None = None) -> SpilledCsr:
        """Close the files; ``counts`` (entries per row) overrides the appended row counts."""
        self._data.close()
        self._indices.close()
        if counts is None:
            counts = np.concatenate(self._counts) if self._counts else np.zeros(0, np.int64)
        indptr = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return SpilledCsr(self.folder, indptr, self.n_cols, self.dtype)

    def abort(self) -> None:
        """Close the files after a failure (the work folder is removed by its owner)."""
        self._data.close()
        self._indices.close()


class TripletBuckets:
    """Unordered (row, col, value) entries, partitioned by row range into bucket files."""

    def __init__(
        self, folder: Path, *, n_rows: int, nnz: int, bucket_nnz: int, dtype: np.dtype | type
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.n_rows = folder, n_rows
        n_buckets = min(512, max(1, math.ceil(nnz / max(1, bucket_nnz))), max(1, n_rows))
        self.rows_per = max(1, math.ceil(n_rows / n_buckets))
        self.n_buckets = math.ceil(n_rows / self.rows_per) if n_rows else 1
        self.record = np.dtype([("row", np.int32), ("col", np.int32), ("val", np.dtype(dtype))])
        self._files = [(folder / f"bucket-{b}.bin").open("wb") for b in range(self.n_buckets)]

    def add(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
        """Append entries to the buckets of their rows."""
        bucket = rows // self.rows_per
        order = np.argsort(bucket, kind="stable")
        recs = np.empty(len(rows), dtype=self.record)
        recs["row"], recs["col"], recs["val"] = rows[order], cols[order], values[order]
        bounds = np.searchsorted(bucket[order], np.arange(self.n_buckets + 1))
        for b in range(self.n_buckets):
            if bounds[b + 1] > bounds[b]:
                recs[bounds[b] : bounds[b + 1]].tofile(self._files[b])

    def drain_into(self, spill: CsrSpill) -> SpilledCsr:
        """Sort each bucket by (row, col) and append it to ``spill``; remove the bucket files."""
        counts = np.zeros(self.n_rows, dtype=np.int64)
        for fh in self._files:
            fh.close()
        for b in range(self.n_buckets):
            path = self.folder / f"bucket-{b}.bin"
            recs = np.fromfile(path, dtype=self.record)
            os.unlink(path)
            order = np.lexsort((recs["col"], recs["row"]))
            recs = recs[order]
            lo = b * self.rows_per
            counts[lo : lo + self.rows_per] = np.bincount(
                recs["row"] - lo, minlength=min(self.rows_per, self.n_rows - lo)
            )
            spill.append_entries(np.zeros(0), recs["col"], recs["val"])
        return spill.finish(counts)

    def abort(self) -> None:
        for fh in self._files:
            fh.close()
