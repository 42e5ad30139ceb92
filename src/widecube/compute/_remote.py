"""Pass 1's buckets on an object store: each range of rows' spill uploaded as one object.

A cluster whose workers share no folder cannot hand pass 1's buckets to pass 2 through the
work folder. With ``WIDECUBE_SPILL=s3://bucket/prefix`` (:class:`~widecube.config.Settings`
``spill``) each range of rows (a pass-1 task on a cluster, or a thread's range in one process)
is spilled into local files as always, then uploaded as one object, its buckets' files one
after the other (:func:`upload_files`, a multipart upload of the store's part size: memory
holds a part, not the spill), and its local files removed: a process's local disk holds the
ranges it is spilling, not the matrix's spill. The part keeps where each bucket's bytes are
(:class:`SpillObject`); pass 2 reads a bucket as one byte range of each part's object
(:meth:`SpillObject.ranges`, read at once by :meth:`~widecube.snapshot.Storage.read_ranges`),
into the same buffer a local bucket file is read into, so the slabs are the same bytes.

One object per range of rows, not per bucket: a 10^7 x 50,000 ingest has about 160 ranges
and 256 buckets, 160 objects (a few hundred multipart parts) instead of 40,000 PUTs; pass 2
makes a GET per range and bucket either way. The objects are under ``<spill>/<job id>/``,
removed with the spill (``JoinedSpill.cleanup``) or, after a killed job, by
``pipeline.reclaim_orphans``; ``storage`` is the prefix of one run of pass 1, removed whole.

    >>> store = open_storage("s3://lab/spill").sub(job_id)                # doctest: +SKIP
    >>> spilled = upload_files(paths, store, "p00000.spill")             # doctest: +SKIP
    >>> spilled.ranges(7)                                                 # doctest: +SKIP
    ('p00000.spill', 18206, 21734)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..snapshot import Storage


__all__ = ["SpillObject", "upload_files"]

_READ = 4 << 20  # bytes read from a bucket file per chunk of the upload


@dataclass(frozen=True)
class SpillObject:
    """A range of rows' spill as one object: bucket ``b``'s bytes are ``ends[b-1]..ends[b]-1``
    of ``relpath`` in ``storage`` (picklable, as the storage is)."""

    storage: Storage
    relpath: str
    ends: tuple[int, ...]

    def ranges(self, bucket: int) -> tuple[str, int, int]:
        """``(relpath, start, end)`` of ``bucket``'s bytes, for ``Storage.read_ranges``."""
        return self.relpath, self.ends[bucket - 1] if bucket else 0, self.ends[bucket]

    def size(self, bucket: int) -> int:
        _, start, end = self.ranges(bucket)
        return end - start


def upload_files(paths: list[Path], storage: Storage, relpath: str) -> SpillObject:
    """Upload a finished range's bucket files (``paths``, bucket by bucket) as one object
    ``relpath`` in ``storage``; where each bucket's bytes are in it."""
    ends, at = [], 0
    for path in paths:
        at += path.stat().st_size
        ends.append(at)
    storage.put_stream(relpath, _concatenated(paths))
    return SpillObject(storage, relpath, tuple(ends))


def _concatenated(paths: list[Path]) -> Iterator[bytes]:
    """The files' bytes one after the other, in chunks (read through the page cache: the
    files were written around it, so nothing dirty is flushed first)."""
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(_READ):
                yield chunk
