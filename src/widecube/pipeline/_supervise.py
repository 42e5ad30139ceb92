"""A supervised worker process: ``widecube serve`` runs ingest jobs out of its own process.

A job runs native code on whatever a client uploaded; if that code dies (a segfault, the OOM
killer, a kill), only the worker process dies, never the server. :class:`WorkerProcess`
starts ``widecube work`` as a child process with the server's settings, and when it dies:

* frees the claims it held (``Jobs.release_dead``: the try it was making stays counted, so a
  job that keeps killing its workers fails after ``job_attempts`` tries, see ``_runner``);
* starts a new one after a backoff that doubles while workers die young (``backoff`` up to
  ``max_backoff`` seconds; reset once one lived ``stable`` seconds).

:meth:`WorkerProcess.stop` sends SIGTERM (the worker hands its job back, uncounted, and
exits; see ``widecube work``), then SIGKILL after ``timeout`` seconds. The child runs in
its own session, so a Ctrl-C in the server's terminal reaches the server only, and it exits
by itself when the server process is gone (``--stop-with-parent``).

No queue of its own: the catalog's jobs table, with its leases, is the queue.

    >>> worker = WorkerProcess(settings, catalog)
    >>> worker.start()
    >>> worker.stop()                                                # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from ..catalog import Catalog
from ..config import Settings
from ._workers import worker_prefix

__all__ = ["WorkerProcess", "settings_env"]

log = logging.getLogger("widecube.jobs")


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``WIDECUBE_*`` environment that makes a child process read them back.

    >>> settings_env(Settings(storage="/srv/wc"))["WIDECUBE_STORAGE"]
    '/srv/wc'
    """
    env = {}
    for name in type(settings).model_fields:
        value: Any = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | dict):
            text = json.dumps(value)
        else:
            text = str(value)
        env[f"WIDECUBE_{name.upper()}"] = text
    return env


def describe_exit(code: int) -> str:
    """How a child process ended, from its return code.

    >>> describe_exit(-9)
    'killed by signal 9 (SIGKILL)'
    """
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown"
        return f"killed by signal {-code} ({name})"
    return f"exited with status {code}"


class WorkerProcess:
    """Keeps one ``widecube work`` child process running for as long as it is started."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        *,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        stable: float = 60.0,
    ) -> None:
        self.settings, self.catalog = settings, catalog
        self.backoff, self.max_backoff, self.stable = backoff, max_backoff, stable
        self.restarts = 0
        """How many times a worker died and was started again."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The running worker's process id (None between workers)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="widecube-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop supervising and stop the worker: SIGTERM, then SIGKILL after ``timeout`` s."""
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("job worker %d did not stop in %.0f s; killing it", proc.pid, timeout)
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout)

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, **settings_env(self.settings)}
        command = [sys.executable, "-m", "widecube.cli", "work", "--stop-with-parent"]
        return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, start_new_session=True)

    def _loop(self) -> None:
        delay = self.backoff
        while not self._stop.is_set():
            started = time.monotonic()
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    proc = self._proc = self._spawn()
                except OSError:
                    log.exception("cannot start a job worker; trying again in %.0f s", delay)
                    proc = None
            if proc is not None:
                log.info("job worker started (pid %d)", proc.pid)
                while proc.poll() is None and not self._stop.wait(0.2):
                    pass
                if self._stop.is_set():
                    return
                how = describe_exit(proc.returncode)
                freed = self._release(proc.pid, how)
                if time.monotonic() - started >= self.stable:
                    delay = self.backoff
                log.warning(
                    "job worker %d %s%s; starting another in %.0f s",
                    proc.pid,
                    how,
                    f" while running job {', '.join(freed)}" if freed else "",
                    delay,
                )
                self.restarts += 1
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, self.max_backoff)

    def _release(self, pid: int, how: str) -> list[str]:
        try:
            return self.catalog.jobs.release_dead(worker_prefix(pid), how=how)
        except Exception:  # the catalog is away: the job waits for its lease to run out instead
            log.exception("could not free the jobs of dead worker %d", pid)
            return []
