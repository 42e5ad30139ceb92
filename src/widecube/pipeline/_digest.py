"""The input's sha256, computed beside an ingest on the CPU time the ingest leaves idle.

The manifest's ``input.sha256`` (provenance) is needed only when the snapshot is finished, and
hashing costs a core for a while (sha256 runs at about 1.5 GB/s here: 2.8 CPU-s for a 4.2 GB
h5ad). Run in a thread beside pass 1 it took that core from pass 1, which keeps both busy
(pass 1 of the Poisson B100k: 7.6 s with it, 4.7 s without). So the digest runs in a child
process at ``SCHED_IDLE`` (Linux; elsewhere at the lowest ``nice``): it gets a core only when
no thread of the ingest (or anything else) wants one — the start-up, the gaps in pass 2, the
views' writing — and when the ingest asks for the result it is raised back to the normal
policy, so a machine busy with other work cannot starve it. During pass 1 it is paused
(:meth:`IdleDigest.paused`): there even an idle-priority child slowed the pass by 15 %. A
process, not a thread, because a thread at idle priority preempted while it holds the GIL would
stall the ingest's own Python threads.

    >>> with IdleDigest(Path("pbmc.h5ad")) as digest:   # doctest: +SKIP
    ...     ...                                           # pass 1, pass 2, the views written
    ...     sha256 = digest.result()
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

__all__ = ["IdleDigest", "hash_early", "take_early"]

_CHILD = """\
import hashlib, mmap, os, select, sys
from concurrent.futures import ThreadPoolExecutor
try:
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
except (AttributeError, OSError):
    os.nice(19)
names, window = sys.argv[3:] or ["sha256"], int(sys.argv[2])
told = True
def gate():
    global told
    paused = False
    while told:
        if not select.select([0], [], [], None if paused else 0)[0]:
            return
        said = os.read(0, 64)
        told = bool(said)
        paused = told and said.endswith(b"p")
with open(sys.argv[1], "rb", buffering=0) as f:
    size = os.fstat(f.fileno()).st_size
    try:
        digests = [hashlib.new(name) for name in names]
        both = ThreadPoolExecutor(len(digests)) if len(digests) > 1 else None
        for at in range(0, size, window):
            gate()
            with mmap.mmap(f.fileno(), min(window, size - at), prot=mmap.PROT_READ, offset=at) as view:
                if both is None:
                    digests[0].update(view)
                else:
                    list(both.map(lambda digest: digest.update(view), digests))
    except OSError:  # a file that cannot be mapped (not a regular file, some network mounts)
        digests = []
        for name in names:
            f.seek(0)
            digests.append(hashlib.file_digest(f, name))
print(*(digest.hexdigest() for digest in digests))
"""
"""The child's whole program: only the standard library (``-I``: no environment, no user site).
With the MD5 too, each window is hashed by both at once, in two threads (hashlib lets go of
the GIL): 16 GB cost 8 s of sha256 and 19 s of MD5 one after the other, so when the ingest
waits for the result it waits for the MD5 alone. Before each window it reads what the parent
wrote on its stdin: ``p`` pauses it until a ``g``; the end of its input (the parent closed it,
or is gone) lets it run to the end, never paused again.
The file is hashed through 64 MiB mappings, not read: a read copies every page from the page
cache (4.2 GB h5ad: 0.64-0.75 s of system time read with ``hashlib.file_digest``, 0.14 s
mapped; ``MAP_POPULATE`` 0.28 s, fault-around does better). A file truncated meanwhile kills
the child (``SIGBUS``), which :meth:`IdleDigest.result` reports as an error naming the file."""


class IdleDigest:
    """The sha256 of the local file ``path``, hashed by a child process at idle priority from
    construction on (through mappings of ``window`` bytes, a multiple of the page size);
    :meth:`result` waits for it, :meth:`close` (or leaving the ``with`` block) stops a child
    whose result nobody asked for. ``md5=True`` hashes its MD5 too, in the same read
    (:attr:`md5`, once :meth:`result` returned): a staged copy's check against its ETag."""

    def __init__(self, path: Path, *, window: int = 64 << 20, md5: bool = False) -> None:
        self.path = path
        self.md5: str | None = None
        names = ["sha256", "md5"] if md5 else ["sha256"]
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _CHILD, os.fspath(path), str(window), *names],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._hex: str | None = None

    def result(self) -> str:
        """The hex digest; the child runs at the normal policy from now until it is done.
        An unreadable file is an :class:`OSError` naming it."""
        if self._hex is not None:
            return self._hex
        _normal_priority(self._proc.pid)
        out, err = self._proc.communicate()
        digest, *others = out.split() or [""]
        if self._proc.returncode != 0 or len(digest) != 64:
            code = self._proc.returncode
            from ._supervise import describe_exit  # not at import: hash_early comes before the rest

            last = err.strip().splitlines()[-1:] or [describe_exit(code)]
            shrank = " (did the file shrink while it was read?)" if code == -signal.SIGBUS else ""
            raise OSError(f"{self.path.name}: could not compute its sha256: {last[0]}{shrank}")
        self._hex = digest
        self.md5 = others[0] if others else None
        return digest

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Inside, the child hashes no further than the window it is in (64 MiB: tens of
        milliseconds). For pass 1, which keeps both cores busy and leaves them idle only for
        moments: there the idle-priority child still cost it 0.3-0.5 s of 2.1-2.4 s (Poisson
        B100k: 2.62-2.71 s with it hashing, 2.27-2.31 s with it paused, the ingest's wall the
        same or less: the hash was done within pass 2 all the same)."""
        self._tell(b"p")
        try:
            yield
        finally:
            self._tell(b"g")

    def hasten(self) -> None:
        """From now on the child runs at the normal policy, sharing the cores with the ingest
        rather than waiting for them to be idle: for a pass 2 that keeps both cores busy, which
        leaves an idle-priority child little until the end, where it then hashed alone on one
        core (Poisson B100k: 1.9 s of a 20.5 s compute step with the main thread waiting for
        the digest and no thread of the ingest running)."""
        _normal_priority(self._proc.pid)

    def _tell(self, word: bytes) -> None:
        """One control byte to the child; one that is gone (or done) needs none."""
        stdin = self._proc.stdin
        if stdin is None or stdin.closed:
            return
        with contextlib.suppress(OSError, ValueError):  # BrokenPipeError: the child has ended
            stdin.write(word.decode())
            stdin.flush()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()

    def __enter__(self) -> IdleDigest:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_EARLY: dict[str, tuple[tuple[int, ...], IdleDigest]] = {}
"""Digests started by :func:`hash_early`, by resolved path, with the file's identity then."""


def _identity(path: Path) -> tuple[int, ...] | None:
    """A regular file's device, inode, size and modification time (None for anything else)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


def hash_early(path: Path) -> None:
    """Start hashing the local file ``path`` now, for an ingest this process runs next:
    ``widecube ingest`` spends its first second importing and setting up on one core, and
    the child hashes on the other (this module imports only the standard library, so it is
    started before the rest). The ingest's :func:`take_early` takes the digest over; one
    never taken over is stopped then, or when the process exits."""
    key = _identity(path)
    name = os.path.realpath(path)
    if key is None or name in _EARLY:
        return
    _EARLY[name] = (key, IdleDigest(path))


def take_early(path: Path) -> IdleDigest | None:
    """The digest :func:`hash_early` started for ``path``, if the file is still the one it
    hashes (same inode, size and modification time); every other is stopped."""
    found = _EARLY.pop(os.path.realpath(path), None)
    _close_early()
    if found is None:
        return None
    key, digest = found
    if key == _identity(path):
        return digest
    digest.close()
    return None


def _close_early() -> None:
    while _EARLY:
        _, (_, digest) = _EARLY.popitem()
        digest.close()


atexit.register(_close_early)  # one never taken over stops with the process


def _normal_priority(pid: int) -> None:
    """Move a running child from ``SCHED_IDLE`` back to the normal policy (allowed to any
    process for its own children under the default ``RLIMIT_NICE``), every thread of it: the
    policy is a thread's, and with its MD5 the child hashes in two threads of its own, which
    the call on ``pid`` alone left idle (B1M from a local S3 server: the ingest then waited
    15 s after pass 2 for the MD5). Where that is not possible (no such call, the child or a
    thread already gone) they keep their priority."""
    try:
        threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        threads = [pid]
    for tid in threads:
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
