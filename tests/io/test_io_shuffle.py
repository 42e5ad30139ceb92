"""Decoding inflated HDF5 chunks (``io/formats/hdf5/_shuffle.py``) against the references:
bytes shuffled by h5py's own shuffle filter (read back raw with ``read_direct_chunk``) must
decode to what h5py reads through its filter pipeline, and int64 → int32 narrowing must
saturate as numpy's ``clip`` does."""

from __future__ import annotations

import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from widecube.io.formats.hdf5._shuffle import decode_into

CHUNK = 1000


def _stored_chunks(tmp_path: Path, values: np.ndarray, *, shuffle: bool) -> tuple[h5py.File, h5py.Dataset]:
    f = h5py.File(tmp_path / "c.h5", "w")
    ds = f.create_dataset("x", data=values, chunks=(CHUNK,), compression="gzip", shuffle=shuffle)
    return f, ds


def _raw(ds: h5py.Dataset, k: int) -> np.ndarray:
    mask, raw = ds.id.read_direct_chunk((k * CHUNK,))
    assert mask == 0
    return np.frombuffer(zlib.decompress(raw), dtype=np.uint8)


VALUES = {
    "<i4": np.arange(-1500, 1500, dtype="<i4") * 70_001,
    "<f4": np.linspace(-3.5, 1e6, 3000, dtype="<f4"),
    "<f8": np.linspace(-1e300, 1e300, 3000, dtype="<f8"),
    "<i8": np.arange(3000, dtype="<i8") * 3_000_000_007 - 4_500_000_000_000,
    "<u4": np.arange(3000, dtype="<u4") * 1_400_001,
    ">i4": np.arange(-1500, 1500, dtype=">i4") * 70_001,  # big-endian: numpy's path
    "<i2": np.arange(-1500, 1500, dtype="<i2"),  # 2 bytes: numpy's path
}


@pytest.mark.parametrize("dtype", list(VALUES))
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize(("lo", "hi"), [(0, CHUNK), (17, 18), (333, 999), (5, 5)])
def test_decode_matches_h5py(dtype: str, shuffle: bool, lo: int, hi: int, tmp_path: Path) -> None:
    values = VALUES[dtype]
    f, ds = _stored_chunks(tmp_path, values, shuffle=shuffle)
    with f:
        stored = np.dtype(ds.dtype)
        for k in range(3):
            out = np.full(hi - lo, 7, dtype=stored)
            decode_into(_raw(ds, k), shuffled=shuffle, stored=stored, n=CHUNK, lo=lo, hi=hi, out=out)
            want = ds[k * CHUNK + lo : k * CHUNK + hi]
            assert len(want) == hi - lo
            np.testing.assert_array_equal(out, want)


NARROW = np.array(
    [0, 1, 2**31 - 1, 2**31, -1, -(2**31), -(2**31) - 1, 2**40, -(2**40), 2**63 - 1, -(2**63), 12345],
    dtype="<i8",
)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("inside", [True, False])
def test_int64_indices_narrow_to_int32_saturated(shuffle: bool, inside: bool, tmp_path: Path) -> None:
    """Every value in int32's range (the common case, decoded without looking at each high
    word), or some outside it: each saturates as ``np.clip`` does, so it stays out of range."""
    rng = np.random.default_rng(0)
    values = rng.integers(0, 30_000, 3 * CHUNK).astype("<i8")
    if not inside:
        values[1000 : 1000 + len(NARROW)] = NARROW
    f, ds = _stored_chunks(tmp_path, values, shuffle=shuffle)
    with f:
        for k in range(3):
            out = np.empty(CHUNK, dtype=np.int32)
            decode_into(
                _raw(ds, k), shuffled=shuffle, stored=np.dtype("<i8"), n=CHUNK, lo=0, hi=CHUNK, out=out
            )
            want = np.clip(values[k * CHUNK : (k + 1) * CHUNK], -(2**31), 2**31 - 1).astype(np.int32)
            np.testing.assert_array_equal(out, want)
