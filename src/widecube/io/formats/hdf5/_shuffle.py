"""Decode the bytes of an inflated HDF5 chunk into the reader's array, undoing the shuffle
filter and narrowing int64 indices to int32 in the same pass.

Cell Ranger stores ``matrix/data`` (int32) and ``matrix/indices`` (int64) with HDF5's shuffle
filter before gzip: a chunk of ``n`` values of ``k`` bytes is stored as ``k`` planes of ``n``
bytes, byte ``b`` of value ``i`` at ``b * n + i``. numpy undid it with a transposed copy and
then a second copy into the slab, and narrowed the indices with ``clip`` + ``astype``: on the
benchmark's 10x file (``benchmarks/readers.py``, 50 M values) 0.60 + 0.16 CPU-s, as much as
inflating it (0.69 CPU-s with ISA-L). The numba kernels here read the planes and write each
value once, straight into its place in the slab, and release the GIL so the inflating
threads run meanwhile.

Values are assembled little-endian; a stored type that is not little-endian, not 4 or 8
bytes, or a cast other than int64 → int32 goes through numpy as before. Narrowing saturates
(an index past int32 becomes 2³¹ − 1, a negative one below −2³¹ becomes −2³¹), as HDF5's own
conversion does, so an out-of-range index stays out of range and is reported by the checks.

    >>> decode_into(raw, shuffled=True, stored=np.dtype("<i8"), n=80_000, lo=0, hi=10, out=out)
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["decode_into"]

_INT32_MAX = 2**31 - 1
_INT32_MIN = -(2**31)


# Each kernel slices the planes first and loops from 0 with unsigned 32-bit shifts: written
# so, LLVM vectorises the loop (0.15 ns a value, measured); indexing ``raw[b * n + i]`` in the
# loop kept it scalar (3 ns a value, slower than numpy's transposed copy).


@numba.njit(cache=True, nogil=True)
def _plane(raw: np.ndarray, n: int, b: int, lo: int, hi: int) -> np.ndarray:
    """Byte ``b`` of values ``lo..hi-1`` (a contiguous slice of the chunk)."""
    return raw[b * n + lo : b * n + hi]


@numba.njit(cache=True, nogil=True)
def _word(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, i: int) -> np.uint32:
    return (
        np.uint32(p0[i])
        | (np.uint32(p1[i]) << np.uint32(8))
        | (np.uint32(p2[i]) << np.uint32(16))
        | (np.uint32(p3[i]) << np.uint32(24))
    )


@numba.njit(cache=True, nogil=True)
def _unshuffle4(raw: np.ndarray, n: int, lo: int, hi: int, out: np.ndarray) -> None:
    """Values ``lo..hi-1`` of a chunk of ``n`` 4-byte values, shuffled, into ``out`` (uint32)."""
    p0, p1, p2, p3 = (
        _plane(raw, n, 0, lo, hi),
        _plane(raw, n, 1, lo, hi),
        _plane(raw, n, 2, lo, hi),
        _plane(raw, n, 3, lo, hi),
    )
    for i in range(hi - lo):
        out[i] = _word(p0, p1, p2, p3, i)


@numba.njit(cache=True, nogil=True)
def _unshuffle8(raw: np.ndarray, n: int, lo: int, hi: int, out: np.ndarray) -> None:
    """Values ``lo..hi-1`` of a chunk of ``n`` 8-byte values, shuffled, into ``out`` (uint64)."""
    p0, p1, p2, p3 = (
        _plane(raw, n, 0, lo, hi),
        _plane(raw, n, 1, lo, hi),
        _plane(raw, n, 2, lo, hi),
        _plane(raw, n, 3, lo, hi),
    )
    p4, p5, p6, p7 = (
        _plane(raw, n, 4, lo, hi),
        _plane(raw, n, 5, lo, hi),
        _plane(raw, n, 6, lo, hi),
        _plane(raw, n, 7, lo, hi),
    )
    for i in range(hi - lo):
        out[i] = np.uint64(_word(p0, p1, p2, p3, i)) | (np.uint64(_word(p4, p5, p6, p7, i)) << np.uint64(32))


@numba.njit(cache=True, nogil=True)
def _narrow(low: np.uint32, high: np.uint32) -> np.int32:
    """The int64 ``high:low`` as int32, saturated."""
    if high == 0:
        return np.int32(low) if low <= _INT32_MAX else np.int32(_INT32_MAX)
    if high == 0xFFFFFFFF and low >= 0x80000000:
        return np.int32(np.int64(low) - 4294967296)
    return np.int32(_INT32_MAX) if high < 0x80000000 else np.int32(_INT32_MIN)


@numba.njit(cache=True, nogil=True)
def _unshuffle8_to_int32(raw: np.ndarray, n: int, lo: int, hi: int, out: np.ndarray) -> None:
    """Values ``lo..hi-1`` of a chunk of ``n`` int64, shuffled, into ``out`` (int32, saturated).

    The low words are written first (vectorised); the high words are only OR-ed together, and
    the values are revisited one by one only when some high word is not zero."""
    p0, p1, p2, p3 = (
        _plane(raw, n, 0, lo, hi),
        _plane(raw, n, 1, lo, hi),
        _plane(raw, n, 2, lo, hi),
        _plane(raw, n, 3, lo, hi),
    )
    p4, p5, p6, p7 = (
        _plane(raw, n, 4, lo, hi),
        _plane(raw, n, 5, lo, hi),
        _plane(raw, n, 6, lo, hi),
        _plane(raw, n, 7, lo, hi),
    )
    m = hi - lo
    high_any = np.uint8(0)
    for i in range(m):
        high_any |= p4[i] | p5[i] | p6[i] | p7[i]
    if high_any == 0:
        for i in range(m):
            low = _word(p0, p1, p2, p3, i)
            out[i] = np.int32(low) if low <= _INT32_MAX else np.int32(_INT32_MAX)
        return
    for i in range(m):
        out[i] = _narrow(_word(p0, p1, p2, p3, i), _word(p4, p5, p6, p7, i))


@numba.njit(cache=True, nogil=True)
def _int64_to_int32(values: np.ndarray, out: np.ndarray) -> None:
    """``values`` (int64) into ``out`` (int32), saturated."""
    for i in range(len(values)):
        v = values[i]
        out[i] = _INT32_MAX if v > _INT32_MAX else (_INT32_MIN if v < _INT32_MIN else v)


def _little(dtype: np.dtype) -> bool:
    return dtype.byteorder == "<" or (dtype.byteorder in "=|" and np.little_endian)


def decode_into(
    raw: np.ndarray, *, shuffled: bool, stored: np.dtype, n: int, lo: int, hi: int, out: np.ndarray
) -> None:
    """Write values ``lo..hi-1`` of an inflated chunk (``raw``: ``n`` values of ``stored``,
    as bytes, shuffled or not) into ``out`` (``hi - lo`` long, the reader's dtype)."""
    k = stored.itemsize
    fast = _little(stored) and stored.kind in "iuf" and k in (4, 8) and out.flags.c_contiguous
    narrow = stored == np.dtype("<i8") and out.dtype == np.dtype(np.int32)
    if fast and shuffled and out.dtype == stored:
        _unshuffle4(raw, n, lo, hi, out.view(np.uint32)) if k == 4 else _unshuffle8(
            raw, n, lo, hi, out.view(np.uint64)
        )
        return
    if fast and shuffled and narrow:
        _unshuffle8_to_int32(raw, n, lo, hi, out)
        return
    if shuffled:  # any other layout: numpy's transposed copy
        raw = np.ascontiguousarray(raw.reshape(k, n).T).reshape(-1)
    values = raw.view(stored)[lo:hi]
    if fast and narrow:
        _int64_to_int32(values, out)
    elif out.dtype == stored:
        out[:] = values
    elif out.dtype.kind in "iu" and stored.kind in "iu":  # saturate, as HDF5's own conversion does
        info = np.iinfo(out.dtype)
        out[:] = np.clip(values, info.min, info.max)
    else:
        out[:] = values.astype(out.dtype)
