"""The ``widecube`` command run in the test's own process, through typer's runner: the same
code as a real process without its start (about 2.5 CPU-s each). Tests that need a real
process (exit by signal, what reaches a terminal, a crash that must not take pytest down)
start one themselves."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from widecube.cli import app


def invoke(env: dict[str, str | None], *args: str) -> Result:
    """``widecube ARGS`` with ``env`` set (``None`` unsets a variable) for the call.

    An exception that escapes the command fails the test: in a real process it would have
    been a traceback on the terminal."""
    done = CliRunner().invoke(app, list(args), env=env)
    assert done.exception is None or isinstance(done.exception, SystemExit), repr(done.exception)
    return done
