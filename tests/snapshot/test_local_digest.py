"""A local file's digest and its fetched copy, across the reused read buffer's boundaries:
``sha256_file``, ``LocalStorage.sha256`` and ``LocalStorage.fetch`` against hashlib over the
whole bytes (read with one ``read_bytes``, independent of widecube's pieces)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from widecube.snapshot import open_storage, sha256_file

PIECE = 1 << 18  # the reused buffer's size in snapshot._store (_PIECE) and hashlib.file_digest


@pytest.mark.parametrize("size", [0, 1, PIECE - 1, PIECE, PIECE + 1, 5 * PIECE + 12_345])
def test_digest_and_fetch_equal_hashlib_over_the_whole_file(tmp_path: Path, size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "f.bin").write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(tmp_path / "store" / "f.bin") == expected
    storage = open_storage(tmp_path / "store")
    assert storage.sha256("f.bin") == expected
    fetched = storage.fetch("f.bin", tmp_path / "copy" / "f.bin")
    assert (tmp_path / "copy" / "f.bin").read_bytes() == data
    assert (fetched.sha256, fetched.size) == (expected, size)
