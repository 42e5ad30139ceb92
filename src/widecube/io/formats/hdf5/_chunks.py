"""Read a gzip-chunked 1-D HDF5 dataset on several cores: raw chunks out, inflated in threads.

Cell Ranger writes ``matrix/data`` and ``matrix/indices`` as gzip-4 chunks. h5py inflates
them in HDF5's filter pipeline with zlib, one chunk at a time under its global lock, so a
gzip 10x file read ~5 × slower than the same matrix stored plain. Here each chunk's
compressed bytes are fetched with ``read_direct_chunk`` (a copy, under the lock) and
inflated by ISA-L (``isal.isal_zlib``, which releases the GIL) on a thread pool, a block
ahead of the reader, and decoded by the same thread (:mod:`._shuffle`: the shuffle filter
undone and int64 narrowed in one numba pass) into an array reused from chunk to chunk.
Inflating the benchmark's gzip-4 10x file (0.6 GB out; CPU seconds, one
thread, ``benchmarks/readers.py`` data): ISA-L 1.03, libdeflate (``deflate``) 1.12, zlib-ng
1.53, zlib 2.37. ISA-L also streams gzip (the MTX reader uses it), libdeflate cannot.

Only the pipelines this module can undo are taken (gzip, or shuffle then gzip, with no
chunks missing); :func:`inflating_reader` returns None for anything else and the caller
reads through h5py as before. A chunk that does not inflate to its full size is reported
as corrupt, naming the file, the dataset and the chunk.

    >>> reader = inflating_reader(f["matrix/indices"], pool, where=path, dtype=np.int32)
    >>> reader[0:1_000_000]                                          # doctest: +SKIP
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import h5py
import numpy as np
from isal import isal_zlib

from ....errors import UnreadableInput
from ._shuffle import decode_into

__all__ = ["InflatingReader", "inflating_reader"]

_DEFLATE = h5py.h5z.FILTER_DEFLATE
_SHUFFLE = h5py.h5z.FILTER_SHUFFLE
_AHEAD = 64
"""Chunks queued past the span read, so the threads inflate while the caller works: enough
that they do not wait for the next read (Cell Ranger's 80,000-value chunks: 5 M values),
few enough that little fresh memory is faulted in for them (their arrays are reused)."""
_INFLATE_ERROR: type[Exception] = getattr(isal_zlib, "error")  # noqa: B009 - untyped in isal's stubs


def _pipeline(ds: h5py.Dataset) -> list[int] | None:
    """The dataset's filter ids in write order, or None when it is not chunked."""
    if ds.chunks is None:
        return None
    plist = ds.id.get_create_plist()
    return [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]


def inflating_reader(
    ds: h5py.Dataset, pool: ThreadPoolExecutor, *, where: object, dtype: np.dtype | type | None = None
) -> InflatingReader | None:
    """A threaded reader for ``ds`` when it is a 1-D numeric gzip (or shuffle+gzip) dataset
    with every chunk stored; None otherwise (read it with h5py)."""
    if ds.ndim != 1 or ds.dtype.kind not in "iuf":
        return None
    filters = _pipeline(ds)
    if filters not in ([_DEFLATE], [_SHUFFLE, _DEFLATE]):
        return None
    n_chunks = -(-ds.shape[0] // ds.chunks[0])
    if ds.id.get_num_chunks() != n_chunks:  # unwritten chunks read as fill values: leave to h5py
        return None
    return InflatingReader(ds, pool, shuffled=filters[0] == _SHUFFLE, where=where, dtype=dtype)


class InflatingReader:
    """Slices of a gzip-chunked dataset, its chunks inflated on ``pool``, one span read ahead.

    Reads are expected in ascending, adjacent spans (a block stream): after each read the
    next :data:`_AHEAD` chunks are queued, so the pool inflates them while the caller works on
    this one. Memory: one span and :data:`_AHEAD` chunks, decoded, at most.
    """

    def __init__(
        self,
        ds: h5py.Dataset,
        pool: ThreadPoolExecutor,
        *,
        shuffled: bool,
        where: object,
        dtype: np.dtype | type | None = None,
    ) -> None:
        self._dsid, self._name, self._n = ds.id, ds.name, int(ds.shape[0])
        self._chunk = int(ds.chunks[0])
        self._stored = np.dtype(ds.dtype)
        self._dtype = np.dtype(dtype or ds.dtype)
        self._shuffled, self._where, self._pool = shuffled, where, pool
        self._n_chunks = -(-self._n // self._chunk)
        self._pending: dict[int, Future[np.ndarray]] = {}
        self._spare: list[np.ndarray] = []  # decoded chunks already copied out, for reuse

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop = max(0, int(key.start or 0)), min(int(key.stop), self._n)
        out = np.empty(max(0, stop - start), dtype=self._dtype)
        if not len(out):
            return out
        c = self._chunk
        first, last = start // c, (stop - 1) // c
        ahead = min(self._n_chunks, last + 1 + _AHEAD)
        for k in [k for k in self._pending if k < first or k >= ahead]:
            self._pending.pop(k).cancel()  # not read in order: drop what was guessed
        futures = [
            self._pending.pop(k) if k in self._pending else self._pool.submit(self._inflate, k)
            for k in range(first, last + 1)
        ]
        for k in range(last + 1, ahead):
            if k not in self._pending:
                self._pending[k] = self._pool.submit(self._inflate, k)
        for k, fut in zip(range(first, last + 1), futures, strict=True):
            values = fut.result()
            lo, hi = max(start, k * c), min(stop, (k + 1) * c)
            out[lo - start : hi - start] = values[lo - k * c : hi - k * c]
            if k == last and stop < (last + 1) * c:  # the next span starts inside this chunk
                self._pending[last] = fut
            else:
                self._spare.append(values)
        return out

    def _inflate(self, k: int) -> np.ndarray:
        """Chunk ``k`` decoded into the reader's dtype (its full length: the tail of the last
        chunk is fill), in a spare array when there is one: inflated and decoded in the same
        thread while its bytes are in cache (:mod:`._shuffle`), and no fresh pages to fault in
        for the values."""
        nbytes = self._chunk * self._stored.itemsize
        what = f"chunk {k} (values {k * self._chunk}..{min(self._n, (k + 1) * self._chunk) - 1})"
        try:
            mask, raw = self._dsid.read_direct_chunk((k * self._chunk,))
        except (OSError, ValueError, KeyError) as exc:
            raise UnreadableInput(
                f"{self._where}: cannot read {what} of dataset {self._name} ({exc})"
            ) from exc
        gzip_bit = 2 if self._shuffled else 1  # a set bit: that filter was skipped for this chunk
        if not mask & gzip_bit:
            try:
                raw = isal_zlib.decompress(raw, bufsize=nbytes)
            except _INFLATE_ERROR as exc:
                raise UnreadableInput(
                    f"{self._where}: corrupt {what} of dataset {self._name}: it does not inflate ({exc})"
                ) from exc
        if len(raw) != nbytes:
            raise UnreadableInput(
                f"{self._where}: corrupt {what} of dataset {self._name}: "
                f"{len(raw)} bytes where the chunk holds {nbytes}"
            )
        try:
            values = self._spare.pop()
        except IndexError:
            values = np.empty(self._chunk, dtype=self._dtype)
        decode_into(
            np.frombuffer(raw, dtype=np.uint8),
            shuffled=self._shuffled and not mask & 1,
            stored=self._stored,
            n=self._chunk,
            lo=0,
            hi=self._chunk,
            out=values,
        )
        return values
