"""The ``widecube`` command as the tests run it: :func:`invoke` in the test's own process,
through typer's runner (the same code as a real process without its start, about 2.5 CPU-s
each), :func:`process` in a process of its own, for what only a real one shows (exit by
signal, what reaches a terminal, a crash that must not take pytest down), and :func:`forked`
for many such commands: each in a process of its own, forked from one that imported widecube
once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from typer.testing import CliRunner, Result

from widecube.cli import app


def invoke(env: dict[str, str | None], *args: str) -> Result:
    """``widecube ARGS`` with ``env`` set (``None`` unsets a variable) for the call.

    An exception that escapes the command fails the test: in a real process it would have
    been a traceback on the terminal."""
    done = CliRunner().invoke(app, list(args), env=env)
    assert done.exception is None or isinstance(done.exception, SystemExit), repr(done.exception)
    return done


def process(env: dict[str, str | None], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m widecube.cli ARGS`` in a process of its own, with this environment and
    ``env`` over it (``None`` unsets a variable), its output captured as text."""
    merged = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-m", "widecube.cli", *args],
        env={k: v for k, v in merged.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


_FORKS = r"""
import json, os, sys, traceback
from widecube.cli import app
import widecube.pipeline._ingest  # the engine an ingest imports on first use: once, here, for every child

out, at_once = sys.argv[1], int(sys.argv[2])
runs = json.load(sys.stdin)


def child(i):
    code = 1
    try:
        for key, value in runs[i]["env"].items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for fd, name in ((1, "out"), (2, "err")):
            f = os.open(f"{out}/{i}.{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(f, fd)
            os.close(f)
        sys.argv = ["widecube", *runs[i]["args"]]
        try:
            app(prog_name="widecube")
            code = 0
        except SystemExit as exc:  # what python -m widecube.cli exits with
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, int | None):
                print(exc.code, file=sys.stderr)
    except BaseException:  # an uncaught error: a traceback and 1, as the interpreter does
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


codes, running, todo = {}, {}, list(range(len(runs)))
while todo or running:
    while todo and len(running) < at_once:
        i = todo.pop(0)
        pid = os.fork()
        if pid == 0:
            child(i)
        running[pid] = i
    pid, status = os.wait()
    codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)  # -N: killed by signal N
json.dump([codes[i] for i in range(len(runs))], sys.stdout)
"""


def forked(
    runs: Sequence[tuple[Mapping[str, str | None], Sequence[str]]], *, at_once: int = 4, timeout: float = 600
) -> list[subprocess.CompletedProcess[str]]:
    """Each ``(env, args)`` of ``runs`` as ``widecube ARGS`` in a process of its own, with this
    environment and ``env`` over it, ``at_once`` at a time: forked from one process that
    imported widecube (and what an ingest imports) once, so each costs its work, not the ~2.5
    CPU-s of :func:`process`'s start. Each is still a real process: its exit status (negative:
    the signal that killed it) and what it wrote to stdout and stderr come back."""
    with tempfile.TemporaryDirectory(prefix="widecube-forks-") as out:
        payload = json.dumps([{"env": dict(env), "args": list(args)} for env, args in runs])
        done = subprocess.run(
            [sys.executable, "-c", _FORKS, out, str(at_once)],
            input=payload,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stderr
        codes = json.loads(done.stdout)
        folder = Path(out)
        return [
            subprocess.CompletedProcess(
                ["widecube", *args],
                code,
                (folder / f"{i}.out").read_text(),
                (folder / f"{i}.err").read_text(),
            )
            for i, ((_, args), code) in enumerate(zip(runs, codes, strict=True))
        ]


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (from ``/proc``): a server's or watcher's worker."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def freeze(pid: int, timeout: float = 30.0) -> None:
    """SIGSTOP ``pid`` and wait until every one of its threads has stopped: ``kill`` returns
    once the signal is queued, and a thread inside a system call (a commit's write, say) runs
    on until the call returns, so what it was writing can land after ``kill`` returned."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
            try:
                states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
            except OSError:  # a thread that ended meanwhile
                continue
        if states and all(state in "tTZX" for state in states):  # stopped, or dead
            return
        assert time.monotonic() < deadline, f"process {pid} did not stop: thread states {states}"
        time.sleep(0.001)
