"""The decoded cache's size bound: least recently used files go first, the new one stays; and a
version's folder evicted during a decode."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from widecube.snapshot._cache import SUFFIX, cached_bytes, evict_lru, map_cached


def _array(tmp: Path, name: str, n: int) -> zarr.Array:
    arr = zarr.create_array(tmp / "src" / name, shape=(n,), dtype="f8")
    arr[...] = np.arange(n, dtype="f8") + len(name)
    return arr


def _age(path: Path, seconds_ago: float) -> None:
    t = path.stat().st_mtime - seconds_ago
    os.utime(path.with_name(path.name + SUFFIX), (t, t))


def test_least_recently_used_files_are_evicted_first(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    paths = [cache / "v1" / f"{name}.npy" for name in ("a", "b", "c")]
    for i, p in enumerate(paths):
        map_cached(p, lambda name=p.stem: _array(tmp_path, name, 1000))
        _age(p, 100 - 10 * i)  # a: used longest ago, c: most recently
    one = paths[0].stat().st_size
    assert cached_bytes(cache) == 3 * one
    gone = evict_lru(cache, 2 * one)
    assert gone == [paths[0]] and not paths[0].exists() and paths[1].exists()
    # a new file stays even when it alone is over the bound; the others go
    new = cache / "v2" / "d.npy"
    got = map_cached(new, lambda: _array(tmp_path, "d", 1000), bound=(cache, 10))
    np.testing.assert_array_equal(got, np.arange(1000, dtype="f8") + 1)
    assert [p for p in cache.rglob("*.npy") if not p.name.startswith(".")] == [new]


def test_a_use_refreshes_a_file_and_hidden_folders_are_not_counted(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a, b = cache / "v" / "a.npy", cache / "v" / "b.npy"
    map_cached(a, lambda: _array(tmp_path, "a", 500))
    map_cached(b, lambda: _array(tmp_path, "b", 500))
    _age(a, 50)
    _age(b, 40)
    map_cached(a, lambda: _array(tmp_path, "x", 1))  # a hit: no decode, but a use of a
    (cache / ".work").mkdir()
    (cache / ".work" / "spill.npy").write_bytes(b"0" * 100_000)  # not the cache's to evict
    evict_lru(cache, a.stat().st_size)
    assert a.exists() and not b.exists() and (cache / ".work" / "spill.npy").exists()


def test_a_version_folder_evicted_during_a_decode_is_decoded_again(tmp_path: Path) -> None:
    """The server's eviction renames a version's folder away and deletes it; a request decoding
    into it meanwhile (its temporary file gone with the folder) decodes again, and answers."""
    cache = tmp_path / "cache"
    target = cache / "v" / "a.npy"
    array = _array(tmp_path, "a", 1000)
    reads = []

    def source() -> zarr.Array:
        reads.append(1)
        if len(reads) == 1:  # as Serving.evict does, while this decode is under way
            trash = cache / ".evicted-v"
            os.rename(cache / "v", trash)
            shutil.rmtree(trash)
        return array

    got = map_cached(target, source)
    np.testing.assert_array_equal(got, np.arange(1000, dtype="f8") + 1)
    assert len(reads) == 2 and target.exists() and not (cache / ".evicted-v").exists()


def test_a_missing_snapshot_file_is_not_taken_for_an_eviction(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    reads = []

    def source() -> zarr.Array:
        reads.append(1)
        return zarr.open_array(tmp_path / "src" / "gone", mode="r")  # no such array

    with pytest.raises(FileNotFoundError):
        map_cached(cache / "v" / "a.npy", source)
    assert len(reads) == 1
