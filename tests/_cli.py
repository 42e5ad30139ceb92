"""The ``widecube`` command as the tests run it: :func:`invoke` in the test's own process,
through typer's runner (the same code as a real process without its start, about 2.5 CPU-s
each), and :func:`process` in a process of its own, for what only a real one shows (exit by
signal, what reaches a terminal, a crash that must not take pytest down)."""

from __future__ import annotations

import os
import subprocess
import sys

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
