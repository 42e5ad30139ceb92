"""The read side of the gene spill: buckets of non-zeros on disk into gene slabs (pass 2).

:class:`SpillBuckets` is all a pass-2 reader needs, picklable: where the buckets are and how
they are cut, so a task on another process (a Dask worker) reads the slabs of one bucket from
shared storage. A bucket is the files of one spill (:class:`~._spill.GeneSpill`) or of several:
a pass-1 task over a range of rows spills into a folder of its own and returns a
:class:`SpillPart`; :class:`JoinedSpill` puts the parts together in row order, and pass 2
reads a bucket's part files one after the other. The slabs are the same either way: a
bucket's values come in row order, and the counting sort by gene is stable. A part may also
be one object on an object store (:class:`~._spillstore.SpillObject`, ``WIDECUBE_SPILL``): a
bucket's bytes are then one byte range of it, read into the same buffer.

A bucket file is a sequence of records, one per block of rows that had values in the bucket
(:data:`HEADER`, then the genes, the cells and the values, each section padded to 8 bytes).
Genes are stored as offsets from the record's first possible gene and cells as offsets from
the block's first row, in 8 or 16 bits where they fit (buckets are at most 256 genes wide
where there are buckets enough, and pass 1's blocks hold about 256 rows); values in 8 or 16
bits when the block holds only non-negative integers and the record's fit, else in the
input's float type. Counts of a typical single-cell matrix take 3 bytes a value instead of
12, and every byte not written is a byte the kernel does not copy into the page cache in
pass 1 (copying the spill's 5 bytes a value into the page cache was 28 % of pass 1's samples
on the Poisson B100k, 2.7 GB). Pass 1 writes and pass 2 reads the files around the page cache
(:mod:`._direct`) unless the spill fits in a quarter of the memory available
(:func:`~._direct.around_the_cache`).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import shutil
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._direct import ALIGN, aligned_bytes, read_direct, read_whole
from ._kernels import RECORD_HEADER, RECORD_OK, RECORD_RANGE, RECORD_SHORT, pad8, sections, sort_records
from ._pool import ArrayPool

if TYPE_CHECKING:
    from ._spillstore import SpillObject

__all__ = [
    "INDEX_TYPES",
    "VALUE_TYPES",
    "GeneSlab",
    "JoinedSpill",
    "ReadBuffers",
    "SpillBuckets",
    "SpillPart",
    "append_record",
    "bucket_path",
    "index_code",
    "value_code",
]

HEADER = struct.Struct("<IBBBxqqq")
"""A record's header: magic, gene code, cell code, value code, values, gene base, cell base."""
MAGIC = 0x31534357  # b"WCS1"
INDEX_TYPES = (np.dtype(np.uint16), np.dtype(np.uint32), np.dtype(np.uint8))
"""Codes 0, 1 and 2 of a record's genes and cells (offsets from its gene and cell base)."""
VALUE_TYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32), np.dtype(np.float64))
"""Codes 0..3 of a record's values."""
_PAD = bytes(8)
_INDEX_CODE = {t: code for code, t in enumerate(INDEX_TYPES)}
_VALUE_CODE = {t: code for code, t in enumerate(VALUE_TYPES)}


def index_code(span: int) -> int:
    """The code of offsets ``0..span-1``: 8 bits where they fit, else 16, else 32.

    >>> [INDEX_TYPES[index_code(n)].name for n in (256, 257, 65536, 65537)]
    ['uint8', 'uint16', 'uint16', 'uint32']
    """
    return 2 if span <= 1 << 8 else 0 if span <= 1 << 16 else 1


def value_code(flags: int, largest: float, dtype: np.dtype) -> int:
    """The narrowest code for a block's values: 8 or 16 bits for non-negative integers
    (``flags`` bits 0 and 1 clear, as :func:`~._route.count_block` reports them) up to
    ``largest``, else the spill's float type ``dtype``."""
    if not flags & 3:
        if largest <= 0xFF:
            return 0
        if largest <= 0xFFFF:
            return 1
    return 2 if np.dtype(dtype) == np.float32 else 3


def append_record(
    fd: int, gene_base: int, cell_base: int, gene: np.ndarray, cell: np.ndarray, val: np.ndarray
) -> None:
    """Append one record to the bucket file open (for appending) as ``fd``, in one
    ``writev``: ``gene``/``cell`` are offsets from the bases, in one of :data:`INDEX_TYPES`,
    and ``val`` in one of :data:`VALUE_TYPES`. Pass 2 writes these when it splits an
    oversized bucket (pass 1 packs its records in a kernel, ``_route.scatter_records``): the
    codes are looked up in dicts and the arrays handed to ``writev`` as they are."""
    head = HEADER.pack(
        MAGIC,
        _INDEX_CODE[gene.dtype],
        _INDEX_CODE[cell.dtype],
        _VALUE_CODE[val.dtype],
        gene.shape[0],
        gene_base,
        cell_base,
    )
    parts: list[Any] = [head]
    total = HEADER.size
    for a in (gene, cell, val):
        parts.append(a)
        total += a.nbytes
        if a.nbytes % 8:
            parts.append(_PAD[: -a.nbytes % 8])
            total += -a.nbytes % 8
    got = os.writev(fd, parts)
    if got != total:  # a short write (interrupted): the rest, from where it stopped
        _writev_all(fd, [memoryview(p).cast("B") for p in parts], got)


def _writev_all(fd: int, views: list[memoryview], done: int = 0) -> None:
    while views:
        while views and done >= views[0].nbytes:
            done -= views[0].nbytes
            views.pop(0)
        if views and done:
            views[0], done = views[0][done:], 0
        if views:
            done = os.writev(fd, views)


@dataclass(frozen=True)
class _Record:
    n: int
    gene_base: int
    cell_base: int
    gene: np.dtype
    cell: np.dtype
    val: np.dtype
    nbytes: int  # after the header

    def arrays(self, body: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The record's three sections, viewed in ``body`` (its bytes after the header)."""
        out, at = [], 0
        for t in (self.gene, self.cell, self.val):
            out.append(body[at : at + self.n * t.itemsize].view(t))
            at += pad8(self.n * t.itemsize)
        return out[0], out[1], out[2]


def _header(raw: bytes, path: Path, at: int) -> _Record:
    """The header ``raw`` read at byte ``at`` of ``path``, read by the kernels' own parser."""
    if len(raw) != HEADER.size:
        raise _damaged(path, at, "a record is cut short")
    n, g, c, v, gene_base, cell_base, body, end = sections(np.frombuffer(raw, np.uint8), 0, MAGIC)
    if n < 0:
        raise _damaged(path, at, "not a record header")
    return _Record(n, gene_base, cell_base, INDEX_TYPES[g], INDEX_TYPES[c], VALUE_TYPES[v], end - body)


def _damaged(path: Path, at: int, what: str) -> OSError:
    return OSError(errno.EIO, f"spill file damaged: {path} at byte {at}: {what}")


def _records(path: Path, raw: ReadBuffers) -> Iterator[tuple[_Record, np.ndarray]]:
    """The records of the bucket file ``path`` in order, one at a time (splitting an
    oversized bucket), each with its body read into ``raw``'s byte buffer (a view valid
    until the next record)."""
    with open(path, "rb", buffering=0) as f:
        fd, size, at = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while at < size:
            record = _header(os.pread(fd, HEADER.size, at), path, at)
            body_at, at = at + HEADER.size, at + HEADER.size + record.nbytes
            if at > size:
                raise _damaged(path, body_at, "a record is cut short")
            body = raw.bytes(record.nbytes)
            if os.preadv(fd, [body.data], body_at) != record.nbytes:
                raise _damaged(path, body_at, "a record is cut short")
            yield record, body


@dataclass(frozen=True)
class GeneSlab:
    """Genes ``lo..hi-1`` in CSC order: gene ``lo+j`` has ``cells``/``vals`` [indptr[j]:indptr[j+1]]."""

    lo: int
    hi: int
    indptr: np.ndarray  # int64, hi - lo + 1
    cells: np.ndarray  # int32, ascending within each gene
    vals: np.ndarray  # the input's value type (float32 or float64)
    start: int = 0  # position of the slab's first value among all values in gene-major order

    @property
    def width(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True)
class SpillBuckets:
    """Where the buckets of a finished pass 1 are, and how to read them into slabs.

    ``dirs`` are the spill folders of the pass-1 tasks in row order (one for a single-process
    pass 1); bucket ``b`` (genes ``b*width .. (b+1)*width-1``) is the concatenation of its
    files in every folder. ``offsets[b]`` is the gene-major position of its first value and
    ``counts[d][b]`` the values of bucket ``b`` in folder ``d``, as pass 1 counted them;
    ``direct[d]`` whether folder ``d``'s files were written around the page cache (read back
    so; else mapped: a direct read of a file written through the cache would first write its
    dirty pages to the disk); ``remote[d]``, where given, the object part ``d`` was uploaded
    as (its folder is gone). Picklable, so a pass-2 task elsewhere reads its buckets from
    shared storage or the object store.
    """

    dirs: tuple[Path, ...]
    n_cells: int
    n_genes: int
    width: int
    n_buckets: int
    dtype: np.dtype
    slab_values: int
    offsets: tuple[int, ...]
    counts: tuple[tuple[int, ...], ...]
    direct: tuple[bool, ...]
    remote: tuple[SpillObject | None, ...] = ()

    @property
    def on_object_store(self) -> bool:
        """Whether any part's buckets are read from an object store (not a shared folder)."""
        return any(r is not None for r in self.remote)

    def genes(self, bucket: int) -> tuple[int, int]:
        """The genes ``lo..hi-1`` of ``bucket``."""
        return bucket * self.width, min(self.n_genes, (bucket + 1) * self.width)

    def slabs(
        self,
        bucket: int,
        *,
        consume: bool = True,
        scratch: Path | None = None,
        buffers: ReadBuffers | None = None,
    ) -> Iterator[GeneSlab]:
        """The slabs of ``bucket``, in gene order.

        ``consume`` removes the bucket's files as they are read (pass 2 in one process); a
        task that may run again (on a cluster) reads them without removing anything, and
        writes what it splits or concatenates under a folder of its own in ``scratch``.
        ``buffers``: where the bucket's files are read and sorted, kept from bucket to bucket
        by one reader (fresh ones for this bucket otherwise).
        """
        buffers = buffers if buffers is not None else ReadBuffers()
        lo, hi = self.genes(bucket)
        start = self.offsets[bucket]
        paths = [bucket_path(d, bucket) for d in self.dirs]
        n = sum(counts[bucket] for counts in self.counts)
        fetched = self._fetched(bucket)  # (object, bucket, compressed bytes) of a part on a store
        if n <= self.slab_values or hi - lo == 1:
            yield self._slab(
                paths, self.direct, n, lo, hi, start, remove=consume, buffers=buffers, fetched=fetched
            )
            return
        # too large for one slab: split into halves under a folder of its own, reading the
        # parts one after the other (no joined copy first); consumed parts go once split
        own = (scratch or self.dirs[0]) / f"task-{uuid.uuid4().hex}"
        own.mkdir(parents=True)
        try:
            if fetched is not None:  # the object parts' bytes as files, read record by record
                paths = _written(paths, fetched, own)
            yield from self._split(
                paths, bucket_path(own, bucket), lo, hi, start, remove=consume, buffers=buffers
            )
        finally:
            shutil.rmtree(own, ignore_errors=True)

    def remove(self, first: int, stop: int) -> None:
        """Remove the local files of buckets ``first..stop-1`` (a cluster's client, once the
        task that read them has returned: Dask runs a task again only until its result is
        in). A part on an object store has none: its object goes whole, with the spill's prefix."""
        for folder in self.dirs:
            _remove([bucket_path(folder, b) for b in range(first, stop)])

    def _slab(
        self,
        paths: list[Path],
        direct: tuple[bool, ...],
        n: int,
        lo: int,
        hi: int,
        start: int,
        *,
        buffers: ReadBuffers,
        remove: bool = False,
        fetched: list[Packed | None] | None = None,
    ) -> GeneSlab:
        """Genes ``lo..hi-1`` from the bucket files ``paths`` (in row order, ``n`` values in
        all, each written around the page cache where ``direct`` says so; where ``fetched``
        holds a part's bytes already, read from an object store, those), sorted by gene."""
        indptr = np.empty(hi - lo + 1, dtype=np.int64)
        cells, vals = buffers.output(n, np.int32), buffers.output(n, self.dtype)
        raw = _bucket_bytes(paths, direct, buffers, fetched)
        got, status, part, at = sort_records(raw, MAGIC, lo, hi - lo, self.n_cells, indptr, cells, vals)
        del raw  # the mappings are unmapped here, with their last arrays
        if status != RECORD_OK or got != n:  # the job's own file changed under it: an I/O
            where = paths[part]
            if status == RECORD_RANGE:  # fault, retried from scratch
                what = f"entry {got} is outside genes {lo}..{hi - 1} or cells 0..{self.n_cells - 1}"
            else:
                what = {RECORD_HEADER: "not a record header", RECORD_SHORT: "a record is cut short"}.get(
                    status, f"{got} values where pass 1 wrote {n}"
                )
            raise OSError(errno.EIO, f"spill file damaged: {where} at byte {at}: {what}")
        if remove:
            _remove(paths)
        return GeneSlab(lo, hi, indptr, cells, vals, start)

    def _fetched(self, bucket: int) -> list[Packed | None] | None:
        """For each part on an object store, its object, ``bucket`` and the bucket's
        compressed bytes, read at once (None for a local part); None when every part is local."""
        if not self.on_object_store:
            return None
        out: list[Packed | None] = [None if r is None else (r, bucket, b"") for r in self.remote]
        wanted = [(d, r) for d, r in enumerate(self.remote) if r is not None and r.size(bucket)]
        if wanted:
            got = wanted[0][1].storage.read_ranges([r.ranges(bucket) for _, r in wanted])
            for (d, r), data in zip(wanted, got, strict=True):
                out[d] = (r, bucket, data)
        return out

    def _split(
        self,
        paths: list[Path],
        out: Path,
        lo: int,
        hi: int,
        start: int,
        *,
        remove: bool,
        buffers: ReadBuffers,
    ) -> Iterator[GeneSlab]:
        """Re-bucket an oversized bucket (the files ``paths``, in row order) into halves
        ``out``a and ``out``b on disk, record by record (each record keeps its codes and
        bases); then the slabs of each half, split again while too large. ``remove``:
        ``paths`` are removed once split."""
        mid = (lo + hi) // 2
        halves = [out.with_name(out.stem + "a" + out.suffix), out.with_name(out.stem + "b" + out.suffix)]
        fds = [os.open(h, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) for h in halves]
        counts = [0, 0]
        try:
            for path in paths:
                for record, body in _records(path, buffers):
                    g, c, v = record.arrays(body)
                    low = g.astype(np.int64) + record.gene_base < mid
                    for side, keep in ((0, low), (1, ~low)):
                        if n := int(np.count_nonzero(keep)):
                            append_record(
                                fds[side], record.gene_base, record.cell_base, g[keep], c[keep], v[keep]
                            )
                            counts[side] += n
        finally:
            for fd in fds:
                os.close(fd)
        if remove:
            _remove(paths)
        for half, n, (a, b, at) in zip(
            halves, counts, ((lo, mid, start), (mid, hi, start + counts[0])), strict=True
        ):
            if n > self.slab_values and b - a > 1:
                yield from self._split([half], half, a, b, at, remove=True, buffers=buffers)
            else:  # the halves are written through the page cache (append_record)
                yield self._slab([half], (False,), n, a, b, at, remove=True, buffers=buffers)


def bucket_path(folder: Path, bucket: int) -> Path:
    """The file of ``bucket`` in a spill folder."""
    return folder / f"b{bucket:05d}.spill"


Packed = tuple["SpillObject", int, Any]
"""A bucket of a part on an object store: its object, the bucket, its compressed bytes."""


def _written(paths: list[Path], fetched: list[Packed | None], folder: Path) -> list[Path]:
    """``paths``, with each part read from an object store (``fetched``) decompressed into a
    file in ``folder`` instead."""
    out = []
    for d, (path, got) in enumerate(zip(paths, fetched, strict=True)):
        if got is None:
            out.append(path)
            continue
        obj, bucket, data = got
        local = folder / f"part{d:05d}.spill"
        local.write_bytes(obj.unpack(bucket, data, np.empty(obj.raw[bucket], dtype=np.uint8)).data)
        out.append(local)
    return out


def _bucket_bytes(
    paths: list[Path],
    direct: tuple[bool, ...],
    into: ReadBuffers,
    fetched: list[Packed | None] | None = None,
) -> list[np.ndarray]:
    """The bytes of each of a bucket's files: a part read from an object store already
    (``fetched[d]`` not None) decompressed into ``into``'s buffer; read around the page cache into ``into``'s
    aligned buffer where ``direct`` says the file was written so (``_direct``: a read that
    fills the page cache costs what writing through it would have), else mapped (written
    through the cache, or a file system without ``O_DIRECT``: the pages pass 1 left in the
    cache, without a copy; private mappings, so
    the arrays are writable like read buffers and the sort's types are the same; each is
    unmapped when its array is dropped). An empty file is an empty array; a file that can
    be neither read so nor mapped is read."""
    got_already: list[Packed | None] = fetched if fetched is not None else [None] * len(paths)
    sizes = [
        got[0].raw[got[1]] if got is not None else path.stat().st_size
        for path, got in zip(paths, got_already, strict=True)
    ]
    buffered = [data is not None or around for data, around in zip(got_already, direct, strict=True)]
    arena = into.bytes(sum(size + (-size % ALIGN) for size, b in zip(sizes, buffered, strict=True) if b))
    out, at = [], 0
    for path, size, around, data in zip(paths, sizes, direct, got_already, strict=True):
        if size == 0:
            out.append(np.empty(0, dtype=np.uint8))
            continue
        if data is not None:  # decompressed into the buffer a local file is read into
            obj, bucket, packed = data
            out.append(obj.unpack(bucket, packed, arena[at : at + size]))
            at += size + (-size % ALIGN)
            continue
        got = None
        if around:
            room = size + (-size % ALIGN)
            got = read_direct(path, arena[at : at + room])
            at += room
        if got is not None:
            out.append(got)
            continue
        with open(path, "rb", buffering=0) as f:
            try:
                view = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
            except OSError:  # a mount without mmap
                raw = np.empty(size, dtype=np.uint8)
                read_whole(f.fileno(), raw, size, path)
                out.append(raw)
                continue
        out.append(np.frombuffer(view, dtype=np.uint8))
    return out


class ReadBuffers:
    """What one reader of a spill reuses from bucket to bucket: the byte buffer a bucket's
    files are read into before its sort (or an oversized bucket's records while it is split),
    grown when a bucket needs more; and the sort's outputs (:meth:`output`), each handed out
    again once nothing refers to it (:class:`~._pool.ArrayPool`). Fresh outputs per slab were
    0.85 CPU-s of page zeroing in pass 2's reader on the Poisson B100k."""

    KEEP = 8
    """Outputs kept at most: the slabs alive at once (the one the views work on, the next,
    the one being sorted, one whose values wait for a background write) hold two each."""

    def __init__(self) -> None:
        self._raw = np.empty(0, dtype=np.uint8)
        self._outputs = ArrayPool(self.KEEP)

    def bytes(self, n: int) -> np.ndarray:
        """A byte buffer of ``n`` bytes starting at a multiple of ``_direct.ALIGN`` (a
        bucket's files, or one record's body when a bucket is split), reused from bucket to
        bucket."""
        if self._raw.shape[0] < n:
            self._raw = aligned_bytes(n)
        return self._raw[:n]

    def output(self, n: int, dtype: np.dtype[Any] | type) -> np.ndarray:
        """``n`` values of ``dtype`` (uninitialized) for a slab's sorted cells or values."""
        return self._outputs.take(n, dtype)


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class SpillPart:
    """What a pass-1 task over rows ``start..stop-1`` leaves: its spill folder (``dir``), its
    rows' library sizes and stored values, its buckets' sizes and value flags, and the
    spill's geometry ``(width, n_buckets, slab_values, dtype)``, and whether its files were
    written around the page cache (``direct``); ``remote``: the object its files were
    uploaded as (``dir`` is gone then)."""

    dir: Path
    start: int
    stop: int
    cell_total: np.ndarray
    cell_nnz: np.ndarray
    bucket_nnz: np.ndarray
    negative: bool
    non_integer: bool
    geometry: tuple[int, int, int, np.dtype]
    direct: bool
    remote: SpillObject | None = None


class JoinedSpill:
    """The spills of pass-1 tasks over consecutive row ranges, read by pass 2 as one spill.

    The per-cell totals are copied from the part that holds each cell, so they are the very
    numbers one spill over every row counts.
    """

    def __init__(self, parts: list[SpillPart], *, n_cells: int, n_genes: int) -> None:
        self.parts = sorted(parts, key=lambda p: p.start)
        if [p.start for p in self.parts] != [0, *(p.stop for p in self.parts[:-1])] or (
            self.parts[-1].stop != n_cells
        ):
            raise ValueError(f"pass-1 parts do not cover rows 0..{n_cells - 1} once each")
        if len({p.geometry[:3] for p in self.parts}) != 1:
            raise ValueError("pass-1 parts were spilled with different bucket geometries")
        self.width, self.n_buckets, self.slab_values, self.dtype = self.parts[0].geometry
        self.n_cells, self.n_genes = n_cells, n_genes
        self.cell_total = np.concatenate([p.cell_total for p in self.parts])
        self.cell_nnz = np.concatenate([p.cell_nnz for p in self.parts])
        self.bucket_nnz = np.sum([p.bucket_nnz for p in self.parts], axis=0)
        self.negative = any(p.negative for p in self.parts)
        self.non_integer = any(p.non_integer for p in self.parts)

    @property
    def nnz(self) -> int:
        return int(self.bucket_nnz.sum())

    def buckets(self) -> SpillBuckets:
        offsets = np.concatenate([[0], np.cumsum(self.bucket_nnz)[:-1]])
        return SpillBuckets(
            tuple(p.dir for p in self.parts),
            self.n_cells,
            self.n_genes,
            self.width,
            self.n_buckets,
            self.dtype,
            self.slab_values,
            tuple(int(o) for o in offsets),
            tuple(tuple(int(c) for c in p.bucket_nnz) for p in self.parts),
            tuple(p.direct for p in self.parts),
            tuple(p.remote for p in self.parts),
        )

    def slabs(self) -> Iterator[GeneSlab]:
        buckets, buffers = self.buckets(), ReadBuffers()
        for b in range(self.n_buckets):
            yield from buckets.slabs(b, buffers=buffers)

    def close(self) -> None:
        """Nothing is open here: each part was closed by its task."""

    def cleanup(self) -> None:
        stores = {p.remote.storage.url: p.remote.storage for p in self.parts if p.remote is not None}
        for store in stores.values():  # the run's prefix: one listing, every part's object
            store.remove()
        for p in self.parts:
            shutil.rmtree(p.dir, ignore_errors=True)
            with contextlib.suppress(OSError):  # the task's own folder, if nothing else is there
                p.dir.parent.rmdir()
