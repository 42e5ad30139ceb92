"""The spill's files written and read around the page cache (``compute._direct``), against
the bytes appended, kept in Python; on a disk (``O_DIRECT``), on tmpfs (which refuses it)
and with it turned off."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import numpy as np
import pytest

from widecube.compute import _direct
from widecube.compute._direct import ALIGN, StagedFiles, aligned_bytes, around_the_cache, read_direct


def _append(files: StagedFiles, sizes: list[int], data: list[np.ndarray]) -> None:
    """Reserve room for every file at once (0 bytes where ``sizes`` says so) and write it."""
    starts = files.reserve(np.array(sizes, dtype=np.int64))
    for i, size in enumerate(sizes):
        if size:
            files.arena[starts[i] : starts[i] + size] = data[i]


def _appends(files: StagedFiles, n_files: int, seed: int) -> list[bytes]:
    """Reserve records of sizes around every threshold (a byte, a block, the 256 KiB region,
    several MiB: the file's regions move to a larger arena) for one file at a time in a random
    order of files, then for several files at once; returns what each file must hold."""
    rng = np.random.default_rng(seed)
    expected = [bytearray() for _ in range(n_files)]
    sizes = [1, 7, ALIGN - 1, ALIGN, ALIGN + 1, 100_000, 256 * 1024 - 5, 256 * 1024 + 9, 3_000_000]
    for size in [*sizes, *rng.integers(1, 70_000, 300).tolist(), *sizes]:
        i = int(rng.integers(0, n_files))
        one = [0] * n_files
        one[i] = int(size)
        data = [rng.integers(0, 256, s, dtype=np.uint8) for s in one]
        _append(files, one, data)
        expected[i] += data[i].tobytes()
    for _ in range(100):  # every file at once, some with nothing
        many = rng.integers(0, 90_000, n_files) * (rng.random(n_files) < 0.8)
        data = [rng.integers(0, 256, int(s), dtype=np.uint8) for s in many]
        _append(files, many.tolist(), data)
        for i in range(n_files):
            expected[i] += data[i].tobytes()
    return [bytes(e) for e in expected]


@pytest.mark.parametrize("where", ["disk", "refused", "off", "not asked for"])
def test_appended_bytes_land_in_order_and_files_keep_their_length(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct = bool(getattr(os, "O_DIRECT", 0)) and where == "disk"
    if where == "off":  # a platform without O_DIRECT
        monkeypatch.setattr(_direct, "_DIRECT", 0)
    if where == "refused":  # a file system that refuses it (older tmpfs, some network mounts)
        real_open = os.open

        def refusing(path: object, flags: int, *args: int) -> int:
            if flags & getattr(os, "O_DIRECT", 0):
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_open(path, flags, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(_direct.os, "open", refusing)
    paths = [tmp_path / f"b{i}.spill" for i in range(5)]
    files = StagedFiles(paths, half=64 * 1024, direct=where != "not asked for")
    assert files.direct == direct
    expected = _appends(files, len(paths), seed=1)
    assert files.arena.shape[0] > 2 * 5 * 64 * 1024  # regions moved for the larger records
    files.close()
    files.close()  # twice: nothing more happens
    for path, want in zip(paths, expected, strict=True):
        assert path.stat().st_size == len(want)
        assert path.read_bytes() == want
        got = read_direct(path, aligned_bytes(len(want) + ALIGN))
        if direct or (where == "not asked for" and getattr(os, "O_DIRECT", 0)):
            assert got is not None and got.tobytes() == want  # what went through the cache too
        else:
            assert got is None  # the caller maps the file instead


def test_an_empty_file_stays_empty_and_buffers_are_aligned(tmp_path: Path) -> None:
    files = StagedFiles([tmp_path / "a", tmp_path / "b"])
    _append(files, [0, 3], [np.empty(0, np.uint8), np.frombuffer(b"xyz", dtype=np.uint8)])
    files.close()
    assert (tmp_path / "a").read_bytes() == b"" and (tmp_path / "b").read_bytes() == b"xyz"
    for n in (1, ALIGN, 3 * ALIGN + 5):
        assert aligned_bytes(n).ctypes.data % ALIGN == 0 and aligned_bytes(n).shape == (n,)


def test_a_buffer_too_small_for_the_file_is_refused(tmp_path: Path) -> None:
    if not getattr(os, "O_DIRECT", 0):
        pytest.skip("no O_DIRECT here")
    path = tmp_path / "x"
    path.write_bytes(b"1" * (ALIGN + 1))
    with pytest.raises(ValueError, match="8192 bytes needed"):
        read_direct(path, aligned_bytes(ALIGN))


def test_a_failed_write_is_raised_by_the_reserving_thread(tmp_path: Path) -> None:
    files = StagedFiles([tmp_path / "a"])
    os.close(files._fds[0])  # the writer's next write fails: EBADF
    files._fds[0] = os.open(os.devnull, os.O_RDONLY)
    with pytest.raises(OSError, match="Bad file descriptor"):
        for _ in range(20):
            files.reserve(np.array([200_000], dtype=np.int64))
    with contextlib.suppress(OSError):  # the writes still queued failed too
        files.close()
    assert files._fds == [] and not any(files._writes)  # yet everything is released


def test_a_whole_file_is_read_however_short_the_reads_and_a_shorter_file_is_an_io_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.spill"
    want = np.random.default_rng(2).integers(0, 256, 10_007, dtype=np.uint8)
    path.write_bytes(want.tobytes())
    real = os.preadv
    monkeypatch.setattr(_direct.os, "preadv", lambda fd, bufs, at: real(fd, [bufs[0][:999]], at))
    fd = os.open(path, os.O_RDONLY)
    try:
        got = np.zeros(10_007, dtype=np.uint8)
        _direct.read_whole(fd, got, 10_007, path)
        assert got.tobytes() == want.tobytes()
        with pytest.raises(OSError, match=r"spill file changed while read: .*x\.spill holds 10007 of 10008"):
            _direct.read_whole(fd, np.zeros(10_008, dtype=np.uint8), 10_008, path)
    finally:
        os.close(fd)


def test_a_bucket_on_a_mount_without_mmap_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written through the page cache are mapped by pass 2; where the mount refuses
    ``mmap`` they are read whole instead, with the same bytes."""
    from widecube.compute import _buckets

    paths = [tmp_path / "a.spill", tmp_path / "b.spill", tmp_path / "c.spill"]
    contents = [b"", b"WCS1" * 3000, bytes(range(256)) * 7]
    for path, data in zip(paths, contents, strict=True):
        path.write_bytes(data)

    def refused(*args: object, **kw: object) -> None:
        raise OSError(errno.ENODEV, "No such device")

    monkeypatch.setattr(_buckets.mmap, "mmap", refused)
    got = _buckets._bucket_bytes(paths, (False, False, False), _buckets.ReadBuffers())
    assert [g.tobytes() for g in got] == contents


def test_the_spill_goes_around_the_cache_unless_it_fits_in_a_quarter_of_the_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unset, the choice follows the spill's size (4 bytes a value) against a quarter of the
    memory available: 1 GB spilled beside 16 GB available goes through the cache, 8 GB does
    not; a setting decides alone; a spill for an object store goes around unless set; memory
    that cannot be read means around the cache."""
    gb = 10**9
    assert around_the_cache(None, 250_000_000, available=16 * gb) is False  # 1 GB <= 4 GB
    assert around_the_cache(None, 1_000_000_000, available=16 * gb) is False  # 4 GB, the edge
    assert around_the_cache(None, 1_000_000_001, available=16 * gb) is True
    assert around_the_cache(None, 2_000_000_000, available=16 * gb) is True  # 8 GB
    assert around_the_cache(True, 10, available=16 * gb) is True
    assert around_the_cache(False, 2_000_000_000, available=gb) is False
    assert around_the_cache(None, 10, available=16 * gb, for_store=True) is True  # read back once
    assert around_the_cache(False, 10, available=16 * gb, for_store=True) is False
    monkeypatch.setattr(_direct, "_available_memory", lambda: None)
    assert around_the_cache(None, 10) is True
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():  # the system's figure, read independently
        monkeypatch.undo()
        line = next(x for x in meminfo.read_text().splitlines() if x.startswith("MemAvailable:"))
        available = int(line.split()[1]) * 1024
        assert around_the_cache(None, available // 64) is False  # a quarter of a quarter
        assert around_the_cache(None, available) is True
