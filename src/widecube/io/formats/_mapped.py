"""An HDF5 dataset's values read by mapping its file, where they lie there as raw bytes.

An h5ad's ``X/indices`` and ``X/data`` are stored without filters (anndata's default), in
chunks written one after another, with a gap wherever HDF5 put its chunk index between them
(190 gaps among 8,087 chunks of the Poisson B100k: extents of 2.8 M values on average).
h5py reads a range by copying it twice (the page cache into HDF5's buffers, then into the
array; ``_copy_to_iter`` and ``memmove`` were 13 % and 6 % of pass 1's samples), one read at
a time under h5py's lock. A range inside one extent is instead mapped (``MAP_POPULATE``: its
pages entered in one call, in the reading thread): no copy, no lock. Measured over
``X/data`` of that file in blocks, with the values summed: 1.10 CPU-s (0.67 s system) read by
h5py, 0.73-0.77 (0.11-0.16 system) mapped.

Only what is certain is mapped: a 1-D native numeric type, no filter of any kind, no external
storage, every chunk present and full-sized, the extents inside the file, and three values
read through the mapping equal to h5py's reads of the same positions. Anything else
(compressed 10x files, a user block the offsets do not count) is read by h5py as before.

The file must not shrink while it is read: touching a mapped page past the end of a file
truncated meanwhile kills the process (``SIGBUS``) where a read would have failed cleanly.
Uploads and object-store inputs are the job's own copies; a watched file and a path given to
``widecube ingest`` are read where they are, so replacing one (a new file renamed over it) is
safe, the mapping keeps the old file, but truncating it while an ingest reads it is not
(``cp new.h5ad inbox/x.h5ad`` over an entry being ingested does). That is why the servers never
run a job in their own process: ``widecube serve`` and ``widecube watch`` run jobs in a
supervised ``widecube work`` child (``pipeline._supervise``), which dies alone, and the job
records ``killed by signal 7 (SIGBUS)``; ``widecube ingest`` and ``watch --once`` are
one-shot commands whose process is the job's.
"""

from __future__ import annotations

import math
import mmap
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FileSpan", "file_span"]

_PAGE = mmap.ALLOCATIONGRANULARITY
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


@dataclass(frozen=True)
class FileSpan:
    """Values ``0..n-1`` of type ``dtype`` in the file open as ``fd``, in extents: values
    ``starts[i]..starts[i+1]-1`` lie back to back from byte ``offsets[i]`` (``starts`` ends
    with ``n``)."""

    fd: int
    starts: np.ndarray
    offsets: np.ndarray
    n: int
    dtype: np.dtype

    def extent_end(self, s: int) -> int:
        """The end of the extent holding value ``s`` (``n`` past the last)."""
        i = int(np.searchsorted(self.starts, s, side="right")) - 1
        return int(self.starts[min(i + 1, len(self.starts) - 1)])

    def view(self, s: int, e: int, into: np.ndarray) -> np.ndarray:
        """Values ``s..e-1`` (clipped to ``n``): read-only, in a mapping of their own, when
        they lie in one extent; else copied from their extents' mappings into ``into`` (or a
        fresh array when it is too short)."""
        s, e = max(0, min(s, self.n)), max(0, min(e, self.n))
        if e <= s:
            return np.empty(0, self.dtype)
        i = int(np.searchsorted(self.starts, s, side="right")) - 1
        if e <= self.starts[i + 1]:
            return self._map(i, s, e)
        out = into[: e - s] if into.shape[0] >= e - s else np.empty(e - s, self.dtype)
        at = s
        while at < e:
            stop = min(e, int(self.starts[i + 1]))
            out[at - s : stop - s] = self._map(i, at, stop)
            at, i = stop, i + 1
        return out

    def _map(self, i: int, s: int, e: int) -> np.ndarray:
        start = int(self.offsets[i]) + (s - int(self.starts[i])) * self.dtype.itemsize
        base = start - start % _PAGE
        length = start + (e - s) * self.dtype.itemsize - base
        flags = mmap.MAP_SHARED | _POPULATE
        window = mmap.mmap(self.fd, length, flags=flags, prot=mmap.PROT_READ, offset=base)
        return np.frombuffer(window, self.dtype, count=e - s, offset=start - base)

    def close(self) -> None:
        os.close(self.fd)


def file_span(dataset: Any) -> FileSpan | None:
    """The mapping of an h5py 1-D ``dataset``'s values, or None where h5py must read them."""
    try:
        return _span(dataset)
    except (AttributeError, TypeError, ValueError, OSError, RuntimeError, KeyError):
        return None  # any doubt: h5py reads it


def _span(dataset: Any) -> FileSpan | None:
    dtype = np.dtype(dataset.dtype)
    if dataset.ndim != 1 or dtype.kind not in "iuf" or not dtype.isnative or dataset.external:
        return None
    if dataset.id.get_create_plist().get_nfilters() != 0:
        return None
    n = int(dataset.shape[0])
    extents = _extents(dataset, n, dtype.itemsize) if n else None
    if extents is None:
        return None
    starts, offsets = extents
    fd = os.open(dataset.file.filename, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    span = FileSpan(fd, starts, offsets, n, dtype)
    try:
        ends = offsets + (starts[1:] - starts[:-1]) * dtype.itemsize
        if os.fstat(fd).st_size < int(ends.max()) or not _agrees(span, dataset):
            span.close()
            return None
    except BaseException:
        span.close()
        raise
    return span


def _extents(dataset: Any, n: int, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(starts, offsets)`` of the runs of values lying back to back in the file, or None."""
    if dataset.chunks is None:
        at = dataset.id.get_offset()
        return None if at is None else (np.array([0, n], np.int64), np.array([int(at)], np.int64))
    (chunk,) = dataset.chunks
    expected = math.ceil(n / chunk)
    if dataset.id.get_num_chunks() != expected:  # a chunk never written holds the fill value
        return None
    where = np.full(expected, -1, dtype=np.int64)

    def note(info: Any) -> None:
        i = info.chunk_offset[0] // chunk
        if info.filter_mask == 0 and info.size == chunk * size and 0 <= i < expected:
            where[i] = info.byte_offset

    if hasattr(dataset.id, "chunk_iter"):
        dataset.id.chunk_iter(note)
    else:  # pragma: no cover - HDF5 before 1.12.3
        for i in range(expected):
            note(dataset.id.get_chunk_info(i))
    if (where < 0).any():
        return None
    first = np.concatenate([[0], np.flatnonzero(np.diff(where) != chunk * size) + 1])
    return np.append(first * chunk, n).astype(np.int64), where[first]


def _agrees(span: FileSpan, dataset: Any) -> bool:
    """Three values read through the mapping equal h5py's (the offsets count what we think)."""
    for k in {0, span.n // 2, span.n - 1}:
        if span.view(k, k + 1, np.empty(1, span.dtype)).tobytes() != np.asarray(dataset[k : k + 1]).tobytes():
            return False
    return True
