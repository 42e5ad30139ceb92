"""The inbox watcher: when entries are taken, how they are named, where they end up, and
what a restart (of the object, and of a killed ``widecube watch`` process) does."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _cli import children, freeze
from _data import small_adata, write_h5ad
from widecube.catalog import Catalog, JobState
from widecube.config import Settings
from widecube.pipeline import Watcher, dataset_name
from widecube.query import Widecube


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def group_sums(settings: Settings, dataset: str, groupby: str, gene: int) -> dict[str, float]:
    wc = Widecube(settings)
    try:
        got = wc.summary(dataset, genes=[f"Gene{gene}"], groupby=groupby, stats=["sum"], layer="input")
    finally:
        wc.close()
    return dict(zip(got["groups"], np.asarray(got["values"]["sum"])[:, 0].tolist(), strict=True))


def expected_sums(x: np.ndarray, labels: pd.Series, gene: int) -> dict[str, float]:
    return {str(g): float(x[(labels == g).to_numpy(), gene].sum()) for g in labels.unique()}


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def test_dataset_names_from_entries() -> None:
    assert dataset_name("pbmc_3k.h5ad") == "pbmc_3k"
    assert dataset_name("PBMC 3k (v2).tar.gz") == "PBMC_3k_v2"
    assert dataset_name("filtered_feature_bc_matrix") == "filtered_feature_bc_matrix"


class _Clock:
    """A stand-in for the watcher's ``time`` module: ``monotonic()`` is what the test sets, so
    the quiet period is judged on a clock the test drives, not on sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_marker_folders_at_once_others_after_the_quiet_period(
    inbox: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_h5ad(small_adata(seed=1), inbox / "a.h5ad")
    (inbox / "marked").mkdir()
    write_h5ad(small_adata(seed=2), inbox / "marked" / "m.h5ad")
    (inbox / "marked" / "_SUCCESS").touch()
    (inbox / "growing").mkdir()
    write_h5ad(small_adata(seed=3), inbox / "growing" / "g.h5ad")
    (inbox / "copying.h5ad.part").write_bytes(b"half")
    (inbox / ".hidden.h5ad").write_bytes(b"x")
    clock = _Clock()
    monkeypatch.setattr(sys.modules[Watcher.__module__], "time", clock)  # the watcher's time only
    with Catalog(settings.catalog_url) as catalog:
        watcher = Watcher(inbox, settings, catalog, quiet=0.6, poll=0.1)
        assert [j.dataset for j in watcher.scan()] == ["marked"]
        clock.now = 0.3
        (inbox / "growing" / "more.txt").write_text("still copying")  # resets its quiet period
        assert watcher.scan() == []
        clock.now = 0.59
        assert watcher.scan() == []  # nothing is quiet for 0.6 s yet
        clock.now = 0.7
        assert [j.dataset for j in watcher.scan()] == ["a"]  # quiet for 0.7 s; growing for 0.4 s
        clock.now = 0.89
        assert watcher.scan() == []  # growing: 0.59 s
        clock.now = 0.91
        assert [j.dataset for j in watcher.scan()] == ["growing"]
        assert watcher.scan() == []
        jobs = catalog.jobs.list()
    assert sorted(j.dataset for j in jobs) == ["a", "growing", "marked"]
    assert {j.source for j in jobs} == {"watch"} and {j.state for j in jobs} == {JobState.RECEIVED}


@pytest.mark.slow
def test_entries_end_in_processed_or_failed_with_a_report(inbox: Path, settings: Settings) -> None:
    plain, side = small_adata(seed=4), small_adata(seed=5)
    write_h5ad(plain, inbox / "plain.h5ad")
    (inbox / "drop").mkdir()  # a folder with a _SUCCESS marker
    write_h5ad(small_adata(seed=6), inbox / "drop" / "matrix.h5ad")
    (inbox / "drop" / "_SUCCESS").touch()
    write_h5ad(side, inbox / "lab-export.h5ad")  # named and grouped by its sidecar, with cell metadata
    batch = pd.Series(np.where(np.arange(side.n_obs) % 3 == 0, "b1", "b2"), index=side.obs_names)
    batch.rename("batch").to_frame().to_csv(inbox / "cells.csv", index_label="cell")
    (inbox / "lab-export.json").write_text(
        json.dumps({"name": "lab", "groupbys": ["batch"], "obs": "cells.csv"})
    )
    (inbox / "notes.h5ad").write_text("not a matrix")
    write_h5ad(small_adata(seed=7), inbox / "typo.h5ad")
    (inbox / "typo.json").write_text('{"name": "typo", "groupby": ["donor"]}')

    with Catalog(settings.catalog_url) as catalog:
        ran = Watcher(inbox, settings, catalog, quiet=0.2).run_once()
        states = {j.dataset: j.state for j in catalog.jobs.list()}
        assert len(ran) == 4  # the job of a bad sidecar is born failed: nothing to run
        assert all(j.input_key is None for j in catalog.jobs.list())  # keys released once filed
    assert states == {
        "plain": JobState.PUBLISHED,
        "drop": JobState.PUBLISHED,
        "lab": JobState.PUBLISHED,
        "notes": JobState.FAILED,
        "typo": JobState.FAILED,
    }
    assert listing(inbox) == [
        "failed/notes.h5ad",
        "failed/notes.h5ad.error.json",
        "failed/typo.h5ad",
        "failed/typo.h5ad.error.json",
        "failed/typo.json",
        "processed/cells.csv",
        "processed/drop/_SUCCESS",
        "processed/drop/matrix.h5ad",
        "processed/lab-export.h5ad",
        "processed/lab-export.json",
        "processed/plain.h5ad",
    ]
    report = json.loads((inbox / "failed" / "notes.h5ad.error.json").read_text())
    assert report["dataset"] == "notes" and report["state"] == "failed" and report["step"] == "validate"
    assert "notes.h5ad: not a recognised matrix file" in report["error"]
    typo = json.loads((inbox / "failed" / "typo.h5ad.error.json").read_text())
    assert typo["error"].startswith("sidecar typo.json: unknown field(s) groupby (known: ")
    assert group_sums(settings, "lab", "batch", 7) == expected_sums(np.asarray(side.X), batch, 7)
    assert group_sums(settings, "plain", "donor", 2) == expected_sums(
        np.asarray(plain.X), plain.obs["donor"], 2
    )


@pytest.mark.slow
def test_a_new_watcher_finds_the_jobs_of_the_last_one(inbox: Path, settings: Settings) -> None:
    write_h5ad(small_adata(seed=8), inbox / "a.h5ad")
    with Catalog(settings.catalog_url) as catalog:
        first = Watcher(inbox, settings, catalog, quiet=0)
        (job,) = first.scan()  # registered, then the watcher "dies" before running it
        second = Watcher(inbox, settings, catalog, quiet=0)
        assert second.scan() == []
        assert [j.id for j in second.run_once()] == [job.id]
        (done,) = catalog.jobs.list()
        assert done.id == job.id and done.state == JobState.PUBLISHED
        # the same bytes dropped again later are new work, not the old job
        shutil.copy2(inbox / "processed" / "a.h5ad", inbox / "a.h5ad")
        (again,) = Watcher(inbox, settings, catalog, quiet=0).run_once()
        assert again.id != job.id and again.state == JobState.PUBLISHED
    assert listing(inbox) == sorted(["processed/a.h5ad", f"processed/{again.id[:8]}-a.h5ad"])


def _watch(settings: Settings, inbox: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "WIDECUBE_STORAGE": str(settings.storage),
        "WIDECUBE_JOB_LEASE": "2",
        "WIDECUBE_CATALOG_URL": settings.catalog_url,
        "WIDECUBE_JOB_POLL": "0.2",
    }
    args = [
        sys.executable,
        "-m",
        "widecube.cli",
        "watch",
        str(inbox),
        "--quiet-period",
        "0.3",
        "--poll",
        "0.2",
    ]
    return subprocess.Popen(args, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _wait(check: Callable[[], bool], seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log.read_text()}"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.subprocess
def test_killing_and_restarting_the_watcher_loses_and_duplicates_nothing(
    inbox: Path, settings: Settings, tmp_path: Path
) -> None:
    a, b = small_adata(seed=10), small_adata(seed=11)
    log = tmp_path / "watch.log"
    catalog = Catalog(settings.catalog_url)
    watcher = _watch(settings, inbox, log)
    try:
        write_h5ad(a, inbox / "a.h5ad")
        _wait(lambda: any(j.step is not None for j in catalog.jobs.list()), 120, "a's job to start", log)
        os.kill(watcher.pid, signal.SIGKILL)  # in the middle of a's job
        watcher.wait()
        write_h5ad(b, inbox / "b.h5ad")  # dropped while nobody watches
        (job_a,) = catalog.jobs.list()
        assert not job_a.state.final and (inbox / "a.h5ad").exists()
        watcher = _watch(settings, inbox, log)
        _wait(lambda: sorted(os.listdir(inbox / "processed")) == ["a.h5ad", "b.h5ad"], 180, "both filed", log)
    finally:
        watcher.kill()
        watcher.wait()
    jobs = catalog.jobs.list()
    catalog.close()
    assert sorted((j.dataset, j.state) for j in jobs) == [
        ("a", JobState.PUBLISHED),
        ("b", JobState.PUBLISHED),
    ]
    resumed = next(j for j in jobs if j.dataset == "a")
    assert resumed.id == job_a.id and len({e["worker"] for e in resumed.log}) == 2  # taken over, not redone
    assert sorted(os.listdir(inbox)) == ["failed", "processed"] and os.listdir(inbox / "failed") == []
    assert group_sums(settings, "b", "donor", 3) == expected_sums(np.asarray(b.X), b.obs["donor"], 3)


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_worker_dying_in_native_code_leaves_the_watcher_watching(
    inbox: Path, settings: Settings, tmp_path: Path
) -> None:
    """A mapped input truncated in place, or a crash in a reader's C code, ends the process
    running the job: under ``widecube watch`` that is its worker process, not the watcher."""
    a = small_adata(seed=12)
    log = tmp_path / "watch.log"
    catalog = Catalog(settings.catalog_url)
    watcher = _watch(settings, inbox, log)
    try:
        write_h5ad(a, inbox / "a.h5ad")
        victim = None
        deadline = time.monotonic() + 120
        while victim is None:
            assert time.monotonic() < deadline, f"no job step to interrupt:\n{log.read_text()}"
            running = [j for j in catalog.jobs.list() if j.step is not None and j.worker is not None]
            if running:
                pid = int(running[0].worker.split(":")[1])
                freeze(pid)  # every thread stopped: the step cannot end before the signal lands
                job = catalog.jobs.get(running[0].id)
                if job.step is not None and job.worker == running[0].worker:
                    assert pid in children(watcher.pid)  # the watcher's own worker process
                    victim = (pid, job.step)
                    os.kill(pid, signal.SIGBUS)  # what touching a truncated mapping sends
                os.kill(pid, signal.SIGCONT)
            time.sleep(0.01)
        _wait(lambda: os.listdir(inbox / "processed") == ["a.h5ad"], 180, "a filed", log)
        assert watcher.poll() is None, log.read_text()  # still watching
        write_h5ad(small_adata(seed=13), inbox / "b.h5ad")  # and still taking entries
        _wait(lambda: "b.h5ad" in os.listdir(inbox / "processed"), 180, "b filed", log)
    finally:
        watcher.kill()
        watcher.wait()
    jobs = {j.dataset: j for j in catalog.jobs.list()}
    catalog.close()
    assert {d: j.state for d, j in jobs.items()} == {"a": JobState.PUBLISHED, "b": JobState.PUBLISHED}
    died = [e for e in jobs["a"].log if e["event"] == "died"]
    assert [(e["step"], e["how"]) for e in died] == [(victim[1], "killed by signal 7 (SIGBUS)")]
    assert group_sums(settings, "a", "donor", 3) == expected_sums(np.asarray(a.X), a.obs["donor"], 3)
    assert "killed by signal 7 (SIGBUS)" in log.read_text()
