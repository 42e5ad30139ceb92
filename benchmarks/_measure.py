"""Run one command in a fresh process and measure its wall time and peak memory.

Two memory figures are taken, because they answer slightly different questions:

* ``peak_rss`` — the kernel's own high-water mark of the largest process in the tree,
  read from ``/usr/bin/time -v`` ("Maximum resident set size") when that exists, else from
  the ``rusage`` that :func:`os.wait4` returns for the child. Exact, never missed by sampling.
* ``peak_tree_rss`` — the largest *sum* of ``VmRSS`` over the process and all its
  descendants, sampled from ``/proc`` every 50 ms. This catches a tool that spreads its
  memory over several worker processes, which the first figure would under-count.

A run can be guarded so that it cannot take the machine down (the peer on a dataset too large
for it): ``address_space`` caps its virtual memory with ``RLIMIT_AS`` (allocations past it
fail with ``MemoryError`` inside the process), ``rss_limit`` kills the process tree once its
sampled RSS passes that many bytes, and ``min_available`` kills it once the machine's
``MemAvailable`` falls below that many bytes. ``killed_by`` then says which guard (or the
time limit) ended it.

    >>> m = measure(["python", "-c", "x = bytearray(10**8)"])  # doctest: +SKIP
    >>> m.ok, m.peak_rss > 10**8
    (True, True)
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Measurement", "measure", "mem_available", "warm_page_cache", "TIME_BIN"]

TIME_BIN = "/usr/bin/time"
"""GNU time; used for the peak RSS when present and runnable."""

_SAMPLE_S = 0.05
_TAIL = 4000


@dataclass
class Measurement:
    """What one measured run did: exit status, wall time, peak memory and its output."""

    command: list[str]
    returncode: int
    """Exit status; negative ``-N`` when the process was killed by signal ``N``."""
    wall_s: float
    """Wall-clock seconds from process start to exit (includes interpreter start-up)."""
    peak_rss: int
    """Largest resident set of any one process in the tree, bytes (kernel high-water mark)."""
    peak_tree_rss: int
    """Largest sampled sum of resident sets over the whole process tree, bytes."""
    cpu_s: float
    """User + system CPU seconds of the process tree (less sensitive to other load than wall)."""
    rss_source: str
    """Where ``peak_rss`` came from: ``"/usr/bin/time -v"`` or ``"os.wait4"``."""
    stdout: str
    stderr_tail: str
    """The last few thousand characters of stderr, verbatim (error messages live here)."""
    killed_by: str | None = None
    """Why the harness killed the run (time limit or a memory guard); None when it did not."""
    limits: dict[str, Any] | None = None
    """The guards the run ran under (``timeout_s``, ``address_space``, ``rss_limit``,
    ``min_available``); None when it ran unguarded and without a time limit."""
    sys_s: float = 0.0
    """The system (kernel) part of ``cpu_s``."""
    steal_s: float | None = None
    """CPU seconds the hypervisor gave to other guests while the run lasted, over every CPU
    of the machine (``/proc/stat``'s steal; None where it cannot be read): time the run's
    threads were ready and got no CPU, which lowers its cores without any fault of its own."""
    settle_s: float = 0.0
    """Seconds the untimed ``sync`` before the run took: what earlier steps (a dataset
    generated, an upload, the previous run's snapshot) still had to write to disk."""

    @property
    def ok(self) -> bool:
        """True when the process exited with status 0."""
        return self.returncode == 0

    @property
    def status(self) -> str:
        """``"ok"``, ``"exit N"`` or ``"killed by signal N"`` (SIGKILL usually means OOM)."""
        if self.returncode == 0:
            return "ok"
        if self.killed_by:
            return f"killed by the harness: {self.killed_by}"
        if self.returncode == -9:
            return "killed by signal 9 (SIGKILL: out of memory, or past the time limit)"
        if self.returncode < 0:
            return f"killed by signal {-self.returncode}"
        return f"exit {self.returncode}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field plus ``status``."""
        return {**asdict(self), "status": self.status}


def warm_page_cache(path: Path, chunk: int = 16 * 1024**2) -> float:
    """Read ``path`` once and throw the bytes away (``cat file > /dev/null``); return seconds.

    Dropping the page cache needs root, so instead every measured run starts from a *warm*
    cache: both tools then read the input from memory, not disk.
    """
    start = time.perf_counter()
    with path.open("rb", buffering=0) as fh:
        while fh.read(chunk):
            pass
    return time.perf_counter() - start


def measure(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    address_space: int | None = None,
    rss_limit: int | None = None,
    min_available: int | None = None,
) -> Measurement:
    """Run ``command`` to completion in a new process; measure time and peak memory.

    stdout is kept whole (the peers print their JSON there); stderr is kept as a tail.
    A run past ``timeout`` seconds, or past a memory guard (see the module's docstring), is
    killed and reported with its signal and ``killed_by``, not raised.

    The run starts after an untimed :func:`os.sync` (``settle_s``), so no earlier step's
    writes are flushed to disk while it runs: B1M's first local run, started right after the
    16 GB upload of its S3 run's input, took pass 1 19.3 s instead of 10.5 s (12-05 15:34).
    """
    use_time = _gnu_time_works()
    limits = {
        k: v
        for k, v in (
            ("timeout_s", timeout),
            ("address_space", address_space),
            ("rss_limit", rss_limit),
            ("min_available", min_available),
        )
        if v is not None
    }
    with tempfile.TemporaryDirectory(prefix="widecube-bench-") as tmp:
        tmpdir = Path(tmp)
        report = tmpdir / "time.txt"
        argv = [TIME_BIN, "-v", "-o", str(report), *command] if use_time else list(command)
        with (tmpdir / "out").open("w+b") as out, (tmpdir / "err").open("w+b") as err:
            settling = time.perf_counter()
            os.sync()
            settle = time.perf_counter() - settling
            stolen = _steal_s()
            start = time.perf_counter()
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=err,
                env=dict(env or os.environ),
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_address_space_cap(address_space),
            )
            killer = _Killer(proc.pid, spare_root=use_time)
            sampler = _TreeSampler(proc.pid, killer, rss_limit=rss_limit, min_available=min_available)
            sampler.start()
            status, rusage = _wait(proc, timeout, killer)
            wall = time.perf_counter() - start
            steal = None if stolen is None or (now := _steal_s()) is None else round(now - stolen, 2)
            sampler.stop()
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        text = report.read_text(errors="replace") if report.exists() else ""
        if use_time and "Exit status" in text:  # absent when time itself was killed
            peak = _time_field(text, r"Maximum resident set size \(kbytes\): (\d+)") * 1024
            signal = _time_field(text, r"Command terminated by signal (\d+)")
            code = -signal if signal else _time_field(text, r"Exit status: (\d+)")
            system = _time_float(text, r"System time \(seconds\): ([\d.]+)")
            cpu = _time_float(text, r"User time \(seconds\): ([\d.]+)") + system
            source = f"{TIME_BIN} -v"
        else:
            peak, code, source = rusage.ru_maxrss * 1024, _returncode(status), "os.wait4"
            cpu, system = rusage.ru_utime + rusage.ru_stime, rusage.ru_stime
    return Measurement(
        command=list(command),
        returncode=code,
        wall_s=wall,
        peak_rss=peak,
        peak_tree_rss=sampler.peak,
        cpu_s=cpu,
        rss_source=source,
        stdout=stdout,
        stderr_tail=stderr[-_TAIL:],
        killed_by=killer.reason,
        limits=limits or None,
        sys_s=system,
        steal_s=steal,
        settle_s=round(settle, 2),
    )


def _steal_s() -> float | None:
    """The machine's CPU seconds stolen by the hypervisor since boot (all CPUs), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _address_space_cap(limit: int | None) -> Any:
    """A ``preexec_fn`` setting ``RLIMIT_AS`` to ``limit`` bytes in the child; None for no cap."""
    if limit is None:
        return None

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return cap


class _Killer:
    """Kills a measured process tree once, remembering why.

    Under ``/usr/bin/time`` the root is ``time`` itself: only its descendants are killed
    first, so that ``time`` still reports the command's peak RSS and signal; the whole
    process group follows a few seconds later should anything be left.
    """

    def __init__(self, root: int, *, spare_root: bool) -> None:
        self.root = root
        self.spare_root = spare_root
        self.reason: str | None = None
        self._lock = threading.Lock()
        self._finished = False
        self._fallback: threading.Timer | None = None

    def kill(self, reason: str) -> None:
        """Kill the tree (once; later calls do nothing) and note ``reason``."""
        with self._lock:
            if self.reason is not None or self._finished:
                return
            self.reason = reason
            children = _descendants(self.root) if self.spare_root else []
            if children:
                for pid in children:
                    _signal(pid)
                self._fallback = threading.Timer(5.0, self._kill_group)
                self._fallback.daemon = True
                self._fallback.start()
            else:
                _signal_group(self.root)

    def _kill_group(self) -> None:
        with self._lock:
            if not self._finished:
                _signal_group(self.root)

    def done(self) -> None:
        """The root was reaped: never signal its (possibly reused) id again."""
        with self._lock:
            self._finished = True
            if self._fallback is not None:
                self._fallback.cancel()


def _signal_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, 9)


def _signal(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


def _wait(proc: subprocess.Popen[bytes], timeout: float | None, killer: _Killer) -> tuple[int, Any]:
    """Wait for ``proc`` with :func:`os.wait4` (to get its rusage), killing it past ``timeout``."""
    timer = None
    if timeout is not None:
        timer = threading.Timer(timeout, killer.kill, args=(f"past the time limit of {timeout:.0f} s",))
        timer.start()
    try:
        _, status, rusage = os.wait4(proc.pid, 0)
        killer.done()
    finally:
        if timer is not None:
            timer.cancel()
    proc.returncode = _returncode(status)
    return status, rusage


def _returncode(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


def _time_float(text: str, pattern: str) -> float:
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


def _time_field(text: str, pattern: str) -> int:
    match = re.search(pattern, text)
    return int(match.group(1)) if match else 0


_TIME_OK: bool | None = None


def _gnu_time_works() -> bool:
    """True when ``/usr/bin/time -v`` exists and reports a maximum resident set size."""
    global _TIME_OK
    if _TIME_OK is None:
        _TIME_OK = False
        if shutil.which(TIME_BIN):
            done = subprocess.run([TIME_BIN, "-v", "true"], capture_output=True, text=True)
            _TIME_OK = done.returncode == 0 and "Maximum resident set size" in done.stderr
    return _TIME_OK


class _TreeSampler:
    """A thread that samples the summed RSS of a process and its descendants from /proc.

    With ``rss_limit`` or ``min_available`` set it is also the memory guard: it kills the tree
    (through ``killer``) once the sum passes ``rss_limit`` bytes or the machine's
    ``MemAvailable`` falls below ``min_available`` bytes.
    """

    def __init__(
        self,
        root: int,
        killer: _Killer,
        *,
        rss_limit: int | None = None,
        min_available: int | None = None,
    ) -> None:
        self.root = root
        self.killer = killer
        self.rss_limit = rss_limit
        self.min_available = min_available
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = _tree_rss(self.root)
            self.peak = max(self.peak, rss)
            if self.rss_limit is not None and rss > self.rss_limit:
                self.killer.kill(
                    f"memory guard: the process tree's RSS reached {rss / 1e9:.2f} GB, "
                    f"past the limit of {self.rss_limit / 1e9:.2f} GB"
                )
            if self.min_available is not None:
                available = mem_available()
                if available is not None and available < self.min_available:
                    self.killer.kill(
                        f"memory guard: the machine's available memory fell to "
                        f"{available / 1e9:.2f} GB (floor {self.min_available / 1e9:.2f} GB) "
                        f"with the process tree at {rss / 1e9:.2f} GB RSS"
                    )
            self._stop.wait(_SAMPLE_S)


def mem_available() -> int | None:
    """The machine's ``MemAvailable`` in bytes (None where /proc/meminfo has none)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _tree_rss(root: int) -> int:
    """Sum of ``VmRSS`` over ``root`` and every descendant, in bytes (0 once it has exited)."""
    return _rss(root) + sum(_rss(pid) for pid in _descendants(root))


def _descendants(root: int) -> list[int]:
    """Every live descendant of ``root`` (not ``root`` itself).

    Walks ``/proc/<pid>/task/<tid>/children`` rather than scanning all of ``/proc``, so a
    sample costs a few file reads and does not steal CPU from the measured tool.
    """
    found: list[int] = []
    seen, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in seen:
                    seen.add(child)
                    found.append(child)
                    frontier.append(child)
    return found


def _rss(pid: int) -> int:
    """``VmRSS`` of one process in bytes; 0 when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
