"""``widecube.cli.main``, the ``widecube`` command, ends the process without the interpreter's
teardown: the command's exit status, every byte it wrote (through a pipe), and the exit
handlers a library registered are kept; a thread still working gets the normal exit, which
waits for it. Each case is a process of its own, its output read back through a pipe."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parents[1]


def _run(storage: Path, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(body) + "\nsys.argv = ['widecube', *sys.argv[1:]]\nmain()\n"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "COLUMNS": "200",
        "WIDECUBE_AUTH": "false",
        "WIDECUBE_STORAGE": str(storage),
    }
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_status_and_every_byte_written_survive_the_quick_exit(tmp_path: Path) -> None:
    big = "x" * 70_000  # past a pipe's 64 KiB buffer: only a flush gets it all out
    done = _run(
        tmp_path,
        f"""
        import atexit, sys
        from widecube.cli import app, main
        atexit.register(lambda: print("handler ran", flush=False))

        @app.command("shout")
        def shout() -> None:
            print("{big}", end="")
            print("|end", end="")
        """,
        "shout",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == big + "|end" + "handler ran\n"


@pytest.mark.parametrize(
    ("raised", "status", "said"),
    [("typer.Exit(3)", 3, ""), ("SystemExit('went wrong')", 1, "went wrong\n"), ("SystemExit(None)", 0, "")],
)
def test_the_command_s_exit_status_is_the_process_s(
    raised: str, status: int, said: str, tmp_path: Path
) -> None:
    done = _run(
        tmp_path,
        f"""
        import sys, typer
        from widecube.cli import app, main

        @app.command("stop")
        def stop() -> None:
            raise {raised}
        """,
        "stop",
    )
    assert done.returncode == status and "Traceback" not in done.stderr
    assert done.stderr.endswith(said) and done.stderr.startswith("storage: ")


def test_a_usage_error_and_a_bad_input_keep_their_status(tmp_path: Path) -> None:
    usage = _run(tmp_path, "import sys\nfrom widecube.cli import main", "--no-such-option")
    assert usage.returncode == 2 and "No such option" in usage.stderr
    missing = _run(
        tmp_path, "import sys\nfrom widecube.cli import main", "ingest", str(tmp_path / "no.h5ad"), "-d", "d"
    )
    assert missing.returncode == 1 and "no.h5ad" in missing.stderr


def test_a_thread_still_working_is_waited_for(tmp_path: Path) -> None:
    done = _run(
        tmp_path,
        """
        import sys, threading, time
        from widecube.cli import app, main

        @app.command("late")
        def late() -> None:
            def work() -> None:
                time.sleep(0.5)
                print("the thread finished", flush=True)
            threading.Thread(target=work).start()
        """,
        "late",
    )
    assert (done.returncode, done.stdout) == (0, "the thread finished\n")


def test_the_interpreter_s_teardown_is_skipped(tmp_path: Path) -> None:
    """An object freed only by the interpreter's teardown says so when freed: after ``app()``
    (the control: a normal exit) it does, after ``main()`` it does not."""
    probe = """
        import sys
        from widecube.cli import app, main

        class Late:
            def __del__(self) -> None:
                print("torn down", flush=True)

        kept = Late()
        """
    quick = _run(tmp_path, probe, "--help")
    normal = _run(tmp_path, probe.replace("kept = Late()", "kept = Late()\n        main = app"), "--help")
    assert quick.returncode == normal.returncode == 0
    assert "Usage" in quick.stdout and not quick.stdout.endswith("torn down\n")
    assert normal.stdout.endswith("torn down\n")
