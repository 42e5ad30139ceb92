"""Pass 1's buckets on an object store: each range of rows' spill uploaded as one object.

A cluster whose workers share no folder cannot hand pass 1's buckets to pass 2 through the
work folder. With ``WIDECUBE_SPILL=s3://bucket/prefix`` (:class:`~widecube.config.Settings`
``spill``) each range of rows (a pass-1 task on a cluster, or a thread's range in one process)
is spilled into local files as always, then uploaded as one object, its buckets one after the
other, each compressed on its own (:func:`upload_files`, a multipart upload of the store's part
size: memory holds a part and a bucket, not the spill), and its local files removed: a
process's local disk holds the ranges it is spilling, not the matrix's spill. The part keeps
where each bucket's bytes are and how long they are once decompressed (:class:`SpillObject`);
pass 2 reads a bucket as one byte range of each part's object (:meth:`SpillObject.ranges`,
read at once by :meth:`~widecube.snapshot.Storage.read_ranges`) and decompresses it into the
buffer a local bucket file is read into (:meth:`SpillObject.unpack`), so the slabs are the
same bytes.

Compressed with LZ4 (numcodecs, zarr's own codecs), as Spark compresses its shuffle files by
default, each bucket's bytes checked by their CRC-32C (kept beside its size): LZ4 has no
checksum of its own (one byte flipped in a bucket's stream, the tests' bucket of 1,761 bytes
each byte in turn, decoded to other bytes of the right length at 1,258 positions). Every
byte sent costs the network, the store's requests and its disk (and here, LocalBucket's CPU
on the ingest's own cores: 3.4 s a GiB stored, whether in 8 MiB parts or 32 MiB objects,
0.3 s a GiB read). Measured on the demo-data B100k's spill (2.1 GB of records, 236 bucket
files, one core of an Intel VM, 2026-12-05): Zstandard at level 1 (this store's codec
before) 2.89 times smaller for 2.34 s a GB compressed and 1.11 s decompressed; at level -7
2.19 times, 1.50 and 0.73 s; LZ4 2.29 times, 1.38 and 0.36 s, the CRC 0.1 s. With the
store's CPU, 4.7 s a GB of records with Zstandard, 3.6 with LZ4. A damaged byte fails the
checksum (or the decoding): an ``EIO``, so the step is tried again, never other numbers.

One object per range of rows, not per bucket: a 10^7 x 50,000 ingest has about 160 ranges
and 256 buckets, 160 objects (a few hundred multipart parts) instead of 40,000 PUTs; pass 2
makes a GET per range and bucket either way. The objects are under ``<spill>/<job id>/``,
removed with the spill (``JoinedSpill.cleanup``) or, after a killed job, by
``pipeline.reclaim_orphans``; ``storage`` is the prefix of one run of pass 1, removed whole.

    >>> store = open_storage("s3://lab/spill").sub(job_id)                # doctest: +SKIP
    >>> spilled = upload_files(paths, store, "p00000.spill")             # doctest: +SKIP
    >>> spilled.ranges(7), spilled.raw[7]                                 # doctest: +SKIP
    (('p00000.spill', 18206, 21734), 9914)
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._direct import ALIGN, aligned_bytes, read_direct, read_whole

if TYPE_CHECKING:
    from ..snapshot import Storage


__all__ = ["SpillObject", "upload_files"]


def _codec() -> Any:
    from numcodecs import LZ4

    return LZ4()


def _crc(data: np.ndarray) -> int:
    import google_crc32c

    return int(google_crc32c.value(data))


@dataclass(frozen=True)
class SpillObject:
    """A range of rows' spill as one object: bucket ``b``'s compressed bytes are
    ``ends[b-1]..ends[b]-1`` of ``relpath`` in ``storage``, ``raw[b]`` bytes once
    decompressed, their CRC-32C ``crc[b]`` (picklable, as the storage is)."""

    storage: Storage
    relpath: str
    ends: tuple[int, ...]
    raw: tuple[int, ...]
    crc: tuple[int, ...]

    def ranges(self, bucket: int) -> tuple[str, int, int]:
        """``(relpath, start, end)`` of ``bucket``'s bytes, for ``Storage.read_ranges``."""
        return self.relpath, self.ends[bucket - 1] if bucket else 0, self.ends[bucket]

    def size(self, bucket: int) -> int:
        """The compressed size of ``bucket`` in the object (0: no values)."""
        _, start, end = self.ranges(bucket)
        return end - start

    def unpack(self, bucket: int, data: Any, out: np.ndarray) -> np.ndarray:
        """``bucket``'s bytes ``data`` (as read) decompressed into ``out`` (``raw[bucket]``
        bytes); a checksum or size that does not match is an ``EIO`` naming the object."""
        if not self.raw[bucket]:
            return out[:0]
        try:
            got: np.ndarray = _codec().decode(data, out=out)
        except (RuntimeError, ValueError) as exc:
            raise self._damaged(str(exc)) from None
        if got.nbytes != self.raw[bucket]:
            raise self._damaged(f"bucket {bucket} decoded to {got.nbytes} bytes, not {self.raw[bucket]}")
        if _crc(got) != self.crc[bucket]:
            raise self._damaged(f"bucket {bucket}'s CRC-32C differs")
        return got

    def _damaged(self, why: str) -> OSError:
        return OSError(errno.EIO, f"spill object damaged: {self.storage.url}/{self.relpath}: {why}")


def upload_files(paths: list[Path], storage: Storage, relpath: str, *, direct: bool = False) -> SpillObject:
    """Upload a finished range's bucket files (``paths``, bucket by bucket) as one object
    ``relpath`` in ``storage``, each bucket compressed; where each bucket's bytes are in it.
    ``direct``: the files were written around the page cache, and are read back so."""
    raw: list[int] = []
    ends: list[int] = []
    crc: list[int] = []
    storage.put_stream(relpath, _packed(paths, raw, ends, crc, direct))
    return SpillObject(storage, relpath, tuple(ends), tuple(raw), tuple(crc))


def _packed(
    paths: list[Path], raw: list[int], ends: list[int], crc: list[int], direct: bool
) -> Iterator[bytes]:
    """Each file's bytes compressed, one after the other (each read whole: a bucket of one
    range of rows; around the page cache where ``direct`` says they were written so, else
    through it), noting each one's size, CRC-32C and where it ends.

    Each file is read into one aligned buffer reused for the range (grown to its largest
    file): a fresh ``bytes`` a file cost 0.57 s of CPU a GB against 0.18 (page-cached files
    of 2.6 MB, the size of B1M's buckets of one range), most of it faulting in new pages."""
    codec, at = _codec(), 0
    buffer = aligned_bytes(0)
    for path in paths:
        size = path.stat().st_size
        if size + ALIGN > buffer.size:
            buffer = aligned_bytes(size + ALIGN)
        if not direct or read_direct(path, buffer) is None:
            with open(path, "rb", buffering=0) as f:
                read_whole(f.fileno(), buffer, size, path)
        packed = codec.encode(buffer[:size]) if size else b""
        crc.append(_crc(buffer[:size]) if size else 0)
        raw.append(size)
        at += len(packed)
        ends.append(at)
        yield packed
