"""A real Dask deployment for tests: a ``dask scheduler`` process and ``dask worker`` processes
over TCP on 127.0.0.1 (ports chosen by the OS), and a worker plugin that kills its own worker
process when it starts a given pass-2 task (importable by the workers: tests/ is on their path).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Deployment:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]


def _env() -> dict[str, str]:
    """The processes' environment: tests/ importable, and no statistical profiler in the
    workers (a thread sampling every 10 ms: 1.2 against 0.7 CPU-s per idle worker in 30 s;
    nothing here reads its profiles)."""
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def deployment(folder: Path, n_workers: int = 2) -> Iterator[Deployment]:
    """A scheduler and ``n_workers`` single-threaded workers without nannies (a killed worker
    stays dead), all stopped on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    info = folder / "scheduler.json"
    env = _env()
    logs = [open(folder / f"log{i}.txt", "wb") for i in range(n_workers + 1)]  # noqa: SIM115
    scheduler = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(info),
        ],
        env=env,
        stdout=logs[0],
        stderr=subprocess.STDOUT,
        cwd=folder,
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            if scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the scheduler did not start: {(folder / 'log0.txt').read_text()}")
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        for i in range(n_workers):
            workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "distributed.cli.dask_worker",
                        address,
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--no-nanny",
                        "--host",
                        "127.0.0.1",
                        "--name",
                        f"w{i}",
                    ],
                    env=env,
                    stdout=logs[i + 1],
                    stderr=subprocess.STDOUT,
                    cwd=folder,
                )
            )
        yield Deployment(address, scheduler, workers)
    finally:
        for proc in [*workers, scheduler]:
            _stop(proc)
        for log in logs:
            log.close()


class KillOnTask(WorkerPlugin):
    """Kills its worker process (SIGKILL, no goodbye) as it starts executing the ``nth`` task
    whose key starts with ``prefix`` on that worker; only the first worker to get there dies
    (``marker`` is created exclusively), so the others carry on."""

    def __init__(self, prefix: str, nth: int, marker: str) -> None:
        self.prefix = prefix
        self.nth = nth
        self.marker = marker
        self.seen = 0

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish != "executing" or not str(key).startswith(self.prefix):
            return
        self.seen += 1
        if self.seen < self.nth:
            return
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)
