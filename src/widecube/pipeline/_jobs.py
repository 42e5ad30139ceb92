"""Running ingest jobs: claim, run each step once, checkpoint, retry what is transient.

A job's state in the catalog names the last step it completed; the runner runs the next
step (``_ingest.STEPS``), saves the step's result as ``<storage>/work/<job id>/<step>.json``, then
advances the state, until the job is PUBLISHED or FAILED. A worker killed mid-job leaves the
state and the checkpoints behind; once its lease runs out, any worker claims the job and
resumes it at the step after the last one recorded. A checkpoint written just before the
kill counts as done, so a step that finished is never run twice.

Errors are sorted by :func:`retry_delay`: bad input (:class:`~widecube.errors.InputError`)
and every other refusal fail the job at once with their message; I/O errors and lost
database connections are retried with exponential backoff, ``job_attempts`` times in all.

    >>> runner = JobRunner(Settings(), catalog)
    >>> job = runner.submit("pbmc.h5ad", dataset="pbmc", params={"groupbys": ["cell_type"]})
    >>> runner.run_pending()                                        # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError

from ..catalog import Catalog, JobRecord, JobState, LeaseLost, VersionRecord
from ..config import Settings
from ..errors import CatalogError, WidecubeError
from . import _ingest as steps
from ._ingest import Progress, Work, check_name

__all__ = ["JobRunner", "JobWorker", "ingest", "next_step", "retry_delay"]

log = logging.getLogger("widecube.jobs")

_NEXT: dict[JobState, tuple[str, JobState]] = {
    JobState.RECEIVED: ("unpack", JobState.UNPACKED),
    JobState.UNPACKED: ("validate", JobState.VALIDATED),
    JobState.VALIDATED: ("compute", JobState.COMPUTED),
    JobState.COMPUTED: ("verify", JobState.VERIFIED),
    JobState.VERIFIED: ("publish", JobState.PUBLISHED),
}
_MAX_DELAY = 300.0


def next_step(state: JobState) -> tuple[str, JobState] | None:
    """The step that moves a job on from ``state``, and the state it reaches; None when final.

    >>> next_step(JobState.VALIDATED)
    ('compute', <JobState.COMPUTED: 'computed'>)
    """
    return _NEXT.get(state)


def retry_delay(exc: BaseException, attempt: int, *, attempts: int, backoff: float) -> float | None:
    """Seconds to wait before trying a step again after ``exc`` on try ``attempt``; None: fail.

    Only transient errors are retried: I/O errors (``OSError``) and lost database connections.
    widecube's own errors never are: bad input stays bad, a refused state change stays refused.

    >>> retry_delay(OSError("stale NFS handle"), 1, attempts=3, backoff=2.0)
    2.0
    >>> retry_delay(OSError("stale NFS handle"), 3, attempts=3, backoff=2.0) is None
    True
    """
    if attempt >= attempts or not _transient(exc):
        return None
    return min(backoff * 2 ** (attempt - 1), _MAX_DELAY)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, WidecubeError):
        return False
    if isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return True
    return isinstance(exc, OSError)


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, WidecubeError) else f"{type(exc).__name__}: {exc}"


class JobRunner:
    """Runs jobs of one catalog as worker ``worker`` (default: host, pid and a random tag)."""

    def __init__(self, settings: Settings, catalog: Catalog, *, worker: str | None = None) -> None:
        self.settings, self.catalog = settings, catalog
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def submit(self, input: str | Path, *, dataset: str, params: dict[str, Any], source: str = "cli",
               input_key: str | None = None, claim: bool = False,
               error: str | None = None) -> JobRecord:  # fmt: skip
        """Record a job (RECEIVED, or FAILED with ``error``); ``claim``: born held by this runner."""
        return self.catalog.jobs.create(dataset=dataset, source=source, input=str(input), params=params,
                                        input_key=input_key, worker=self.worker if claim else None,
                                        lease_s=self.settings.job_lease, error=error)  # fmt: skip

    def run(self, job: str, *, progress: Progress | None = None, raise_errors: bool = False) -> JobRecord:
        """Claim ``job`` (unless held already) and run it to its end; returns the final record.

        With ``raise_errors`` the error that failed the job is raised after it is recorded.
        """
        record = self.catalog.jobs.get(job)
        if record.worker != self.worker:
            claimed = self.catalog.jobs.claim(self.worker, lease_s=self.settings.job_lease, job=job)
            if claimed is None:
                holder = record.worker or "nobody"
                raise CatalogError(f"job {job} is {record.state.value} and held by {holder}; "
                                   "it cannot be claimed now")  # fmt: skip
            record = claimed
        return self._drive(record, progress or _quiet, raise_errors)

    def run_next(self) -> JobRecord | None:
        """Claim the oldest job waiting (or abandoned by a dead worker) and run it; None if none."""
        record = self.catalog.jobs.claim(self.worker, lease_s=self.settings.job_lease)
        return None if record is None else self._drive(record, _quiet, raise_errors=False)

    def run_pending(self) -> list[JobRecord]:
        """Run jobs until none is waiting."""
        done = []
        while (record := self.run_next()) is not None:
            done.append(record)
        return done

    def _drive(self, job: JobRecord, progress: Progress, raise_errors: bool) -> JobRecord:
        work = Work(job, self.settings, self.catalog, _saving(progress, self.catalog, job, self.worker))
        work.done = _checkpoints(work.folder)
        log.info("job %s (%s): %s, worker %s", job.id, job.dataset, job.state.value, self.worker)
        name = "unpack"
        with _Lease(self.catalog, job.id, self.worker, self.settings.job_lease):
            try:
                while (found := next_step(job.state)) is not None:
                    name, target = found
                    if name not in work.done:
                        work.done[name] = self._attempt(work, name)
                        _save(work.folder, name, work.done[name])
                    self.catalog.jobs.event(job.id, self.worker, "done", name)
                    job = work.job = self.catalog.jobs.advance(job.id, self.worker, target)
            except LeaseLost:  # another worker took the job over; it finishes it
                work.close()
                log.warning("job %s: lost the claim, stopping", job.id)
                if raise_errors:
                    raise
                return self.catalog.jobs.get(job.id)
            except BaseException as exc:
                job = self._fail(work, exc, name)
                if raise_errors or not isinstance(exc, Exception):
                    raise
            finally:
                if job.state.final:
                    _cleanup(work)
        return job

    def _attempt(self, work: Work, name: str) -> dict[str, Any]:
        for attempt in range(1, self.settings.job_attempts + 1):
            self.catalog.jobs.event(work.job.id, self.worker, "start", name, attempt=attempt)
            try:
                return steps.STEPS[name](work)
            except BaseException as exc:
                delay = retry_delay(exc, attempt, attempts=self.settings.job_attempts,
                                    backoff=self.settings.job_backoff)  # fmt: skip
                if delay is None:
                    raise
                work.close()
                self.catalog.jobs.event(work.job.id, self.worker, "retry", name, attempt=attempt,
                                        error=_describe(exc), delay_s=delay)  # fmt: skip
                log.warning("job %s: %s failed (%s), retrying in %.1f s", work.job.id, name, exc, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _fail(self, work: Work, exc: BaseException, step: str) -> JobRecord:
        reason = _describe(exc)
        log.info("job %s failed in %s: %s", work.job.id, step, reason)
        try:
            steps.fail(work, reason)
        finally:
            self.catalog.jobs.event(work.job.id, self.worker, "failed", step, error=reason)
            record = self.catalog.jobs.advance(work.job.id, self.worker, JobState.FAILED, error=reason)
        return record


class JobWorker:
    """A daemon thread that looks for waiting jobs every ``poll`` seconds and runs them (the API
    server's, the watcher's, ``widecube work``'s).

    :meth:`stop` waits a few seconds for the thread; a job still running then dies with the
    process, and once its lease runs out another worker resumes it from its last step.
    """

    def __init__(self, runner: JobRunner, *, poll: float = 2.0) -> None:
        self.runner, self.poll = runner, poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="widecube-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                while not self._stop.is_set() and self.runner.run_next() is not None:
                    pass
            except Exception:  # the catalog is down: log, wait, try again
                log.exception("job worker round failed")
            self._stop.wait(self.poll)


def ingest(
    path: str | Path,
    *,
    dataset: str,
    groupbys: Sequence[str] | None = None,
    layer: str | None = None,
    format: str | None = None,
    settings: Settings | None = None,
    catalog: Catalog | None = None,
    progress: Progress | None = None,
    obs: str | Path | None = None,
    var: str | Path | None = None,
    allow_missing_metadata: bool = False,
    max_unpacked: int | None = None,
) -> VersionRecord:
    """Build, verify and publish a new version of ``dataset`` from the file at ``path``.

    ``path`` is a matrix in any registered format, an MTX folder, or an archive holding one
    (:func:`widecube.io.open_input`); ``obs``/``var`` name cell/gene metadata files joined on
    id; ``max_unpacked`` caps an archive's expanded size in bytes (default 20 × its size).
    The work is one job (see ``widecube jobs``), run here, in this process; its error is raised.

        >>> ingest("pbmc.h5ad", dataset="pbmc", groupbys=["cell_type", "cell_type,donor"])  # doctest: +SKIP
    """
    settings = settings or Settings()
    check_name(dataset)
    params = {"groupbys": list(groupbys or []), "layer": layer, "format": format,
              "obs": str(obs) if obs else None, "var": str(var) if var else None,
              "allow_missing_metadata": allow_missing_metadata, "max_unpacked": max_unpacked}  # fmt: skip
    with _catalog(settings, catalog) as opened:
        runner = JobRunner(settings, opened)
        job = runner.submit(path, dataset=dataset, params=params, claim=True)
        done = runner.run(job.id, progress=progress, raise_errors=True)
        return opened.get_version(dataset, str(done.version))


@contextlib.contextmanager
def _catalog(settings: Settings, catalog: Catalog | None) -> Iterator[Catalog]:
    if catalog is not None:
        yield catalog
    else:
        with Catalog(settings.catalog_url) as opened:
            yield opened


class _Lease:
    """Renews a job's lease every third of its length while the job runs."""

    def __init__(self, catalog: Catalog, job: str, worker: str, lease_s: float) -> None:
        self._args = (catalog, job, worker, lease_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"widecube-lease-{job[:8]}", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        catalog, job, worker, lease_s = self._args
        while not self._stop.wait(lease_s / 3):
            try:
                if not catalog.jobs.renew(job, worker, lease_s=lease_s):
                    return
            except Exception:  # a missed renewal is retried; the lease has slack for two
                log.warning("job %s: could not renew the lease", job, exc_info=True)


def _quiet(step: str, done: float) -> None:
    pass


def _saving(progress: Progress, catalog: Catalog, job: JobRecord, worker: str,
            every: float = 1.0) -> Progress:  # fmt: skip
    """``progress`` that also saves the step and fraction in the catalog (the job and its
    BUILDING version), at most once a second."""
    last = [0.0]
    started = time.monotonic()

    def report(step: str, done: float) -> None:
        progress(step, done)
        now = time.monotonic()
        if now - last[0] >= every or done >= 1.0:
            last[0] = now
            saved = {"step": step, "fraction": round(done, 4), "elapsed_s": round(now - started, 1)}
            catalog.report_progress(job.dataset, str(job.version), saved)
            catalog.jobs.report(job.id, worker, saved)

    return report


def _checkpoints(folder: Path) -> dict[str, dict[str, Any]]:
    """The checkpoints a job's earlier runs left, by step."""
    found = {}
    for name in steps.STEPS:
        path = folder / f"{name}.json"
        if path.is_file():
            found[name] = json.loads(path.read_text())
    return found


def _save(folder: Path, name: str, value: dict[str, Any]) -> None:
    """Write a step's checkpoint atomically: a reader finds the whole file or none."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.json.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(folder / f"{name}.json")


def _cleanup(work: Work) -> None:
    """A finished job's work folder goes; so does an uploaded input (its own folder)."""
    shutil.rmtree(work.folder, ignore_errors=True)
    uploaded = Path(work.job.input).parent
    if work.job.source == "upload" and uploaded.parent == work.settings.storage / "uploads":
        shutil.rmtree(uploaded, ignore_errors=True)
