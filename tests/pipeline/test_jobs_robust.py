"""Jobs that kill their workers, stale and concurrent publishes, permanent errors, orphan folders.

* A job whose worker dies during a step (here: SIGKILL each time a worker runs it, under a
  real ``widecube serve`` that supervises its worker process) fails after ``job_attempts``
  tries with a reason, while the server keeps answering.
* Publishing is a compare-and-swap: a job publishes only if the dataset's pointer still
  names what was live when it started; otherwise it ends ``superseded`` and its version stays
  ``verified`` with a reason naming the live version (catalog, runner, CLI; SQLite and
  PostgreSQL).
* Permanent I/O errors are not retried; the folders of killed and ended jobs are reclaimed
  when an entry point starts, those of running jobs are not.

Expectations are written out by hand; published data is compared with numpy.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient

from _cli import children
from _data import MakeH5ad, small_adata, without_progress
from _pg import postgres_schema
from widecube.api import create_app
from widecube.catalog import AttemptsUsed, Catalog, JobRecord, JobState, PointerMoved, VersionStatus
from widecube.catalog._migrate import alembic_config, head_revision
from widecube.config import Settings
from widecube.pipeline import JobRunner, ingest, reclaim_orphans, retry_delay
from widecube.query import Widecube

J, S = JobState, VersionStatus
CLI = [sys.executable, "-m", "widecube.cli"]


def events(job: JobRecord) -> list[tuple[str, str]]:
    return [(e["event"], e["step"]) for e in job.log]


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "WIDECUBE_STORAGE": str(settings.storage),
        "WIDECUBE_CATALOG_URL": settings.catalog_url,
        "COLUMNS": "400",
        **extra,
    }


def wait_for(check: Callable[[], Any], seconds: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
    return found


def served_sum(settings: Settings, dataset: str, gene: int = 5) -> list[float]:
    wc = Widecube(settings)
    try:
        got = wc.summary(dataset, genes=[f"Gene{gene}"], groupby="donor", stats=["sum"], layer="input")
    finally:
        wc.close()
    return [row[0] for row in got["values"]["sum"]]


def expected_sum(adata: Any, gene: int = 5) -> list[float]:
    x = np.asarray(adata.X)
    return [float(x[(adata.obs["donor"] == g).to_numpy(), gene].sum()) for g in ("d1", "d2", "d3")]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    else:
        with postgres_schema() as (url, _schema):
            yield url


# -- permanent errors -------------------------------------------------------------------------


def test_permanent_io_errors_are_not_retried() -> None:
    def delay(exc: BaseException) -> float | None:
        return retry_delay(exc, 1, attempts=3, backoff=0.5)

    for code in (
        errno.ENAMETOOLONG,
        errno.EEXIST,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.EINVAL,
        errno.EACCES,
        errno.EPERM,
        errno.ENOSPC,
        errno.EROFS,
        errno.ENOENT,
        errno.ELOOP,
    ):
        assert delay(OSError(code, os.strerror(code), "/x")) is None, errno.errorcode[code]
    assert delay(OSError("Unable to open file (file signature not found)")) is None  # h5py: no errno
    assert delay(FileExistsError(errno.EEXIST, "File exists")) is None
    for transient in (
        OSError(errno.EIO, "Input/output error"),
        OSError(errno.ESTALE, "Stale file handle"),
        OSError(errno.EAGAIN, "Resource temporarily unavailable"),
        TimeoutError("timed out"),
        ConnectionResetError(errno.ECONNRESET, "reset"),
        ConnectionError("gone"),
    ):
        assert delay(transient) == 0.5, transient
    assert retry_delay(OSError(errno.EIO, "x"), 3, attempts=3, backoff=0.5) is None  # tries used up


@pytest.mark.slow
def test_a_permanent_io_error_fails_the_job_at_its_first_try(
    make_h5ad: MakeH5ad, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import widecube.pipeline._ingest as steps

    calls = []

    def too_long(work: Any) -> Any:
        calls.append(1)
        raise OSError(errno.ENAMETOOLONG, "File name too long", str(work.folder / ("a" * 300)))

    monkeypatch.setitem(steps.STEPS, "validate", too_long)
    patient = settings.model_copy(update={"job_attempts": 5, "job_backoff": 30.0})
    with pytest.raises(OSError, match="File name too long"):
        ingest(make_h5ad(), dataset="t", settings=patient)
    assert calls == [1]
    with Catalog(settings.catalog_url) as catalog:
        (job,) = catalog.jobs.list()
    assert job.state == J.FAILED and job.attempts == 1
    assert events(job)[-2:] == [("start", "validate"), ("failed", "validate")]
    assert job.error is not None and job.error.startswith("OSError: [Errno 36] File name too long")


def test_a_cleanup_that_fails_too_does_not_hide_the_job_s_own_error(
    make_h5ad: MakeH5ad, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that refuses the failed version's removal (an S3 server without DeleteObjects)
    leaves the job FAILED of its own error, which the caller gets; the refusal is noted."""
    import widecube.pipeline._ingest as steps
    from widecube.snapshot._store import LocalStorage

    def bad_value(work: Any) -> Any:
        raise ValueError("the input's own fault")

    def refuse(self: Any, relpath: str = "") -> None:
        raise OSError(errno.EIO, "the store refused the delete")

    monkeypatch.setitem(steps.STEPS, "validate", bad_value)
    monkeypatch.setattr(LocalStorage, "remove", refuse)
    with pytest.raises(ValueError, match="the input's own fault"):
        ingest(make_h5ad(), dataset="t", settings=settings)
    with Catalog(settings.catalog_url) as catalog:
        (job,) = catalog.jobs.list()
        (version,) = catalog.versions("t")
    assert job.state == J.FAILED and job.error == "ValueError: the input's own fault"
    assert version.status == S.FAILED
    failed = job.log[-1]
    assert (failed["event"], failed["step"]) == ("failed", "validate")
    assert "the store refused the delete" in failed["cleanup"]


# -- the catalog's compare-and-swap publish -----------------------------------------------------


def _verified(catalog: Catalog, dataset: str = "d") -> str:
    version = uuid.uuid4().hex
    catalog.create_version(dataset, version, input_name="in.h5ad", input_sha256=None, params={})
    catalog.mark_verified(
        dataset, version, path=f"datasets/{dataset}/{version}", n_cells=1, n_genes=1, info={}
    )
    return version


def test_publish_unless_moved_is_a_compare_and_swap(backend_url: str) -> None:
    with Catalog(backend_url) as catalog:
        first, rival = _verified(catalog), _verified(catalog)  # both begun while nothing was live
        assert catalog.get_version("d", first).base is None
        assert catalog.publish("d", first, unless_moved=True).status == S.PUBLISHED
        with pytest.raises(PointerMoved) as moved:
            catalog.publish("d", rival, unless_moved=True)
        assert (moved.value.current, moved.value.base) == (first, None)
        assert str(moved.value) == (
            f"version {rival} of dataset 'd' was not published: version {first} is live now, but the job "
            "building it started when no version was live; it stays verified, not live (publish it with "
            f"`widecube rollback d --to {rival}` if it should be)"
        )
        kept = catalog.get_version("d", rival)
        assert (kept.status, kept.reason) == (S.VERIFIED, str(moved.value))
        assert catalog.current("d").version == first

        later, stale = _verified(catalog), _verified(catalog)  # both begun from `first`
        assert catalog.get_version("d", later).base == first
        catalog.publish("d", later, unless_moved=True)
        with pytest.raises(
            PointerMoved, match=f"version {later} is live now, .* when version {first} was live"
        ):
            catalog.publish("d", stale, unless_moved=True)
        assert catalog.current("d").version == later
        # an admin's publish is unconditional, and clears the reason
        forced = catalog.publish("d", rival)
        assert (forced.status, forced.reason, catalog.current("d").version) == (S.PUBLISHED, None, rival)
        assert {r.version: r.status for r in catalog.versions("d")} == {
            first: S.RETIRED,
            rival: S.PUBLISHED,
            later: S.RETIRED,
            stale: S.VERIFIED,
        }


def test_of_racing_publishes_from_one_pointer_exactly_one_wins(backend_url: str) -> None:
    with Catalog(backend_url) as catalog:
        base = _verified(catalog)
        catalog.publish("d", base)
        racers = [_verified(catalog) for _ in range(4)]
    opened = [Catalog(backend_url) for _ in racers]  # one per thread, as separate processes would
    barrier = threading.Barrier(len(racers))
    outcome: dict[str, str] = {}

    def race(catalog: Catalog, version: str) -> None:
        barrier.wait()
        try:
            catalog.publish("d", version, unless_moved=True)
            outcome[version] = "published"
        except PointerMoved as exc:
            outcome[version] = f"moved:{exc.current}"

    threads = [threading.Thread(target=race, args=pair) for pair in zip(opened, racers, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in opened:
        c.close()
    (winner,) = [v for v, o in outcome.items() if o == "published"]
    assert {v: o for v, o in outcome.items() if v != winner} == {
        v: f"moved:{winner}" for v in racers if v != winner
    }
    with Catalog(backend_url) as catalog:
        assert catalog.current("d").version == winner
        assert {r.version: r.status for r in catalog.versions("d")} == {
            base: S.RETIRED,
            winner: S.PUBLISHED,
            **{v: S.VERIFIED for v in racers if v != winner},
        }
        engine = sa.create_engine(backend_url)
        with engine.connect() as conn:
            moves = conn.execute(
                sa.text("SELECT from_version, to_version FROM pointer_history ORDER BY id")
            ).all()
        engine.dispose()
    assert [tuple(m) for m in moves] == [(None, base), (base, winner)]


def test_migration_0003_on_a_catalog_with_data(backend_url: str) -> None:
    engine = sa.create_engine(backend_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(connection=conn), "0002")
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO datasets (id, name, created_at) VALUES (1, 'd', :t)"), {"t": now}
            )
            for seq, (vid, status) in enumerate(
                [("live", "published"), ("building", "building"), ("old", "retired")], 1
            ):
                conn.execute(
                    sa.text(
                        "INSERT INTO versions (seq, id, dataset_id, status, created_at, updated_at, "
                        "params, info) VALUES (:s, :v, 1, :st, :t, :t, '{}', '{}')"
                    ),
                    {"s": seq, "v": vid, "st": status, "t": now},
                )
            conn.execute(
                sa.text("INSERT INTO pointers (dataset_id, version_id, updated_at) VALUES (1, 'live', :t)"),
                {"t": now},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO jobs (id, dataset, state, source, input, params, version_id, attempts, "
                    "progress, log, created_at, updated_at) VALUES ('j1', 'd', 'computed', 'cli', "
                    "'/in/x.h5ad', '{}', 'building', 0, '{}', '[]', :t, :t)"
                ),
                {"t": now},
            )
        with Catalog(backend_url) as catalog:  # upgrades to head
            assert catalog.get_version("d", "building").base == "live"  # the pointer of the upgrade
            assert catalog.get_version("d", "old").base is None
            job = catalog.jobs.get("j1")
            assert (job.state, job.version, job.input) == (J.COMPUTED, "building", "/in/x.h5ad")
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE jobs SET state = 'superseded' WHERE id = 'j1'"))
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text("UPDATE jobs SET state = 'bogus' WHERE id = 'j1'"))
        with engine.connect() as conn:
            assert (
                conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
            )
            index_names = {i["name"] for i in sa.inspect(conn).get_indexes("jobs")}
        assert {"ix_jobs_state_created", "ix_jobs_created"} <= index_names
        with engine.begin() as conn:  # and back down
            command.downgrade(alembic_config(connection=conn), "0002")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT state FROM jobs WHERE id = 'j1'")).scalar() == "failed"
    finally:
        engine.dispose()


# -- the runner: two ingests at once, a stale resume, the CLI -----------------------------------


def _stalling_worker(
    settings: Settings, job: str, step: str, marker: Path, name: str
) -> subprocess.Popen[str]:
    """A worker process that runs ``job`` up to ``step``, then hangs before recording it."""
    script = f"""
import time
from pathlib import Path
import widecube.pipeline._ingest as steps
from widecube.catalog import Catalog
from widecube.config import Settings
from widecube.pipeline import JobRunner

real = steps.STEPS[{step!r}]

def stalled(work):
    real(work)
    Path({str(marker)!r}).write_text("stalled")
    time.sleep(600)

steps.STEPS[{step!r}] = stalled
settings = Settings()
JobRunner(settings, Catalog(settings.catalog_url), worker={name!r}).run({job!r})
"""
    env = env_for(settings, WIDECUBE_JOB_LEASE="2")
    return subprocess.Popen([sys.executable, "-c", script], env=env, text=True, stderr=subprocess.PIPE)


def _stall(settings: Settings, job: str, step: str, marker: Path, name: str) -> subprocess.Popen[str]:
    worker = _stalling_worker(settings, job, step, marker, name)
    wait_for(lambda: marker.exists() or worker.poll() is not None, 240, f"a worker stalled in {step}", 0.1)
    assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
    return worker


def _kill(worker: subprocess.Popen[str]) -> None:
    os.kill(worker.pid, signal.SIGKILL)
    worker.communicate()


def _lease_out(catalog: Catalog, job: str) -> None:
    def expired() -> bool:
        lease = catalog.jobs.get(job).lease_until
        return lease is None or lease < datetime.now(UTC)

    wait_for(expired, 30, "the dead worker's lease to run out", 0.1)


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_stale_job_resumed_after_a_newer_publish_ends_superseded(
    make_h5ad: MakeH5ad, settings: Settings, tmp_path: Path
) -> None:
    old, new = small_adata(seed=11), small_adata(seed=12)
    with Catalog(settings.catalog_url) as catalog:
        stale = JobRunner(settings, catalog).submit(
            make_h5ad(old, name="old.h5ad"), dataset="t", params={"groupbys": ["donor"]}
        )
        worker = _stall(settings, stale.id, "compute", tmp_path / "stalled", "doomed")
        _kill(worker)  # killed during compute: the job stays validated
        assert catalog.jobs.get(stale.id).state == J.VALIDATED
        newer = ingest(make_h5ad(new, name="new.h5ad"), dataset="t", groupbys=["donor"], settings=settings)
        assert catalog.current("t").version == newer.version
        _lease_out(catalog, stale.id)
    done = subprocess.run(
        [*CLI, "work", "--once"], env=env_for(settings), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    with Catalog(settings.catalog_url) as catalog:
        job = catalog.jobs.get(stale.id)
        kept = catalog.get_version("t", str(job.version))
        assert catalog.current("t").version == newer.version  # the newer version stays live
    assert job.state == J.SUPERSEDED and kept.status == S.VERIFIED
    reason = (
        f"version {job.version} of dataset 't' was not published: version {newer.version} is live now, "
        "but the job building it started when no version was live; it stays verified, not live "
        f"(publish it with `widecube rollback t --to {job.version}` if it should be)"
    )
    assert job.error == reason and kept.reason == reason
    assert f"job {job.id}: t superseded: {reason}" in " ".join(done.stdout.split())
    assert f"warning: job {job.id}: {reason}" in " ".join(done.stderr.split())
    assert [e for e in events(job) if e[1] == "compute"] == [
        ("start", "compute"),
        ("start", "compute"),
        ("done", "compute"),
    ]
    assert served_sum(settings, "t") == pytest.approx(expected_sum(new))
    assert (settings.storage / str(kept.path)).is_dir()
    assert (
        not any((settings.storage / "staging").iterdir())
        and not (settings.storage / "work" / job.id).exists()
    )


def _paused_cli_ingest(
    settings: Settings, path: Path, gate: Path, ready: Path, *flags: str
) -> subprocess.Popen[str]:
    """``widecube ingest`` in a process whose publish step waits until ``gate`` exists (it
    writes ``ready`` when it gets there: its version is verified)."""
    script = f"""
import sys, time
from pathlib import Path
import widecube.pipeline._ingest as steps
from widecube.cli import app

real = steps.STEPS["publish"]

def gated(work):
    Path({str(ready)!r}).write_text("at publish")
    while not Path({str(gate)!r}).exists():
        time.sleep(0.05)
    return real(work)

steps.STEPS["publish"] = gated
sys.argv = ["widecube", "ingest", {str(path)!r}, "-d", "t", "--groupby", "donor", *{list(flags)!r}]
app()
"""
    return subprocess.Popen(
        [sys.executable, "-c", script],
        env=env_for(settings),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_ingest_cli_says_when_its_version_was_not_published(
    make_h5ad: MakeH5ad, settings: Settings, tmp_path: Path
) -> None:
    first = ingest(
        make_h5ad(small_adata(seed=20), name="first.h5ad"), dataset="t", groupbys=["donor"], settings=settings
    )
    runs = {}
    for flags in ((), ("--force",)):
        gate, ready = tmp_path / f"go{len(flags)}", tmp_path / f"ready{len(flags)}"
        cli = _paused_cli_ingest(
            settings, make_h5ad(small_adata(seed=21), name="slow.h5ad"), gate, ready, *flags
        )
        _wait_ready([cli], [ready])
        meanwhile = ingest(
            make_h5ad(small_adata(seed=22), name="fast.h5ad"),
            dataset="t",
            groupbys=["donor"],
            settings=settings,
        )
        gate.write_text("go")
        out, err = cli.communicate(timeout=120)
        runs[flags] = (cli.returncode, out, " ".join(without_progress(err)), meanwhile.version)
    code, out, err, meanwhile = runs[()]
    assert code == 3 and "published" not in out and "Traceback" not in err
    assert re.search(
        rf"^warning: version [0-9a-f]{{32}} of dataset 't' was not published: version {meanwhile} "
        rf"is live now, but the job building it started when version {first.version} was live",
        err,
    )
    started_from = meanwhile  # live when the forced run began; another went live meanwhile again
    code, out, err, meanwhile = runs[("--force",)]
    assert code == 0 and out.startswith("published t version") and "warning" not in err
    with Catalog(settings.catalog_url) as catalog:
        forced = out.split()[3]
        assert (
            catalog.current("t").version == forced and catalog.get_version("t", forced).base == started_from
        )
        assert catalog.get_version("t", meanwhile).status == S.RETIRED  # forced over it
    assert served_sum(settings, "t") == pytest.approx(expected_sum(small_adata(seed=21)))


def _wait_ready(clis: list[subprocess.Popen[str]], ready: list[Path]) -> None:
    def there() -> bool:
        assert all(cli.poll() is None for cli in clis), [
            cli.communicate() for cli in clis if cli.poll() is not None
        ]
        return all(r.exists() for r in ready)

    wait_for(there, 300, "the ingests to reach publish", 0.1)


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_ingests_at_once_only_one_publishes(
    backend_url: str, tmp_path: Path, make_h5ad: MakeH5ad
) -> None:
    settings = Settings(storage=tmp_path / "store", catalog_url=backend_url)
    base = ingest(
        make_h5ad(small_adata(seed=1), name="base.h5ad"), dataset="t", groupbys=["donor"], settings=settings
    )
    gate = tmp_path / "go"
    data = {name: small_adata(seed=seed) for name, seed in (("a", 2), ("b", 3))}
    ready = {name: tmp_path / f"{name}.ready" for name in data}
    clis = {
        name: _paused_cli_ingest(settings, make_h5ad(adata, name=f"{name}.h5ad"), gate, ready[name])
        for name, adata in data.items()
    }
    _wait_ready(list(clis.values()), list(ready.values()))  # both verified, neither published
    gate.write_text("go")  # now both publish at once
    ends = {name: (cli.communicate(timeout=120), cli.returncode) for name, cli in clis.items()}
    assert sorted(code for _, code in ends.values()) == [0, 3], ends
    (won,) = [name for name, (_, code) in ends.items() if code == 0]
    (lost,) = [name for name in data if name != won]
    (out, _), _ = ends[won]
    (lost_out, lost_err), _ = ends[lost]
    winner = out.split()[3]
    assert out.startswith(f"published t version {winner}") and "published" not in lost_out
    with Catalog(backend_url) as catalog:
        assert catalog.current("t").version == winner
        jobs = {Path(j.input).stem: j for j in catalog.jobs.list() if Path(j.input).stem in data}
        assert (jobs[won].state, jobs[lost].state, jobs[won].version) == (J.PUBLISHED, J.SUPERSEDED, winner)
        reason = (
            f"version {jobs[lost].version} of dataset 't' was not published: version {winner} is live now, "
            f"but the job building it started when version {base.version} was live; it stays verified, "
            f"not live (publish it with `widecube rollback t --to {jobs[lost].version}` if it should be)"
        )
        assert jobs[lost].error == reason and events(jobs[lost])[-1] == ("superseded", "publish")
        assert " ".join(" ".join(without_progress(lost_err)).split()) == f"warning: {reason}"
        kept = catalog.get_version("t", str(jobs[lost].version))
        assert (kept.status, kept.reason) == (S.VERIFIED, reason)
        assert (settings.storage / str(kept.path)).is_dir()  # verified, on disk, publishable by an admin
    assert served_sum(settings, "t") == pytest.approx(expected_sum(data[won]))
    assert not any((settings.storage / "work").iterdir()) and not any(
        (settings.storage / "staging").iterdir()
    )


# -- orphan folders ---------------------------------------------------------------------------


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_reclaim_removes_what_ended_or_killed_jobs_left_and_spares_the_rest(settings: Settings) -> None:
    storage = settings.storage
    with Catalog(settings.catalog_url) as catalog:
        jobs = catalog.jobs

        def job(steps: list[J], *, running: bool = False) -> JobRecord:
            made = jobs.create(dataset="d", source="cli", input="/in/x.h5ad", params={})
            jobs.claim("w", lease_s=60, job=made.id)
            for target in steps:
                jobs.advance(made.id, "w", target, error="bad" if target == J.FAILED else None)
            if not running and not steps[-1].final:
                jobs.renew(made.id, "w", lease_s=-1)  # its worker died: the lease ran out
            for rel in (
                f"work/{made.id}/unpack.json",
                f"work/{made.id}/scratch/spill.bin",
                f"staging/{made.version}/manifest.json",
            ):
                (storage / rel).parent.mkdir(parents=True, exist_ok=True)
                (storage / rel).write_text("x")
            return jobs.get(made.id)

        validated = [J.UNPACKED, J.VALIDATED]
        failed, running = job([*validated, J.FAILED]), job(validated, running=True)
        killed, computed = job(validated), job([*validated, J.COMPUTED])
        unknown = uuid.uuid4().hex
        for rel in (f"work/{unknown}/unpack.json", f"staging/{unknown}/manifest.json", "work/notes/keep.txt"):
            (storage / rel).parent.mkdir(parents=True, exist_ok=True)
            (storage / rel).write_text("x")
        before = _tree(storage)
        removed = reclaim_orphans(settings, catalog)
        gone = {
            f"work/{failed.id}",
            f"staging/{failed.version}",
            f"work/{unknown}",
            f"staging/{unknown}",
            f"work/{killed.id}/scratch",
            f"staging/{killed.version}",
            f"work/{computed.id}/scratch",
        }
        assert {str(p.relative_to(storage)) for p in removed} == gone
        assert _tree(storage) == {f for f in before if not any(f.startswith(g + "/") for g in gone)}
        # the killed jobs are still resumable by anyone, and the running one is still held
        assert (jobs.get(killed.id).worker, jobs.get(computed.id).worker) == (None, None)
        assert jobs.get(running.id).worker == "w" and jobs.get(killed.id).log == killed.log
        assert reclaim_orphans(settings, catalog) == []


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_later_ingest_reclaims_a_killed_job_s_folders_but_not_a_running_one_s(
    make_h5ad: MakeH5ad, settings: Settings, tmp_path: Path
) -> None:
    adata = small_adata(seed=31)
    with Catalog(settings.catalog_url) as catalog:
        runner = JobRunner(settings, catalog)
        killed = runner.submit(
            make_h5ad(adata, name="killed.h5ad"), dataset="k", params={"groupbys": ["donor"]}
        )
        _kill(_stall(settings, killed.id, "compute", tmp_path / "first", "doomed"))
        alive = runner.submit(make_h5ad(name="alive.h5ad"), dataset="a", params={})
        running = _stall(settings, alive.id, "compute", tmp_path / "second", "alive")
        try:
            _lease_out(catalog, killed.id)
            staging = settings.storage / "staging"
            assert {p.name for p in staging.iterdir()} == {killed.version, alive.version}
            before = _tree(settings.storage / "staging" / str(alive.version))
            ingest(make_h5ad(name="other.h5ad"), dataset="other", settings=settings)  # the entry point
            assert {p.name for p in staging.iterdir()} == {alive.version}
            assert _tree(staging / str(alive.version)) == before  # the running job's, untouched
            assert (settings.storage / "work" / alive.id / "scratch").is_dir()
            assert not (settings.storage / "work" / killed.id / "scratch").exists()
            assert (settings.storage / "work" / killed.id / "unpack.json").is_file()
        finally:
            _kill(running)
        done = JobRunner(settings, catalog, worker="resumer").run(killed.id)  # still resumes
        assert done.state == J.PUBLISHED, done.error
    assert served_sum(settings, "k") == pytest.approx(expected_sum(adata))


# -- errors shown over HTTP -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.subprocess
def test_http_clients_see_file_names_not_server_paths_nor_workers(settings: Settings, tmp_path: Path) -> None:
    missing = tmp_path / "deep" / "inside" / "missing.h5ad"
    with Catalog(settings.catalog_url) as catalog:
        runner = JobRunner(settings, catalog, worker=f"{socket.gethostname()}:987654321:abcdef")
        job = runner.submit(missing, dataset="t", params={})
        runner.run_pending()
        assert catalog.jobs.get(job.id).error == f"{missing}: no such file or folder"  # the operator's view
    with TestClient(create_app(settings, upkeep=False, jobs=False)) as client:
        (listed,) = client.get("/api/v1/jobs").json()
        detail = client.get(f"/api/v1/jobs/{job.id}").json()
    assert listed["error"] == detail["error"] == "missing.h5ad: no such file or folder"
    shown = json.dumps([listed, detail])
    assert str(tmp_path) not in shown and socket.gethostname() not in shown and "987654321" not in shown
    assert {e["worker"] for e in detail["log"]} == {
        "w-" + hashlib.sha256(runner.worker.encode()).hexdigest()[:8]
    }
    shown_cli = subprocess.run(
        [*CLI, "job", job.id], env=env_for(settings), capture_output=True, text=True, timeout=120
    )
    assert shown_cli.returncode == 0 and runner.worker in shown_cli.stdout
    assert f"{missing}: no such file or folder" in shown_cli.stdout  # the operator sees the path


# -- the poison upload, end to end under `widecube serve` -------------------------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_job_that_kills_its_worker_fails_after_its_tries_and_the_server_keeps_answering(
    make_h5ad: MakeH5ad, settings: Settings
) -> None:
    good = small_adata(seed=41)
    ingest(make_h5ad(good, name="good.h5ad"), dataset="live", groupbys=["donor"], settings=settings)
    orphan = settings.storage / "work" / uuid.uuid4().hex
    orphan.mkdir(parents=True)  # left by a job the catalog does not know: serve's start removes it
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    number = port.getsockname()[1]
    port.close()
    env = env_for(  # a restart's backoff doubles per death (1 s by default: a minute over six kills)
        settings,
        WIDECUBE_JOB_POLL="0.2",
        WIDECUBE_JOB_LEASE="120",
        WIDECUBE_JOB_ATTEMPTS="3",
        WIDECUBE_JOB_BACKOFF="0.1",
    )
    server = subprocess.Popen(
        [*CLI, "serve", "--port", str(number), "--no-access-log"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{number}"
    probes: list[tuple[float, str, int | str]] = []
    stop = threading.Event()

    def probe() -> None:  # the server must answer throughout
        with httpx.Client(base_url=url, timeout=10) as http:
            while not stop.is_set():
                for path, body in (
                    ("/healthz", None),
                    (
                        "/api/v1/datasets/live/summary",
                        {"genes": ["Gene5"], "groupby": "donor", "stats": ["sum"], "layer": "input"},
                    ),
                ):
                    try:
                        r = http.get(path) if body is None else http.post(path, json=body)
                        probes.append((time.monotonic(), path, r.status_code))
                    except httpx.HTTPError as exc:
                        probes.append((time.monotonic(), path, repr(exc)))
                stop.wait(0.2)

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            return False

    prober = threading.Thread(target=probe)
    killed: list[int] = []
    try:
        wait_for(up, 120, "the server to start", 0.2)
        first_worker = wait_for(lambda: children(server.pid), 60, "the supervised worker process", 0.1)
        assert not orphan.exists()
        prober.start()
        poison = make_h5ad(small_adata(n_cells=2000, n_genes=3000, seed=42), name="poison.h5ad").read_bytes()
        with httpx.Client(base_url=url, timeout=60) as http:
            answer = http.post(
                "/api/v1/uploads",
                params={"filename": "poison.h5ad", "dataset": "poison", "groupby": ["donor"]},
                content=poison,
            )
        assert answer.status_code == 201, answer.text
        job_id = answer.json()["job"]
        with Catalog(settings.catalog_url) as catalog:
            deadline = time.monotonic() + 400
            while (job := catalog.jobs.get(job_id)).state not in (J.FAILED, J.PUBLISHED):
                assert time.monotonic() < deadline, f"job still {job.state}, killed {killed}"
                if job.worker is not None and job.step is not None:  # a worker runs a step of it: kill it
                    pid = int(job.worker.split(":")[1])
                    if pid not in killed:
                        assert pid in children(server.pid)  # the server's own worker process
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                time.sleep(0.01)
            assert job.state == J.FAILED, job.error
            assert job.error is not None
            match = re.fullmatch(
                r"the worker running step (\w+) died 3 times \(killed by signal 9 \(SIGKILL\)\); "
                r"the input may be malformed, or changed while it was read",
                job.error,
            )
            assert match, job.error
            step = match.group(1)
            # a kill may land in an earlier step whose next try then finished: tries count per step
            assert len(killed) >= 3 and job.attempts == 3
            # a kill that lands just after a step ended (the test saw it running) costs no try
            # and logs no death: every death is a kill, and at least the three of the last step
            assert 3 <= sum(e["event"] == "died" for e in job.log) <= len(killed)
            assert [e["event"] for e in job.log if e["step"] == step] == ["start", "died"] * 3 + ["failed"]
            assert {e["how"] for e in job.log if e["event"] == "died"} == {"killed by signal 9 (SIGKILL)"}
            failer = int(next(e for e in job.log if e["event"] == "failed")["worker"].split(":")[1])
            assert failer not in killed and failer in children(server.pid)  # restarted, and alive
            made = {
                v.version: v.status
                for d in catalog.datasets()
                if d.name == "poison"
                for v in catalog.versions("poison")
            }  # none if every try died while unpacking
            assert made in ({}, {job.version: S.FAILED})
            assert "poison" not in {d.name for d in catalog.datasets() if d.current is not None}
        with httpx.Client(base_url=url, timeout=60) as http:
            shown = http.get(f"/api/v1/jobs/{job_id}").json()
            assert (shown["state"], shown["error"], shown["attempts"]) == ("failed", job.error, 3)
            assert all(re.fullmatch(r"w-[0-9a-f]{8}", e["worker"]) for e in shown["log"])
            # the restarted worker still runs jobs
            fine = http.post(
                "/api/v1/uploads",
                params={"filename": "fine.h5ad", "dataset": "fine", "groupby": ["donor"]},
                content=make_h5ad(small_adata(seed=43), name="fine.h5ad").read_bytes(),
            )
            assert fine.status_code == 201
            wait_for(
                lambda: http.get(f"/api/v1/jobs/{fine.json()['job']}").json()["state"] == "published",
                120,
                "the next upload to be published",
                0.2,
            )
        stop.set()
        prober.join()
        assert server.poll() is None and first_worker.isdisjoint(children(server.pid))
        assert probes and all(code == 200 for _, _, code in probes), [p for p in probes if p[2] != 200][:5]
        assert probes[-1][0] - probes[0][0] > 5 and {p for _, p, _ in probes} == {
            "/healthz",
            "/api/v1/datasets/live/summary",
        }
        last_worker = children(server.pid)
    finally:
        stop.set()
        if prober.is_alive():
            prober.join()
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.communicate()
    assert server.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after shutting down
    wait_for(lambda: not any(_alive(p) for p in last_worker), 15, "the worker to stop with the server", 0.1)


# -- tries counted before a step runs, and given back by a stopped worker -----------------------


def test_tries_are_counted_as_steps_start_and_used_up_tries_refuse_a_start(backend_url: str) -> None:
    with Catalog(backend_url) as catalog:
        jobs = catalog.jobs
        job = jobs.create(dataset="d", source="cli", input="/in/x.h5ad", params={})
        assert jobs.claim("host:101:aa", lease_s=60) is not None
        assert jobs.start(job.id, "host:101:aa", "unpack", limit=3).attempts == 1
        # the worker (pid 101) dies; its supervisor frees the claim at once, the try stays counted
        assert jobs.release_dead("host:101:", how="killed by signal 11 (SIGSEGV)") == [job.id]
        assert jobs.release_dead("host:101:", how="again") == []
        freed = jobs.get(job.id)
        assert (freed.worker, freed.step, freed.attempts) == (None, None, 1)
        assert jobs.claim("host:102:bb", lease_s=60) is not None
        assert jobs.start(job.id, "host:102:bb", "unpack", limit=3).attempts == 2
        jobs.event(
            job.id, "host:102:bb", "retry", "unpack", attempt=2, error="OSError: [Errno 5] I/O", delay_s=1
        )
        assert jobs.start(job.id, "host:102:bb", "unpack", limit=3).attempts == 3
        assert jobs.interrupt(job.id, "host:102:bb")  # stopped on purpose: the try is given back
        back = jobs.get(job.id)
        assert (back.worker, back.step, back.attempts) == (None, None, 2)
        assert not jobs.interrupt(job.id, "host:102:bb")  # it no longer holds the job
        assert jobs.claim("host:103:cc", lease_s=60) is not None
        assert jobs.start(job.id, "host:103:cc", "unpack", limit=3).attempts == 3
        jobs.renew(job.id, "host:103:cc", lease_s=-1)  # died without a supervisor: the lease runs out
        assert jobs.claim("host:104:dd", lease_s=60) is not None
        with pytest.raises(AttemptsUsed) as used:
            jobs.start(job.id, "host:104:dd", "unpack", limit=3)
        assert str(used.value) == (
            "step unpack was tried 3 times and did not finish: the worker died 2 times (killed by signal "
            "11 (SIGSEGV) once; once a signal or kill no supervisor saw); "
            "1 transient error(s), the last: OSError: [Errno 5] I/O"
        )
        assert [(e["event"], e.get("how")) for e in jobs.get(job.id).log] == [
            ("start", None),
            ("died", "killed by signal 11 (SIGSEGV)"),
            ("start", None),
            ("retry", None),
            ("start", None),
            ("interrupted", None),
            ("start", None),
        ]
        assert jobs.get(job.id).attempts == 3  # a refused start changes nothing
        # the next step's tries are counted afresh
        other = jobs.create(dataset="d", source="cli", input="/in/y.h5ad", params={})
        jobs.claim("w", lease_s=60, job=other.id)
        jobs.start(other.id, "w", "unpack", limit=1)
        jobs.advance(other.id, "w", J.UNPACKED)
        assert jobs.start(other.id, "w", "validate", limit=1).attempts == 1
        with pytest.raises(
            AttemptsUsed, match=r"^the worker running step validate died once \(signal or kill\)"
        ):
            jobs.start(other.id, "w", "validate", limit=1)


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_stopped_worker_hands_its_job_back_uncounted(
    make_h5ad: MakeH5ad, settings: Settings, tmp_path: Path
) -> None:
    adata = small_adata(seed=51)
    marker = tmp_path / "stalled"
    script = f"""
import time
from pathlib import Path
import widecube.pipeline._ingest as steps
from widecube.cli import app

real = steps.STEPS["compute"]

def stalled(work):
    Path({str(marker)!r}).write_text("stalled")
    time.sleep(600)

steps.STEPS["compute"] = stalled
import sys
sys.argv = ["widecube", "work"]
app()
"""
    with Catalog(settings.catalog_url) as catalog:
        job = JobRunner(settings, catalog).submit(
            make_h5ad(adata), dataset="t", params={"groupbys": ["donor"]}
        )
        worker = subprocess.Popen(
            [sys.executable, "-c", script],
            env=env_for(settings, WIDECUBE_JOB_POLL="0.2"),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(
                lambda: marker.exists() or worker.poll() is not None, 240, "the worker to run compute", 0.1
            )
            held = catalog.jobs.get(job.id)
            assert (held.state, held.step, held.attempts) == (J.VALIDATED, "compute", 1)
            stopped_at = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            worker.communicate(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
        assert worker.returncode == 0 and time.monotonic() - stopped_at < 10
        back = catalog.jobs.get(job.id)
        assert (back.state, back.worker, back.step, back.attempts) == (J.VALIDATED, None, None, 0)
        assert events(back)[-2:] == [("start", "compute"), ("interrupted", "compute")]
        done = JobRunner(settings, catalog, worker="next").run_next()  # no lease to wait out
        assert done is not None and done.id == job.id and done.state == J.PUBLISHED, done and done.error
    assert served_sum(settings, "t") == pytest.approx(expected_sum(adata))
