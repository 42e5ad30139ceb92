"""Ingest jobs: the state rules, claims on SQLite and PostgreSQL, steps, resume after a kill,
retries of transient errors, and the jobs CLI and API.

Expected states and step logs are written out by hand; published data is compared with numpy.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from _data import MakeH5ad, small_adata
from _pg import postgres_schema
from widecube.api import create_app
from widecube.catalog import Catalog, JobNotFound, JobRecord, JobState, LeaseLost, VersionStatus
from widecube.catalog._jobstore import check_job_transition
from widecube.config import Settings
from widecube.errors import CatalogError, InvalidValue
from widecube.pipeline import JobRunner, ingest, next_step, retry_delay
from widecube.query import Widecube

J = JobState
ALL_STEPS = ["unpack", "validate", "compute", "verify", "publish"]


def events(job: JobRecord, worker: str | None = None) -> list[tuple[str, str]]:
    return [(e["event"], e["step"]) for e in job.log if worker is None or e["worker"] == worker]


def clean_run(steps: list[str]) -> list[tuple[str, str]]:
    return [(event, step) for step in steps for event in ("start", "done")]


def raw_sum(
    settings: Settings, dataset: str, gene: int, groupby: str = "donor"
) -> tuple[list[str], np.ndarray]:
    wc = Widecube(settings)
    try:
        got = wc.summary(dataset, genes=[f"Gene{gene}"], groupby=groupby, stats=["sum"], layer="input")
    finally:
        wc.close()
    return got["groups"], np.asarray(got["values"]["sum"])[:, 0]


def assert_sums_match(settings: Settings, dataset: str, adata: Any, gene: int = 5) -> None:
    groups, sums = raw_sum(settings, dataset, gene)
    x = np.asarray(adata.X)
    for g, got in zip(groups, sums, strict=True):
        assert got == pytest.approx(x[(adata.obs["donor"] == g).to_numpy(), gene].sum())


# -- pure rules -------------------------------------------------------------------------------


def test_transitions_steps_and_retry_policy_without_a_database() -> None:
    check_job_transition("j", J.RECEIVED, J.UNPACKED)
    check_job_transition("j", J.COMPUTED, J.FAILED)
    for current, target in [
        (J.RECEIVED, J.VALIDATED),
        (J.PUBLISHED, J.FAILED),
        (J.FAILED, J.RECEIVED),
        (J.VERIFIED, J.COMPUTED),
    ]:
        with pytest.raises(CatalogError, match=f"job j is {current.value}"):
            check_job_transition("j", current, target)
    assert [next_step(s) for s in J] == [
        ("unpack", J.UNPACKED),
        ("validate", J.VALIDATED),
        ("compute", J.COMPUTED),
        ("verify", J.VERIFIED),
        ("publish", J.PUBLISHED),
        None,
        None,
        None,
    ]
    check_job_transition("j", J.VERIFIED, J.SUPERSEDED)  # its version stays verified, not live
    with pytest.raises(CatalogError, match="job j is computed; it can only become verified or failed"):
        check_job_transition("j", J.COMPUTED, J.SUPERSEDED)
    io = OSError(5, "Input/output error")
    assert [retry_delay(io, a, attempts=4, backoff=0.5) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, None]
    assert (
        retry_delay(sa.exc.OperationalError("SELECT", {}, Exception("gone")), 1, attempts=2, backoff=1) == 1
    )
    bad = InvalidValue("x.h5ad: NaN found at row 1, column 2")
    assert retry_delay(bad, 1, attempts=5, backoff=1.0) is None  # bad input is never retried
    assert retry_delay(ValueError("a bug"), 1, attempts=5, backoff=1.0) is None


# -- the jobs table on both backends ----------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    if request.param == "sqlite":
        with Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as opened:
            yield opened
    else:
        with postgres_schema() as (url, _schema), Catalog(url) as opened:
            yield opened


def test_claims_leases_and_guarded_transitions(catalog: Catalog) -> None:
    jobs = catalog.jobs
    first = jobs.create(
        dataset="a",
        source="watch",
        input="/in/a.h5ad",
        params={"groupbys": []},
        input_key="watch:/in/a.h5ad:1:2:3",
    )
    again = jobs.create(dataset="a", source="watch", input="/in/a.h5ad", params={}, input_key=first.input_key)
    assert again.id == first.id and jobs.by_key("watch:/in/a.h5ad:1:2:3") == first
    second = jobs.create(dataset="b", source="cli", input="/in/b.h5ad", params={})
    assert (first.state, first.worker, first.version is not None) == (J.RECEIVED, None, True)

    claimed = jobs.claim("w1", lease_s=60)
    assert claimed is not None and claimed.id == first.id and claimed.worker == "w1"
    assert claimed.lease_until is not None and claimed.lease_until > datetime.now(UTC) + timedelta(seconds=50)
    other = jobs.claim("w2", lease_s=60)  # the oldest free one
    assert other is not None and other.id == second.id
    assert jobs.claim("w3", lease_s=60) is None
    with pytest.raises(LeaseLost, match=f"job {first.id} is no longer claimed by worker w2"):
        jobs.advance(first.id, "w2", J.UNPACKED)
    with pytest.raises(CatalogError, match="can only become unpacked or failed"):
        jobs.advance(first.id, "w1", J.COMPUTED)
    started = jobs.start(first.id, "w1", "unpack", limit=3)
    assert (started.step, started.attempts) == ("unpack", 1)  # the try is counted as it starts
    jobs.event(first.id, "w1", "retry", "unpack", attempt=1, error="OSError: x")
    assert jobs.advance(first.id, "w1", J.UNPACKED).state == J.UNPACKED
    assert jobs.get(first.id).attempts == 0  # the next step's tries are counted afresh
    jobs.start(first.id, "w1", "validate", limit=3)

    # w1 dies: its lease runs out, and w3 takes the job over where it stood
    assert jobs.renew(first.id, "w1", lease_s=-1)
    taken = jobs.claim("w3", lease_s=60)
    assert taken is not None and (taken.id, taken.state, taken.worker) == (first.id, J.UNPACKED, "w3")
    assert not jobs.renew(first.id, "w1", lease_s=60)
    jobs.report(first.id, "w1", {"step": "read", "fraction": 0.5})  # ignored: not the holder
    done = jobs.advance(first.id, "w3", J.FAILED, error="x.h5ad: bad")
    assert (done.state, done.error, done.worker, done.lease_until) == (J.FAILED, "x.h5ad: bad", None, None)
    assert done.finished is not None and done.progress == {} and done.attempts == 1
    assert events(done) == [("start", "unpack"), ("retry", "unpack"), ("start", "validate")]
    assert jobs.claim("w3", lease_s=60) is None  # final jobs are never claimed

    jobs.forget_key(first.id)
    assert jobs.by_key("watch:/in/a.h5ad:1:2:3") is None
    assert [j.id for j in jobs.list()] == [second.id, first.id]
    assert [j.id for j in jobs.list(state=J.FAILED)] == [first.id]
    assert [j.id for j in jobs.list(source="cli")] == [second.id]
    with pytest.raises(JobNotFound, match="no job 'nope'"):
        jobs.get("nope")


def test_two_workers_never_claim_the_same_job(catalog: Catalog) -> None:
    made = {catalog.jobs.create(dataset=f"d{i}", source="cli", input="x", params={}).id for i in range(12)}
    got: dict[str, list[str]] = {"w1": [], "w2": []}

    def work(worker: str) -> None:
        while (job := catalog.jobs.claim(worker, lease_s=60)) is not None:
            got[worker].append(job.id)
            catalog.jobs.advance(job.id, worker, J.FAILED, error="stop")

    threads = [threading.Thread(target=work, args=(w,)) for w in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got["w1"] + got["w2"]) == sorted(made)


# -- running jobs -----------------------------------------------------------------------------


@pytest.mark.slow
def test_ingest_is_one_job_through_every_step(make_h5ad: MakeH5ad, settings: Settings) -> None:
    adata = small_adata(seed=3)
    path = make_h5ad(adata)
    record = ingest(path, dataset="t", groupbys=["donor"], settings=settings)
    with Catalog(settings.catalog_url) as catalog:
        (job,) = catalog.jobs.list()
    assert (job.state, job.dataset, job.version, job.source, job.error) == (
        J.PUBLISHED,
        "t",
        record.version,
        "cli",
        None,
    )
    assert events(job) == clean_run(ALL_STEPS)
    assert job.worker is None and job.started is not None and job.finished is not None
    assert record.status == VersionStatus.PUBLISHED
    assert not (settings.storage / "work" / job.id).exists()  # checkpoints go with the job
    assert_sums_match(settings, "t", adata)
    # hashed from validate on, by a child process: the file's own sha256
    assert _manifest(settings, "t", record.version)["input"]["sha256"] == _sha256(path)


def _manifest(settings: Settings, dataset: str, version: str) -> dict[str, Any]:
    return json.loads((settings.storage / "datasets" / dataset / version / "manifest.json").read_text())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stalling_worker(settings: Settings, step: str, when: str, marker: Path) -> subprocess.Popen[str]:
    """A worker process whose ``step`` hangs (``before`` or ``after`` doing its work)."""
    script = f"""
import time
from pathlib import Path
import widecube.pipeline._ingest as steps
from widecube.catalog import Catalog
from widecube.config import Settings
from widecube.pipeline import JobRunner

real = steps.STEPS[{step!r}]

def stalled(work):
    if {when!r} == "after":
        real(work)
    Path({str(marker)!r}).write_text("stalled")
    time.sleep(600)

steps.STEPS[{step!r}] = stalled
settings = Settings()
JobRunner(settings, Catalog(settings.catalog_url), worker="killed").run_pending()
"""
    env = {
        **os.environ,
        "WIDECUBE_STORAGE": str(settings.storage),
        "WIDECUBE_CATALOG_URL": settings.catalog_url,
        "WIDECUBE_JOB_LEASE": "2",
    }
    return subprocess.Popen([sys.executable, "-c", script], env=env, text=True, stderr=subprocess.PIPE)


def _wait(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("step", "when", "redone"),
    [
        ("compute", "after", ["compute", "verify", "publish"]),  # staging written, not recorded
        ("publish", "before", ["publish"]),  # verified: only publishing is left
    ],
)
def test_a_killed_worker_s_job_resumes_from_its_last_step(
    step: str, when: str, redone: list[str], tmp_path: Path, make_h5ad: MakeH5ad, settings: Settings
) -> None:
    adata = small_adata(seed=5)
    archive = tmp_path / "drop.zip"
    with zipfile.ZipFile(archive, "w") as z:  # an archive, so that unpacking is real work
        z.write(make_h5ad(adata), "inner/pbmc.h5ad")
    with Catalog(settings.catalog_url) as catalog:
        job = JobRunner(settings, catalog).submit(archive, dataset="t", params={"groupbys": ["donor"]})
        marker = tmp_path / "stalled"
        worker = _stalling_worker(settings, step, when, marker)
        try:
            _wait(lambda: marker.exists() or worker.poll() is not None, 240, f"the worker to reach {step}")
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait()
        finally:
            if worker.poll() is None:
                worker.kill()
        stalled = catalog.jobs.get(job.id)
        done_before = ALL_STEPS[: ALL_STEPS.index(step)]
        assert stalled.state == J(
            ["received", "unpacked", "validated", "computed", "verified"][len(done_before)]
        )
        assert stalled.worker == "killed" and stalled.step == step
        assert (settings.storage / "work" / job.id / "unpack.json").exists()

        resumer = JobRunner(settings.model_copy(update={"job_lease": 30.0}), catalog, worker="resumer")
        _wait(lambda: resumer.run_next() is not None, 30, "the dead worker's lease to run out")
        final = catalog.jobs.get(job.id)
        assert final.state == J.PUBLISHED, final.error
        assert events(final, "killed") == [*clean_run(done_before), ("start", step)]
        assert events(final, "resumer") == clean_run(redone)
        assert catalog.current("t").version == final.version
        assert catalog.versions("t")[0].status == VersionStatus.PUBLISHED
    assert_sums_match(settings, "t", adata)
    # the digest begun by the killed worker is begun again by the one that computes
    assert _manifest(settings, "t", final.version)["input"]["sha256"] == _sha256(archive)
    assert not any((settings.storage / "staging").iterdir())
    assert not (settings.storage / "work" / job.id).exists()


@pytest.mark.slow
def test_progress_is_saved_beside_the_job_never_by_it(
    make_h5ad: MakeH5ad, settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A progress save is two catalog transactions (up to 81 ms measured): the job's threads
    hand it over and go on; each step's end is saved before the next step starts; a save
    that fails is logged and the job publishes all the same."""
    from widecube.catalog._jobstore import Jobs

    real, saved = Jobs.report, []

    def slow(self: Jobs, job: str, worker: str, progress: dict[str, Any]) -> None:
        saved.append((threading.current_thread().name, dict(progress)))
        time.sleep(0.25)
        if progress["step"] == "validate" and progress["fraction"] == 0.0:
            raise sa.exc.OperationalError("UPDATE jobs", {}, Exception("database is locked"))
        real(self, job, worker, progress)

    monkeypatch.setattr(Jobs, "report", slow)
    reported: list[tuple[str, float, float]] = []
    adata = small_adata(seed=4)
    with caplog.at_level("WARNING", logger="widecube.jobs"):
        record = ingest(
            make_h5ad(adata),
            dataset="t",
            groupbys=["donor"],
            settings=settings,
            progress=lambda step, done: reported.append((step, done, time.monotonic())),
        )
    assert record.status == VersionStatus.PUBLISHED
    assert_sums_match(settings, "t", adata)
    with Catalog(settings.catalog_url) as catalog:
        (job,) = catalog.jobs.list()
    job_id = job.id
    # made by the saver's thread only, while the job's threads went on
    assert saved and {name.rsplit("_", 1)[0] for name, _ in saved} == {f"widecube-progress-{job_id[:8]}"}
    assert [step for step, done, _ in reported if done == 0.0] == ALL_STEPS
    # every step's end was saved, in order, before the job moved on
    ends = [p["step"] for _, p in saved if p["fraction"] == 1.0]  # a step may report its end twice
    assert list(dict.fromkeys(ends)) == ALL_STEPS and ends[-1] == "publish"
    assert "could not save its progress" in caplog.text and "database is locked" in caplog.text


def test_transient_errors_are_retried_with_backoff(
    make_h5ad: MakeH5ad, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import widecube.pipeline._ingest as steps

    real, calls = steps.STEPS["verify"], []

    def flaky(work: Any) -> Any:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise OSError(116, "Stale file handle")
        return real(work)

    monkeypatch.setitem(steps.STEPS, "verify", flaky)
    patient = settings.model_copy(update={"job_attempts": 3, "job_backoff": 0.2})
    adata = small_adata(seed=7)
    ingest(make_h5ad(adata), dataset="t", settings=patient)
    with Catalog(settings.catalog_url) as catalog:
        (job,) = catalog.jobs.list()
    assert job.state == J.PUBLISHED and job.attempts == 1  # publish, tried once
    assert [e for e in events(job) if e[1] == "verify"] == [
        ("start", "verify"),
        ("retry", "verify"),
        ("start", "verify"),
        ("retry", "verify"),
        ("start", "verify"),
        ("done", "verify"),
    ]
    retries = [e for e in job.log if e["event"] == "retry"]
    assert [e["delay_s"] for e in retries] == [0.2, 0.4]
    assert retries[0]["error"] == "OSError: [Errno 116] Stale file handle"
    assert calls[1] - calls[0] >= 0.2 and calls[2] - calls[1] >= 0.4
    assert_sums_match(settings, "t", adata)


@pytest.mark.slow
def test_transient_errors_fail_the_job_after_the_last_attempt(
    make_h5ad: MakeH5ad, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import widecube.pipeline._ingest as steps

    def broken(work: Any) -> Any:
        raise OSError(5, "Input/output error")

    monkeypatch.setitem(steps.STEPS, "publish", broken)
    with pytest.raises(OSError, match="Input/output error"):
        ingest(
            make_h5ad(),
            dataset="t",
            settings=settings.model_copy(update={"job_attempts": 2, "job_backoff": 0}),
        )
    with Catalog(settings.catalog_url) as catalog:
        (job,) = catalog.jobs.list()
        assert job.state == J.FAILED and job.error == "OSError: [Errno 5] Input/output error"
        publishing = [e[0] for e in events(job) if e[1] == "publish"]
        assert publishing == ["start", "retry", "start", "failed"]
        assert catalog.versions("t")[0].status == VersionStatus.FAILED
    assert not (settings.storage / "datasets" / "t").exists() or not any(
        (settings.storage / "datasets/t").iterdir()
    )


@pytest.mark.slow
def test_bad_input_fails_at_once_with_its_message(make_h5ad: MakeH5ad, settings: Settings) -> None:
    good = ingest(make_h5ad(name="good.h5ad"), dataset="t", settings=settings)
    nan = small_adata()
    nan.X[17, 4] = np.nan
    patient = settings.model_copy(update={"job_attempts": 5, "job_backoff": 10.0})
    with pytest.raises(InvalidValue, match=r"nan.h5ad: NaN found at row 18 \(cell 'cell17'\), column 5"):
        ingest(make_h5ad(nan, name="nan.h5ad"), dataset="t", settings=patient)
    with Catalog(settings.catalog_url) as catalog:
        job = catalog.jobs.list()[0]
        assert job.state == J.FAILED and job.attempts == 1  # compute, tried once, not retried
        assert (
            job.error is not None and "nan.h5ad: NaN found at row 18 (cell 'cell17'), column 5" in job.error
        )
        assert events(job) == [
            *clean_run(["unpack", "validate"]),
            ("start", "compute"),
            ("failed", "compute"),
        ]
        assert catalog.current("t").version == good.version
        assert catalog.get_version("t", str(job.version)).status == VersionStatus.FAILED


@pytest.mark.slow
def test_a_bad_dataset_name_fails_the_job_before_any_version(settings: Settings, make_h5ad: MakeH5ad) -> None:
    with Catalog(settings.catalog_url) as catalog:
        runner = JobRunner(settings, catalog)
        job = runner.submit(make_h5ad(), dataset="no spaces", params={})
        (done,) = runner.run_pending()
        assert done.id == job.id and done.state == J.FAILED
        assert done.error == "dataset name 'no spaces' must be letters, digits, '_', '.' or '-' (max 128)"
        assert catalog.datasets() == []


@pytest.mark.slow
@pytest.mark.subprocess
def test_jobs_api_and_cli(make_h5ad: MakeH5ad, settings: Settings) -> None:
    ingest(make_h5ad(), dataset="t", settings=settings)
    nan = small_adata()
    nan.X[0, 0] = np.nan
    with pytest.raises(InvalidValue):
        ingest(make_h5ad(nan, name="nan.h5ad"), dataset="t", settings=settings)
    with TestClient(create_app(settings, upkeep=False, jobs=False)) as client:
        listing = client.get("/api/v1/jobs")
        assert listing.status_code == 200 and listing.headers["cache-control"] == "no-store"
        failed, published = listing.json()
        assert (failed["state"], published["state"]) == ("failed", "published")
        assert (
            failed["input"] == "nan.h5ad" and "NaN found at row 1 (cell 'cell0'), column 1" in failed["error"]
        )
        assert {"created", "updated", "started", "finished", "progress", "step", "attempts"} <= set(failed)
        assert [j["id"] for j in client.get("/api/v1/jobs", params={"state": "failed"}).json()] == [
            failed["id"]
        ]
        detail = client.get(f"/api/v1/jobs/{published['id']}").json()
        assert [(e["event"], e["step"]) for e in detail["log"]] == clean_run(ALL_STEPS)
        missing = client.get("/api/v1/jobs/nope")
        assert missing.status_code == 404 and missing.json() == {"detail": "no job 'nope' in the catalog"}
        assert client.get("/api/v1/jobs", params={"state": "done"}).status_code == 422
    env = {
        **os.environ,
        "WIDECUBE_STORAGE": str(settings.storage),
        "WIDECUBE_CATALOG_URL": settings.catalog_url,
        "COLUMNS": "250",
    }
    cli = [sys.executable, "-m", "widecube.cli"]
    table = subprocess.run([*cli, "jobs"], env=env, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and failed["id"] in table.stdout and "published" in table.stdout
    shown = subprocess.run([*cli, "job", failed["id"]], env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "NaN found at row 1" in shown.stdout and "compute" in shown.stdout
    gone = subprocess.run([*cli, "job", "nope"], env=env, capture_output=True, text=True, timeout=120)
    assert gone.returncode == 1 and "no job 'nope'" in gone.stderr and "Traceback" not in gone.stderr


@pytest.mark.slow
@pytest.mark.postgres
def test_a_job_runs_on_a_postgresql_catalog(make_h5ad: MakeH5ad, tmp_path: Path) -> None:
    adata = small_adata(seed=9)
    with postgres_schema() as (url, _schema):
        settings = Settings(storage=tmp_path / "pg-store", catalog_url=url)
        with Catalog(url) as catalog:
            runner = JobRunner(settings, catalog)
            job = runner.submit(make_h5ad(adata), dataset="t", params={"groupbys": ["donor"]})
            (done,) = runner.run_pending()
            assert done.id == job.id and done.state == J.PUBLISHED and events(done) == clean_run(ALL_STEPS)
        assert_sums_match(settings, "t", adata)
