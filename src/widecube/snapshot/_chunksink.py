"""Writes that reach the store as whole chunks only.

A view fills its arrays slab by slab, and a slab need not cover whole chunks: a per-group
array's column chunk spans several spill buckets (``BuildContext.chunk_width``), the matrix
view's 1-D chunks straddle slabs. Written as they come, zarr would write such a chunk once per
piece and read it back before each later piece (on an object store a PUT and a GET each);
:class:`ChunkSink` keeps the pieces of a chunk until they cover it and then writes it once.
The snapshot writer's :meth:`~widecube.snapshot.SnapshotWriter.put` goes through one; a
pass-2 task on a cluster has its own, and hands back the pieces of chunks it did not cover
whole (:meth:`ChunkSink.leftovers`: other tasks hold the rest), which the client joins.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import zarr

__all__ = ["ChunkSink", "Piece"]

Piece = tuple["zarr.Array[Any]", tuple[tuple[int, int], ...], np.ndarray]
"""``(array, ((start, stop) per dimension), values)``: part of a chunk not covered whole."""

Write = Callable[["zarr.Array[Any]", tuple[slice, ...], np.ndarray], None]


def _write_now(array: zarr.Array[Any], region: tuple[slice, ...], values: np.ndarray) -> None:
    array[region] = values


class ChunkSink:
    """A ``put(array, region, values)`` that writes whole chunks only, through ``write``
    (default: at once, in the caller's thread).

    A region whose chunks it covers whole goes to ``write`` as it is (one call); otherwise each
    chunk the region covers whole is written on its own, and a piece of any other chunk is
    kept until the pieces cover that chunk, then written whole. What remains incomplete
    (:meth:`leftovers`) is the caller's: another writer holds the rest of those chunks.
    Values handed over must not change afterwards (whole-chunk regions are not copied).
    """

    def __init__(self, write: Write = _write_now) -> None:
        self._write = write
        self._pieces: dict[tuple[str, tuple[int, ...]], list[Piece]] = {}
        self._covered: dict[tuple[str, tuple[int, ...]], int] = {}

    def __call__(self, array: zarr.Array[Any], region: tuple[slice, ...], values: np.ndarray) -> None:
        bounds = [s.indices(n)[:2] for s, n in zip(region, array.shape, strict=True)]
        chunks = array.chunks
        edges = zip(bounds, chunks, array.shape, strict=True)
        aligned = all(a % c == 0 and (b % c == 0 or b == n) for (a, b), c, n in edges)
        if aligned:
            self._write(array, region, values)
            return
        grid = [range(a // c, math.ceil(b / c)) for (a, b), c in zip(bounds, chunks, strict=True)]
        for idx in itertools.product(*grid):
            whole = [(i * c, min((i + 1) * c, n)) for i, c, n in zip(idx, chunks, array.shape, strict=True)]
            inter = [(max(a, ca), min(b, cb)) for (a, b), (ca, cb) in zip(bounds, whole, strict=True)]
            sub = values[tuple(slice(ia - a, ib - a) for (ia, ib), (a, _) in zip(inter, bounds, strict=True))]
            if inter == whole:
                self._write(array, tuple(slice(a, b) for a, b in inter), sub)
                continue
            key = (f"{array.store}/{array.path}", idx)
            self._pieces.setdefault(key, []).append((array, tuple(inter), np.array(sub)))
            self._covered[key] = self._covered.get(key, 0) + int(sub.size)
            if self._covered[key] == math.prod(b - a for a, b in whole):
                self._write_whole(whole, self._pieces.pop(key))
                del self._covered[key]

    def _write_whole(self, whole: Sequence[tuple[int, int]], pieces: list[Piece]) -> None:
        array = pieces[0][0]
        buf = np.empty(tuple(b - a for a, b in whole), dtype=pieces[0][2].dtype)
        for _, inter, values in pieces:
            buf[tuple(slice(a - ca, b - ca) for (a, b), (ca, _) in zip(inter, whole, strict=True))] = values
        self._write(array, tuple(slice(a, b) for a, b in whole), buf)

    def leftovers(self, *, forget: bool = False) -> list[Piece]:
        """The pieces of chunks not covered whole (other writers hold the rest); ``forget``:
        the caller takes them, and this sink holds none afterwards."""
        pieces = [p for pieces in self._pieces.values() for p in pieces]
        if forget:
            self._pieces.clear()
            self._covered.clear()
        return pieces
