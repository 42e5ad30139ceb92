"""Progress without a terminal (_console.ProgressLines): ``demo-data`` and ``ingest`` print
plain lines on stderr when it is a file or a pipe, naming the job's own steps (the same names
``--timings`` and ``widecube jobs`` use)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from widecube._console import ProgressLines
from widecube.pipeline._ingest import STEPS


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_at_each_tenth_every_five_seconds_and_when_done() -> None:
    stream, clock = io.StringIO(), Clock()
    with ProgressLines(stream, clock=clock) as bar:
        task = bar.add_task("compute", total=1.0)
        for done, later in [(0.05, 1), (0.12, 1), (0.15, 1), (0.17, 5), (0.31, 1), (0.35, 1), (1.0, 2)]:
            clock.now += later
            bar.update(task, completed=done)
        bar.update(task, completed=1.0)  # said done once only
        demo = bar.add_task("demo-data", total=300)
        for _ in range(3):
            bar.advance(demo, 100)
    assert stream.getvalue().splitlines() == [
        "compute: started",
        "compute: 12% (2 s)",  # passed 10 %
        "compute: 17% (8 s)",  # 5 s since the last line
        "compute: 31% (9 s)",  # passed 30 % (the mark is kept in tenths)
        "compute: done in 12.0 s",
        "demo-data: started",
        "demo-data: 33% (0 s)",
        "demo-data: 67% (0 s)",
        "demo-data: done in 0.0 s",
    ]


@pytest.mark.slow
@pytest.mark.subprocess
def test_demo_data_and_ingest_print_plain_steps_without_a_terminal(tmp_path: Path) -> None:
    env = {**os.environ, "WIDECUBE_STORAGE": str(tmp_path / "store"), "WIDECUBE_AUTH": "off", "COLUMNS": "40"}
    cli = [sys.executable, "-m", "widecube.cli"]
    demo = tmp_path / "a folder with a rather long name" / "demo.h5ad"
    demo.parent.mkdir()
    made = subprocess.run(
        [*cli, "demo-data", str(demo), "--cells", "60000", "--genes", "40", "--types", "3", "--donors", "2"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = made.stderr.splitlines()
    assert lines[0] == "demo-data: started" and lines[-1].startswith("demo-data: done in ")
    assert [line.split()[1] for line in lines[1:-1]] == ["33%", "67%"]  # 3 blocks of 20,000 cells
    assert made.stdout == f"wrote {demo} (60,000 cells × 40 genes)\n"  # one line, not wrapped at 40

    done = subprocess.run(
        [*cli, "ingest", str(demo), "--dataset", "demo", "--timings", "--views", "summary"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stderr.splitlines()
    started = [line.split(":")[0] for line in lines if line.endswith(": started")]
    finished = [line.split(":")[0] for line in lines if ": done in " in line]
    assert started == finished == list(STEPS) == ["unpack", "validate", "compute", "verify", "publish"]
    assert all(line.split(":")[0] in STEPS for line in lines), lines  # no other step names
    published, timings = done.stdout.splitlines()
    assert published.startswith("published demo version ") and published.endswith("(60,000 cells × 40 genes)")
    spent = json.loads(timings)
    assert list(spent["steps"]) == list(STEPS) and all(s >= 0 for s in spent["steps"].values())
    assert sum(spent["steps"].values()) <= spent["total_s"]
