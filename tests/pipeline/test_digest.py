"""The input's sha256 hashed in an idle-priority child (``pipeline._digest``), against hashlib."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from widecube.pipeline import _digest
from widecube.pipeline._digest import IdleDigest, hash_early, take_early


def test_the_digest_is_the_files_sha256(tmp_path: Path) -> None:
    path = tmp_path / "x.h5ad"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    with IdleDigest(path) as digest:
        assert digest.result() == hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest.result() == hashlib.sha256(path.read_bytes()).hexdigest()  # asked twice
    with IdleDigest(path, window=1 << 20) as digest:  # three whole windows and a short one
        assert digest.result() == hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    with IdleDigest(tmp_path / "empty") as digest:
        assert digest.result() == hashlib.sha256(b"").hexdigest()


def test_the_md5_comes_from_the_same_read_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "x.h5ad"
    data = os.urandom(2 * 1024 * 1024 + 5)
    path.write_bytes(data)
    with IdleDigest(path, window=1 << 20, md5=True) as digest:
        assert digest.result() == hashlib.sha256(data).hexdigest()
        assert digest.md5 == hashlib.md5(data).hexdigest()
    with IdleDigest(path) as digest:
        digest.result()
        assert digest.md5 is None  # not asked: not hashed


def test_the_child_runs_at_idle_priority_until_asked(tmp_path: Path) -> None:
    if not hasattr(os, "SCHED_IDLE"):
        pytest.skip("no SCHED_IDLE on this platform")
    path = tmp_path / "fifo"
    os.mkfifo(path)  # the child blocks opening it: alive while we look
    digest = IdleDigest(path)
    try:
        deadline = time.monotonic() + 10
        while os.sched_getscheduler(digest._proc.pid) != os.SCHED_IDLE and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.sched_getscheduler(digest._proc.pid) == os.SCHED_IDLE
    finally:
        digest.close()
    assert digest._proc.returncode is not None  # stopped, not left behind


def test_a_hastened_child_runs_at_the_normal_policy_and_still_gives_the_digest(tmp_path: Path) -> None:
    if not hasattr(os, "SCHED_IDLE"):
        pytest.skip("no SCHED_IDLE on this platform")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    digest = IdleDigest(fifo)
    try:
        deadline = time.monotonic() + 10
        while os.sched_getscheduler(digest._proc.pid) != os.SCHED_IDLE and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.sched_getscheduler(digest._proc.pid) == os.SCHED_IDLE
        digest.hasten()
        assert os.sched_getscheduler(digest._proc.pid) == os.SCHED_OTHER
    finally:
        digest.close()
    path = tmp_path / "x.h5ad"
    data = os.urandom(3 << 20)
    path.write_bytes(data)
    with IdleDigest(path, window=1 << 20) as digest:
        with digest.paused():
            digest.hasten()  # paused still: the gate holds it, whatever its priority
        assert digest.result() == hashlib.sha256(data).hexdigest()


def test_hastening_reaches_every_thread_of_the_child() -> None:
    """The policy is a thread's: a child hashing its MD5 beside its sha256 does so in two
    threads of its own, which must leave ``SCHED_IDLE`` with it."""
    if not hasattr(os, "SCHED_IDLE"):
        pytest.skip("no SCHED_IDLE on this platform")
    program = (
        "import os, sys, threading\n"
        "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
        "stop = threading.Event()\n"
        "for _ in range(2):\n"
        "    threading.Thread(target=stop.wait).start()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
        "stop.set()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", program], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        threads = [int(t) for t in os.listdir(f"/proc/{child.pid}/task")]
        assert len(threads) == 3 and {os.sched_getscheduler(t) for t in threads} == {os.SCHED_IDLE}
        _digest._normal_priority(child.pid)
        assert {os.sched_getscheduler(t) for t in threads} == {os.SCHED_OTHER}
    finally:
        child.communicate("")
    assert child.returncode == 0


def test_an_unreadable_input_names_the_file(tmp_path: Path) -> None:
    with IdleDigest(tmp_path / "missing.h5ad") as digest, pytest.raises(OSError, match="missing.h5ad"):
        digest.result()


def test_a_file_that_shrinks_while_hashed_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "x.h5ad"
    path.write_bytes(os.urandom(1 << 20))
    digest = IdleDigest(path, window=1 << 20)
    with digest, pytest.raises(OSError, match=r"x\.h5ad: could not compute its sha256: killed by signal 7"):
        os.kill(digest._proc.pid, signal.SIGBUS)  # what touching a page past the new end sends
        digest.result()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the child's CPU time from /proc")
def test_a_paused_digest_hashes_nothing_until_let_go_or_asked(tmp_path: Path) -> None:
    """Paused, the child stays alive without using CPU (unpaused, the same file is hashed in
    well under the pause); let go, or asked for its result while paused (its input closed, as
    when the parent is gone), it finishes with hashlib's digest."""
    path = tmp_path / "x.h5ad"
    data = os.urandom(64 * 1024 * 1024)
    path.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    started = time.monotonic()
    with IdleDigest(path, window=1 << 20) as digest:
        assert digest.result() == want
    unpaused = time.monotonic() - started
    for ask_while_paused in (False, True):
        with IdleDigest(path, window=1 << 20) as digest:
            with digest.paused():
                time.sleep(0.2)  # the child started and stopped at its first window's gate
                before = _cpu_s(digest._proc.pid)
                time.sleep(max(1.0, 3 * unpaused))
                assert digest._proc.poll() is None  # would have finished, had it not waited
                assert _cpu_s(digest._proc.pid) - before < 0.05
                if ask_while_paused:
                    assert digest.result() == want
            assert digest.result() == want


def test_a_digest_started_early_is_taken_over_only_for_the_same_unchanged_file(tmp_path: Path) -> None:
    """``widecube ingest`` starts hashing before its imports; the job takes that digest over
    when it hashes the same file, unchanged, and every other one started early is stopped."""
    a, b = tmp_path / "a.h5ad", tmp_path / "b.h5ad"
    data = os.urandom(2 << 20)
    a.write_bytes(data)
    b.write_bytes(os.urandom(1 << 20))
    hash_early(a)
    hash_early(b)
    hash_early(tmp_path)  # a folder: nothing to hash
    hash_early(tmp_path / "missing.h5ad")
    started = dict(_digest._EARLY)
    assert sorted(started) == [str(a.resolve()), str(b.resolve())]
    digest = take_early(tmp_path / "." / "a.h5ad")  # the same file by another path
    assert digest is started[str(a.resolve())][1]
    assert _digest._EARLY == {}
    other = started[str(b.resolve())][1]
    assert other._proc.returncode is not None  # stopped, not left hashing
    with digest:
        assert digest.result() == hashlib.sha256(data).hexdigest()
    assert take_early(a) is None  # taken once

    hash_early(a)
    early = _digest._EARLY[str(a.resolve())][1]
    a.write_bytes(os.urandom(2 << 20))  # replaced after hashing began: that digest is wrong now
    assert take_early(a) is None
    assert early._proc.returncode is not None
