"""The read side of the gene spill: buckets of non-zeros on disk into gene slabs (pass 2).

:class:`SpillBuckets` is all a pass-2 reader needs, picklable: where the buckets are and how
they are cut, so a task on another process (a Dask worker) reads the slabs of one bucket from
shared storage. A bucket is the files of one spill (:class:`~._spill.GeneSpill`) or of several:
a pass-1 task over a range of rows spills into a folder of its own and returns a
:class:`SpillPart`; :class:`JoinedSpill` puts the parts together in row order, and pass 2
reads a bucket's part files one after the other. The slabs are the same either way: a
bucket's values come in row order, and the counting sort by gene is stable.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._kernels import sort_bucket

__all__ = ["FILES", "GeneSlab", "JoinedSpill", "ReadBuffers", "SpillBuckets", "SpillPart", "bucket_stem"]

FILES = ("gene", "cell", "val")
"""The three append-only files of a bucket: gene int32, cell int32, value."""


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
    files in every folder. ``offsets[b]`` is the gene-major position of its first value.
    Picklable, so a pass-2 task elsewhere reads its buckets from shared storage.
    """

    dirs: tuple[Path, ...]
    n_cells: int
    n_genes: int
    width: int
    n_buckets: int
    dtype: np.dtype
    slab_values: int
    offsets: tuple[int, ...]

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
        ``buffers``: where the bucket's files are read before the sort, kept from bucket to
        bucket by one reader (fresh arrays otherwise).
        """
        lo, hi = self.genes(bucket)
        start = self.offsets[bucket]
        stems = [bucket_stem(d, bucket) for d in self.dirs]
        if sum(_values(stem) for stem in stems) <= self.slab_values or hi - lo == 1:
            yield self._slab(stems, lo, hi, start, remove=consume, buffers=buffers)
            return
        # too large for one slab: split into halves under a folder of its own, reading the
        # parts one after the other (no joined copy first); consumed parts go once split
        own = (scratch or self.dirs[0]) / f"task-{uuid.uuid4().hex}"
        own.mkdir(parents=True)
        try:
            yield from self._split(
                stems, bucket_stem(own, bucket), lo, hi, start, remove=consume, buffers=buffers
            )
        finally:
            shutil.rmtree(own, ignore_errors=True)

    def _slab(
        self,
        stems: list[Path],
        lo: int,
        hi: int,
        start: int,
        *,
        remove: bool = False,
        buffers: ReadBuffers | None = None,
    ) -> GeneSlab:
        """Genes ``lo..hi-1`` from the file sets ``stems`` (in row order), sorted by gene."""
        n = sum(_values(stem) for stem in stems)
        into = buffers if buffers is not None else ReadBuffers()
        gene, cell, val = into.arrays(n, self.dtype)
        for name, array in (("gene", gene), ("cell", cell), ("val", val)):
            _read_into(array, [stem.with_suffix(f".{name}") for stem in stems])
        if remove:
            _remove(stems)
        indptr = np.empty(hi - lo + 1, dtype=np.int64)
        cells = np.empty_like(cell)
        vals = np.empty_like(val)
        bad = sort_bucket(gene, cell, val, lo, hi - lo, self.n_cells, indptr, cells, vals)
        if bad >= 0:  # the job's own file changed under it: an I/O fault, retried from scratch
            where = stems[0] if len(stems) == 1 else f"bucket {stems[0].name} of {len(stems)} parts"
            raise OSError(
                errno.EIO,
                f"spill file damaged: entry {bad} of {where} is outside "
                f"genes {lo}..{hi - 1} or cells 0..{self.n_cells - 1}",
            )
        return GeneSlab(lo, hi, indptr, cells, vals, start)

    def _split(
        self,
        stems: list[Path],
        out: Path,
        lo: int,
        hi: int,
        start: int,
        *,
        remove: bool,
        buffers: ReadBuffers | None = None,
    ) -> Iterator[GeneSlab]:
        """Re-bucket an oversized bucket (the file sets ``stems``, in row order) into halves
        ``out``a and ``out``b on disk, streaming it in pieces of a slab; then the slabs of each
        half, split again while too large. ``remove``: ``stems`` are removed once split."""
        mid = (lo + hi) // 2
        halves = [out.with_name(out.name + "a"), out.with_name(out.name + "b")]
        outs = [{n: open(h.with_suffix(f".{n}"), "wb") for n in FILES} for h in halves]  # noqa: SIM115
        step = self.slab_values
        try:
            for stem in stems:
                with (
                    open(stem.with_suffix(".gene"), "rb") as fg,
                    open(stem.with_suffix(".cell"), "rb") as fc,
                    open(stem.with_suffix(".val"), "rb") as fv,
                ):
                    while True:
                        gene = np.fromfile(fg, dtype=np.int32, count=step)
                        if gene.size == 0:
                            break
                        cell = np.fromfile(fc, dtype=np.int32, count=gene.size)
                        val = np.fromfile(fv, dtype=self.dtype, count=gene.size)
                        low = gene < mid
                        for side, keep in ((0, low), (1, ~low)):
                            outs[side]["gene"].write(gene[keep].data)
                            outs[side]["cell"].write(cell[keep].data)
                            outs[side]["val"].write(val[keep].data)
        finally:
            for files in outs:
                for f in files.values():
                    f.close()
        if remove:
            _remove(stems)
        first = _values(halves[0])
        for half, (a, b, at) in zip(halves, ((lo, mid, start), (mid, hi, start + first)), strict=True):
            if _values(half) > self.slab_values and b - a > 1:
                yield from self._split([half], half, a, b, at, remove=True, buffers=buffers)
            else:
                yield self._slab([half], a, b, at, remove=True, buffers=buffers)


def bucket_stem(folder: Path, bucket: int) -> Path:
    return folder / f"b{bucket:05d}"


def _values(stem: Path) -> int:
    """Values in the bucket file set ``stem``."""
    return stem.with_suffix(".cell").stat().st_size // 4


class ReadBuffers:
    """The arrays a bucket's files are read into before its sort, grown when a bucket needs
    more and reused otherwise: fresh arrays per bucket cost a page fault per 4 KiB read (the
    sort's outputs, handed to the views in the slab, stay fresh per slab)."""

    def __init__(self) -> None:
        self._gene = np.empty(0, dtype=np.int32)
        self._cell = np.empty(0, dtype=np.int32)
        self._val: np.ndarray = np.empty(0, dtype=np.float32)

    def arrays(self, n: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._gene.shape[0] < n:
            self._gene = np.empty(n, dtype=np.int32)
            self._cell = np.empty(n, dtype=np.int32)
        if self._val.shape[0] < n or self._val.dtype != dtype:
            self._val = np.empty(max(n, self._val.shape[0]), dtype=dtype)
        return self._gene[:n], self._cell[:n], self._val[:n]


def _read_into(array: np.ndarray, paths: list[Path]) -> None:
    """Fill ``array`` with the files ``paths`` one after the other (exactly its size)."""
    view = array.data.cast("B")
    at = 0
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while True:
                got = f.readinto(view[at:])
                if not got:
                    break
                at += got
    if at != view.nbytes:
        raise OSError(
            errno.EIO, f"spill file changed while read: {paths[0]} holds {at} of {view.nbytes} bytes"
        )


def _remove(stems: list[Path]) -> None:
    for stem in stems:
        for name in FILES:
            stem.with_suffix(f".{name}").unlink(missing_ok=True)


@dataclass(frozen=True)
class SpillPart:
    """What a pass-1 task over rows ``start..stop-1`` leaves: its spill folder (``dir``), its
    rows' library sizes and stored values, its buckets' sizes and value flags, and the
    spill's geometry ``(width, n_buckets, slab_values, dtype)``."""

    dir: Path
    start: int
    stop: int
    cell_total: np.ndarray
    cell_nnz: np.ndarray
    bucket_nnz: np.ndarray
    negative: bool
    non_integer: bool
    geometry: tuple[int, int, int, np.dtype]


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
        )

    def slabs(self) -> Iterator[GeneSlab]:
        buckets, buffers = self.buckets(), ReadBuffers()
        for b in range(self.n_buckets):
            yield from buckets.slabs(b, buffers=buffers)

    def close(self) -> None:
        """Nothing is open here: each part was closed by its task."""

    def cleanup(self) -> None:
        for p in self.parts:
            shutil.rmtree(p.dir, ignore_errors=True)
            with contextlib.suppress(OSError):  # the task's own folder, if nothing else is there
                p.dir.parent.rmdir()
