"""What the commands say to an operator without a terminal: ``demo-data`` and ``ingest`` print
plain progress lines on stderr (_console.ProgressLines), naming the job's own steps (the same
names ``--timings`` and ``widecube jobs`` use); ``watch`` prints a line per entry; a worker
(and so ``serve``'s log) a line when each job starts and one when it ends."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _data import small_adata, write_h5ad
from widecube._console import ProgressLines, server_log_config
from widecube.catalog import Catalog
from widecube.config import Settings
from widecube.pipeline._ingest import STEPS
from widecube.pipeline._runner import JobRunner


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
    storage, *lines = done.stderr.splitlines()
    assert storage == f"storage: {env['WIDECUBE_STORAGE']} (WIDECUBE_STORAGE)"
    started = [line.split(":")[0] for line in lines if line.endswith(": started")]
    finished = [line.split(":")[0] for line in lines if ": done in " in line]
    assert started == finished == list(STEPS) == ["unpack", "validate", "compute", "verify", "publish"]
    assert all(line.split(":")[0] in STEPS for line in lines), lines  # no other step names
    published, timings = done.stdout.splitlines()
    assert published.startswith("published demo version ") and published.endswith("(60,000 cells × 40 genes)")
    spent = json.loads(timings)
    assert list(spent["steps"]) == list(STEPS) and all(s >= 0 for s in spent["steps"].values())
    assert sum(spent["steps"].values()) <= spent["total_s"]
    parts = spent["compute_parts"]  # the compute step split into its phases, adding up to it
    assert list(parts) == ["pass 1", "pass 2", "views written"] and all(s >= 0 for s in parts.values())
    assert sum(parts.values()) == pytest.approx(spent["steps"]["compute"], abs=0.005)


# -- the long-running commands: a line per watched entry, a line per job in the server's log --


def _wait_for(proc: subprocess.Popen[str], wanted: list[str], timeout: float = 120.0) -> list[str]:
    """stderr lines of ``proc`` until each of ``wanted`` is in one (or the timeout)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline and not all(any(w in line for line in seen) for w in wanted):
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line.rstrip("\n"))
    return seen


@pytest.mark.slow
@pytest.mark.subprocess
def test_watch_prints_a_line_per_entry_picked_up_published_or_failed(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_h5ad(small_adata(60, 8), inbox / "good.h5ad")
    (inbox / "bad.csv").write_text("cell,G1,G2\nc1,1,2\nc2,1,x\n")
    env = {**os.environ, "WIDECUBE_STORAGE": str(tmp_path / "store"), "WIDECUBE_AUTH": "off"}
    command = [
        sys.executable,
        "-m",
        "widecube.cli",
        "watch",
        str(inbox),
        "--quiet-period",
        "0",
        "--poll",
        "0.3",
    ]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        lines = _wait_for(proc, ["moved to processed/", "moved to failed/"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()
    good, bad = str(inbox / "good.h5ad"), str(inbox / "bad.csv")
    assert lines[0] == f"storage: {tmp_path / 'store'} (WIDECUBE_STORAGE)"
    assert lines[1].startswith("watching ")
    assert not any(line.startswith("storage: ") for line in lines[1:])  # its worker says nothing
    stamped = [line.split(" ", 2)[2] for line in lines[2:]]  # after the date and time
    entries = [e for e in stamped if e.startswith(str(inbox))]  # the watcher's own lines
    assert sorted(e.split(":")[0] for e in entries) == [bad, bad, good, good], lines
    # and the lines of the worker process that ran the jobs, and of its start
    assert any(re.fullmatch(r"job worker started \(pid \d+\)", e) for e in stamped), lines
    for name in ("good", "bad"):
        started = rf"job \w+ \(dataset {name}, {name}\.\w+\): started at received"
        assert any(re.search(started, e) for e in stamped), lines
    picked = {e.split(":")[0]: e for e in entries if "picked up as job" in e}
    ended = {e.split(":")[0]: e for e in entries if "moved to" in e}
    assert re.fullmatch(rf"{good}: picked up as job \w+ \(dataset good\)", picked[good])
    assert re.fullmatch(
        rf"{good}: published version \w+ of dataset good \(job \w+\), moved to processed/", ended[good]
    )
    assert re.fullmatch(
        rf"{bad}: failed: .*'x' at line 3, field 3.*\(job \w+\), moved to failed/", ended[bad]
    ), ended


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_worker_logs_a_line_when_each_job_starts_and_ends(tmp_path: Path) -> None:
    settings = Settings(storage=tmp_path / "store")
    good = write_h5ad(small_adata(60, 8), tmp_path / "good.h5ad")
    with Catalog(settings.catalog_url) as catalog:
        runner = JobRunner(settings, catalog)
        ok = runner.submit(good, dataset="pbmc", params={"views": ["summary"]}, source="upload")
        bad = runner.submit(tmp_path / "absent.h5ad", dataset="gone", params={}, source="upload")
    env = {**os.environ, "WIDECUBE_STORAGE": str(settings.storage), "WIDECUBE_AUTH": "off"}
    done = subprocess.run(
        [sys.executable, "-m", "widecube.cli", "work", "--once"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    lines = [line.split(" ", 4)[4] for line in done.stderr.splitlines() if " widecube.jobs: job " in line]
    assert len(lines) == 4, done.stderr
    assert re.fullmatch(
        rf"job {ok.id} \(dataset pbmc, good.h5ad\): started at received, worker \S+", lines[0]
    )
    assert re.fullmatch(
        rf"job {ok.id} \(dataset pbmc\): finished in [\d.]+ s, published version \w+", lines[1]
    )
    assert lines[2].startswith(f"job {bad.id} (dataset gone, absent.h5ad): started at received")
    assert re.fullmatch(
        rf"job {bad.id} \(dataset gone\): failed in unpack after [\d.]+ s: .*absent.h5ad.*", lines[3]
    )


def test_the_servers_log_has_widecube_lines_beside_uvicorns(capfd: pytest.CaptureFixture[str]) -> None:
    config = server_log_config()
    assert config["loggers"]["uvicorn.access"]["handlers"] == ["access"]  # uvicorn's own, kept
    logging.config.dictConfig(config)
    try:
        logging.getLogger("widecube.jobs").info("job j1 (dataset d): finished")
        logging.getLogger("widecube.jobs").debug("not shown")
    finally:
        logging.getLogger("widecube").handlers.clear()
        logging.getLogger("widecube").propagate = True
    assert capfd.readouterr().err.split() == ["INFO:", "job", "j1", "(dataset", "d):", "finished"]
