"""The spill's files written and read around the page cache (``O_DIRECT``).

Pass 1 writes every stored value once more (3 bytes a count, 1.6 GB for the Poisson B100k)
and pass 2 reads it back once. Through the page cache each byte is copied into a page the
kernel allocates for it (and, on this VM, first faults in from the host) and the page stays
until its file is removed: measured on 1.6 GB in 17 KB appends to 118 files, 1.6-3.2 s of
system time, whatever the size of the writes (1 MiB appends: 1.7-2.9 s); written from
aligned buffers with ``O_DIRECT``, 0.16-0.31 s, and read back so, 0.13-0.23 s, at the
disk's 1.3 and 0.9 GB/s. Past the page cache's size (the 500 GB target spills 200 GB+) the
buffered spill would be written to disk and read back anyway, evicting everything else.

:class:`StagedFiles` stages every file in two regions of one aligned arena (256 KiB each,
larger for a larger record): pass 1 packs a block's records straight into them, and a full
region's whole 4 KiB blocks go to the file's end from a writer thread (such a write waits for
the disk; the packing goes on in the other region, holding the rest), and closing writes the
last block padded and truncates the file to its length. Where the file system refuses
``O_DIRECT`` (tmpfs, some network mounts) the same regions are written
through the page cache. :func:`read_direct` reads a whole file into an
aligned buffer, or says it cannot (the caller maps the file instead).
"""

from __future__ import annotations

import errno
import fcntl
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..snapshot import DIRECT_ALIGN, open_direct, pwrite_all

__all__ = ["ALIGN", "StagedFiles", "aligned_bytes", "around_the_cache", "read_direct", "read_whole"]

ALIGN = DIRECT_ALIGN
"""What ``O_DIRECT`` needs of buffers, offsets and lengths (the logical block size of the
disks in use, 512 or 4096 bytes)."""
_CHUNK = 256 * 1024
_DIRECT = getattr(os, "O_DIRECT", 0)


def aligned_bytes(n: int) -> np.ndarray:
    """``n`` bytes starting at a multiple of :data:`ALIGN` (uninitialized)."""
    raw = np.empty(n + ALIGN, dtype=np.uint8)
    skip = -raw.ctypes.data % ALIGN
    return raw[skip : skip + n]


def _round_up(n: int) -> int:
    return n + (-n) % ALIGN


class StagedFiles:
    """Append-only files at ``paths`` (created empty), staged in one aligned byte arena,
    :attr:`arena`, where every file has two regions of ``half`` bytes, or of twice the largest
    size the first :meth:`reserve` asks for where that is more (larger blocks of rows).

    :meth:`reserve` says where, in the arena, the caller writes each file's next bytes (a
    compiled kernel writes a whole block's records there at once, no call per record). A
    region about to overflow has its whole aligned blocks handed to a writer thread from
    where they lie (no copy; a write around the page cache waits for the disk, and the
    caller goes on in the file's other region, where the unaligned rest is carried), so at
    most one write per region is in flight and the arena bounds the memory. A reservation
    larger than a region moves that file's two regions to a larger stretch at the arena's
    end (skewed genes; the arena is copied then). :meth:`close` writes what is left.
    ``direct`` says whether the page cache is bypassed: asked for (``direct=False`` writes
    through it, for disks where small direct writes are slow: a spinning disk) and allowed
    by the platform and the file system."""

    def __init__(self, paths: list[Path], *, half: int = _CHUNK, direct: bool = True) -> None:
        self.paths = paths
        self.direct = bool(_DIRECT) and direct
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        self._fds: list[int] = []
        try:
            for path in paths:
                self._fds.append(self._open(path, flags))
        except BaseException:
            self._close_fds()
            raise
        n = len(paths)
        self._half = half
        self.arena = np.empty(0, dtype=np.uint8)  # laid out by the first reserve()
        self._at = np.zeros(2 * n, dtype=np.int64)  # where region 2*i + side of file i starts
        self._room = np.zeros(2 * n, dtype=np.int64)
        self._even = np.arange(n, dtype=np.int64) * 2
        self._side = np.zeros(n, dtype=np.int64)  # each file's region in use: 0 or 1
        self._fill = np.zeros(n, dtype=np.int64)  # bytes staged in it
        self._base = [0] * n  # the file offset of each region in use's first byte
        self._writes: list[Future[int] | None] = [None] * (2 * n)  # in flight from a region
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="widecube-spill")

    def _open(self, path: Path, flags: int) -> int:
        if not self.direct:
            return os.open(path, flags, 0o600)
        fd, self.direct = open_direct(path, flags)
        if not self.direct:  # tmpfs and some network mounts: through the page cache
            for other in self._fds:  # the files opened before, if any: alike
                fcntl.fcntl(other, fcntl.F_SETFL, fcntl.fcntl(other, fcntl.F_GETFL) & ~_DIRECT)
        return fd

    def reserve(self, sizes: np.ndarray) -> np.ndarray:
        """Room for ``sizes[i]`` more bytes of file ``i`` (int64, one per file): the offsets
        in :attr:`arena` where the caller writes them, before its next call (an offset is
        meaningless where the size is 0). Raises a failed earlier write."""
        if not self.arena.shape[0]:
            self._lay_out(_round_up(max(self._half, 2 * int(sizes.max(initial=0)))))
        over = np.flatnonzero(self._fill + sizes > self._room[self._even + self._side])
        for i in over.tolist():
            self._flush(i, int(sizes[i]))
        starts: np.ndarray = self._at[self._even + self._side] + self._fill
        self._fill += sizes
        return starts

    def _lay_out(self, room: int) -> None:
        """Two regions of ``room`` bytes per file (pages are faulted in at first use only):
        sized from the first block's records, so that a file moves to larger regions only
        when one of its records is more than twice the largest of that block."""
        self.arena = aligned_bytes(self._at.shape[0] * room)
        self._at[:] = np.arange(self._at.shape[0], dtype=np.int64) * room
        self._room[:] = room

    def _flush(self, i: int, need: int) -> None:
        """Hand file ``i``'s whole blocks (all of it, through the page cache) to the writer
        and go on in its other region, with the rest and room for ``need`` bytes more."""
        k = 2 * i + int(self._side[i])
        fill = int(self._fill[i])
        out = fill - fill % ALIGN if self.direct else fill
        here = self._region(k)
        if out:
            self._writes[k] = self._writer.submit(pwrite_all, self._fds[i], here[:out], self._base[i])
            self._base[i] += out
        self._settle(k ^ 1)
        rest = fill - out
        if rest + need > self._room[k ^ 1]:
            self._move(i, rest + need)
        self._region(k ^ 1)[:rest] = here[out:fill]  # ``here`` may lie in the arena before a move
        self._side[i] ^= 1
        self._fill[i] = rest

    def _region(self, k: int) -> np.ndarray:
        at = int(self._at[k])
        return self.arena[at : at + int(self._room[k])]

    def _settle(self, k: int) -> None:
        done, self._writes[k] = self._writes[k], None
        if done is not None:
            done.result()  # a failed write is raised here, by the reserving thread

    def _move(self, i: int, need: int) -> None:
        """Give file ``i`` two regions of at least ``need`` bytes at the end of a larger
        arena, carrying every file's staged bytes over (writes in flight keep the old one)."""
        room = max(_round_up(need), 2 * int(self._room[2 * i]))
        old, end = self.arena, self.arena.shape[0]
        self.arena = aligned_bytes(end + 2 * room)
        for f, k in enumerate((self._even + self._side).tolist()):
            at, fill = int(self._at[k]), int(self._fill[f])
            self.arena[at : at + fill] = old[at : at + fill]
        self._at[2 * i : 2 * i + 2] = (end, end + room)
        self._room[2 * i : 2 * i + 2] = room

    def close(self) -> None:
        """Write what every region holds and close the files (their lengths exact)."""
        try:
            for k in range(len(self._writes)):
                self._settle(k)
            for i, fd in enumerate(self._fds):
                fill = int(self._fill[i])
                if not fill:
                    continue
                buf = self._region(2 * i + int(self._side[i]))
                if self.direct:  # the last block padded, then the file cut to its length
                    size = _round_up(fill)
                    buf[fill:size] = 0
                    pwrite_all(fd, buf[:size], self._base[i])
                    os.ftruncate(fd, self._base[i] + fill)
                else:
                    pwrite_all(fd, buf[:fill], self._base[i])
                self._base[i] += fill
                self._fill[i] = 0
        finally:
            for done in self._writes:  # closing after a failure: let them end first
                if done is not None:
                    done.cancel()
            self._writer.shutdown(wait=True)
            self._writes = [None] * len(self._writes)
            self.arena = np.empty(0, dtype=np.uint8)
            self._close_fds()

    def _close_fds(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)


_SPILL_BYTES = 4
"""About what a value costs in the spill (8-bit gene and cell offsets and an 8- or 16-bit
count: 3-4 bytes; float values 6)."""


def around_the_cache(
    setting: bool | None, nnz: int, available: int | None = None, *, for_store: bool = False
) -> bool:
    """Whether pass 1's spill of about ``nnz`` values goes around the page cache: as
    ``setting`` (``Settings.spill_direct``) says, or, unset, unless it fits in a quarter of
    the ``available`` memory (default: the system's ``MemAvailable``; unknown: around). A
    spill ``for_store`` (``Settings.spill``) goes around it unless told otherwise: its local
    files are read back once, within seconds, for the upload, then removed (demo-data B100k
    from a local S3 server: pass 1 4.4 / 4.5 s against 6.3 / 6.4 through the cache; B1M alike
    either way, 37.0 / 38.5 against 37.5 / 39.1 s).

    Through the cache the writes never wait for the disk and pass 2 reads from memory; around
    it, the spill does not push out everything else. Measured on one Intel VM (2 cores, 24 GB,
    a disk writing 1.2-1.4 GB/s), single-process ingests: the Poisson B100k (1.6 GB of spill)
    pass 1 2.35 / 2.35 s through the cache, 2.78 / 2.63 s around it (a quarter of its samples
    with no thread running, every one waiting for a direct write); B1M (6 GB of spill beside a
    16 GB input) 18.75 s through the cache, 15.79 s around it (2.4 s more system time:
    reclaiming the page cache)."""
    if setting is not None:
        return setting
    if for_store:
        return True
    if available is None:
        available = _available_memory()
    return available is None or nnz * _SPILL_BYTES > available // 4


def _available_memory() -> int | None:
    """The kernel's estimate of memory available without swapping (``MemAvailable``), bytes."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def read_direct(path: Path, into: np.ndarray) -> np.ndarray | None:
    """The bytes of the file at ``path`` read with ``O_DIRECT`` into the aligned buffer
    ``into`` (at least the file's size rounded up to :data:`ALIGN`), or None where the file
    system (or the platform) has no ``O_DIRECT``."""
    if not _DIRECT:
        return None
    fd, direct = open_direct(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    if not direct:
        os.close(fd)
        return None
    try:
        size = os.fstat(fd).st_size
        want = _round_up(size)
        if into.shape[0] < want:
            raise ValueError(f"read_direct: {want} bytes needed, {into.shape[0]} given")
        read_whole(fd, into[:want], size, path)
        return into[:size]
    finally:
        os.close(fd)


def read_whole(fd: int, into: np.ndarray, size: int, path: Path) -> None:
    """The first ``size`` bytes of the file open as ``fd`` (``path``, for the error) into the
    byte buffer ``into``, however many reads it takes; a file that ends sooner is an ``EIO``
    naming it (the job's own file changed under it: retried from scratch)."""
    view, got = into.data, 0
    while got < size:
        step = os.preadv(fd, [view[got:]], got)
        if not step:
            raise OSError(errno.EIO, f"spill file changed while read: {path} holds {got} of {size} bytes")
        got += step
