"""Running ingest jobs: claim, run each step once, checkpoint, retry what is transient.

A job's state in the catalog names the last step it completed; the runner runs the next
step (``_ingest.STEPS``), saves the step's result as ``<storage>/work/<job id>/<step>.json``, then
advances the state, until the job is PUBLISHED or FAILED. A worker killed mid-job leaves the
state and the checkpoints behind; once its lease runs out, any worker claims the job and
resumes it at the step after the last one recorded. A checkpoint written just before the
kill counts as done, so a step that finished is never run twice.

Errors are sorted by :func:`retry_delay`: bad input (:class:`~widecube.errors.InputError`)
and every other refusal fail the job at once with their message, and so do I/O errors that
another try cannot mend (a name too long, a path that exists, no space, no permission: sorted
by errno); transient I/O errors and lost database connections are retried with exponential
backoff. Each try of a step is counted in the catalog *before* it runs, so a worker that dies
during a step (a signal, a crash in native code) uses up a try too: a step gets
``job_attempts`` tries in all, whatever ended them, and then the job fails with the reason.

A job whose version was verified but whose dataset's pointer moved since the job started
ends SUPERSEDED: its version stays verified, not live (``Catalog.publish(unless_moved=True)``),
unless the job was told to ``force`` its publish.

    >>> runner = JobRunner(Settings(), catalog)
    >>> job = runner.submit("pbmc.h5ad", dataset="pbmc", params={"groupbys": ["cell_type"]})
    >>> runner.run_pending()                                        # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, OperationalError

from ..catalog import AuditEvent, Catalog, JobRecord, JobState, LeaseLost, PointerMoved, VersionRecord
from ..config import Settings
from ..errors import CatalogError, WidecubeError
from ._checkpoint import save_checkpoint
from ._cleanup import reclaim_orphans
from ._workers import worker_name

if TYPE_CHECKING:
    from ._ingest import Progress, Work

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
# errnos worth another try: the same call may succeed later (a network file system, a busy or
# locked file, a full table of open files). Any other OSError is permanent: a name too long, a
# path that exists or is a folder, no permission, no space, a file h5py cannot read (no errno).
_TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EIO",
        "EAGAIN",
        "EINTR",
        "ESTALE",
        "ETIMEDOUT",
        "EBUSY",
        "ENOLCK",
        "ECONNRESET",
        "ECONNREFUSED",
        "ECONNABORTED",
        "EHOSTUNREACH",
        "EHOSTDOWN",
        "ENETUNREACH",
        "ENETDOWN",
        "ENETRESET",
        "ENOBUFS",
        "EMFILE",
        "ENFILE",
        "EREMOTEIO",
        "ECOMM",
        "EPIPE",
    )
    if hasattr(errno, name)
)


def next_step(state: JobState) -> tuple[str, JobState] | None:
    """The step that moves a job on from ``state``, and the state it reaches; None when final.

    >>> next_step(JobState.VALIDATED)
    ('compute', <JobState.COMPUTED: 'computed'>)
    """
    return _NEXT.get(state)


def retry_delay(exc: BaseException, attempt: int, *, attempts: int, backoff: float) -> float | None:
    """Seconds to wait before trying a step again after ``exc`` on try ``attempt``; None: fail.

    Only transient errors are retried: I/O errors whose errno says another try may work
    (``EIO``, ``ESTALE``, ``EAGAIN``, timeouts, lost connections, ...) and lost database
    connections. widecube's own errors never are (bad input stays bad, a refused state
    change stays refused), nor are permanent I/O errors (``ENAMETOOLONG``, ``EEXIST``,
    ``EISDIR``, ``ENOTDIR``, ``EINVAL``, ``EACCES``, ``ENOSPC``, no errno at all, ...).

    >>> retry_delay(OSError(errno.ESTALE, "Stale file handle"), 1, attempts=3, backoff=2.0)
    2.0
    >>> retry_delay(OSError(errno.ESTALE, "Stale file handle"), 3, attempts=3, backoff=2.0) is None
    True
    >>> retry_delay(OSError(errno.ENAMETOOLONG, "File name too long"), 1, attempts=3, backoff=2.0) is None
    True
    """
    if attempt >= attempts or not _transient(exc):
        return None
    delay: float = min(backoff * 2 ** (attempt - 1), _MAX_DELAY)
    return delay


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, WidecubeError):
        return False
    if isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return True
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, WidecubeError) else f"{type(exc).__name__}: {exc}"


class JobRunner:
    """Runs jobs of one catalog as worker ``worker`` (default: host, pid and a random tag)."""

    def __init__(self, settings: Settings, catalog: Catalog, *, worker: str | None = None) -> None:
        self.settings, self.catalog = settings, catalog
        self.worker = worker or worker_name()
        self.current: str | None = None
        """The job this runner is running now, if any."""

    def submit(
        self,
        input: str | Path,
        *,
        dataset: str,
        params: dict[str, Any],
        source: str = "cli",
        input_key: str | None = None,
        claim: bool = False,
        error: str | None = None,
    ) -> JobRecord:
        """Record a job (RECEIVED, or FAILED with ``error``); ``claim``: born held by this runner."""
        return self.catalog.jobs.create(
            dataset=dataset,
            source=source,
            input=str(input),
            params=params,
            input_key=input_key,
            worker=self.worker if claim else None,
            lease_s=self.settings.job_lease,
            error=error,
        )

    def run(self, job: str, *, progress: Progress | None = None, raise_errors: bool = False) -> JobRecord:
        """Claim ``job`` (unless held already) and run it to its end; returns the final record.

        With ``raise_errors`` the error that failed the job is raised after it is recorded.
        """
        record = self.catalog.jobs.get(job)
        if record.worker != self.worker:
            claimed = self.catalog.jobs.claim(self.worker, lease_s=self.settings.job_lease, job=job)
            if claimed is None:
                holder = record.worker or "nobody"
                raise CatalogError(
                    f"job {job} is {record.state.value} and held by {holder}; it cannot be claimed now"
                )
            record = claimed
        return self._drive(record, progress or _quiet, raise_errors)

    def run_next(self) -> JobRecord | None:
        """Claim the oldest job waiting (or abandoned by a dead worker) and run it; None if none."""
        record = self.catalog.jobs.claim(self.worker, lease_s=self.settings.job_lease)
        return None if record is None else self._drive(record, _quiet, raise_errors=False)

    def interrupt(self) -> bool:
        """Hand the running job back (this process is being stopped on purpose): its step's
        try is not counted and the next worker resumes it at once. False if none ran."""
        job = self.current
        return job is not None and self.catalog.jobs.interrupt(job, self.worker)

    def run_pending(self) -> list[JobRecord]:
        """Run jobs until none is waiting."""
        done = []
        while (record := self.run_next()) is not None:
            done.append(record)
        return done

    def _drive(self, job: JobRecord, progress: Progress, raise_errors: bool) -> JobRecord:
        with _Saving(progress, self.catalog, job, self.worker) as saving:
            return self._run(job, saving, raise_errors)

    def _run(self, job: JobRecord, saving: _Saving, raise_errors: bool) -> JobRecord:
        work = _steps().Work(job, self.settings, self.catalog, saving.report)
        work.done = _checkpoints(work.folder)
        log.info(
            "job %s (dataset %s, %s): started at %s, worker %s",
            job.id,
            job.dataset,
            Path(job.input).name,
            job.state.value,
            self.worker,
        )
        began = time.monotonic()
        name = "unpack"
        self.current = job.id
        with _Lease(self.catalog, job.id, self.worker, self.settings.job_lease):
            try:
                while (found := next_step(job.state)) is not None:
                    name, target = found
                    if name not in work.done:
                        work.progress(name, 0.0)
                        work.done[name] = self._attempt(work, name)
                        save_checkpoint(work.folder, name, work.done[name])
                        work.progress(name, 1.0)
                        saving.flush()  # a step's end is saved before the job moves on
                    self.catalog.jobs.event(job.id, self.worker, "done", name)
                    job = work.job = self.catalog.jobs.advance(job.id, self.worker, target)
            except LeaseLost:  # another worker took the job over; it finishes it
                work.close()
                log.warning("job %s: lost the claim, stopping", job.id)
                if raise_errors:
                    raise
                return self.catalog.jobs.get(job.id)
            except PointerMoved as exc:  # verified, not published: a newer version is live
                job = self._supersede(work, exc)
                if raise_errors:
                    raise
            except BaseException as exc:
                job = self._fail(work, exc, name)
                if raise_errors or not isinstance(exc, Exception):
                    raise
            finally:
                self.current = None
                if job.state.final:
                    _cleanup(work)
                    _audit_end(self.catalog, job)
                    _log_end(job, name, time.monotonic() - began)
        return job

    def _attempt(self, work: Work, name: str) -> dict[str, Any]:
        """Run step ``name``, each try counted in the catalog before it starts (tries that
        earlier workers began and never finished count too); AttemptsUsed once all are."""
        limit = self.settings.job_attempts
        while True:
            attempt = self.catalog.jobs.start(work.job.id, self.worker, name, limit=limit).attempts
            try:
                done: dict[str, Any] = _steps().STEPS[name](work)
                return done
            except BaseException as exc:
                delay = retry_delay(exc, attempt, attempts=limit, backoff=self.settings.job_backoff)
                if delay is None:
                    raise
                work.close()
                self.catalog.jobs.event(
                    work.job.id,
                    self.worker,
                    "retry",
                    name,
                    attempt=attempt,
                    error=_describe(exc),
                    delay_s=delay,
                )
                log.warning("job %s: %s failed (%s), retrying in %.1f s", work.job.id, name, exc, delay)
                time.sleep(delay)

    def _supersede(self, work: Work, exc: PointerMoved) -> JobRecord:
        """End the job SUPERSEDED: its version stays verified (and on disk), not live."""
        self.catalog.jobs.event(work.job.id, self.worker, "superseded", "publish", live=exc.current)
        return self.catalog.jobs.advance(work.job.id, self.worker, JobState.SUPERSEDED, error=str(exc))

    def _fail(self, work: Work, exc: BaseException, step: str) -> JobRecord:
        """End the job FAILED of ``exc``. Its cleanup (the version marked failed, its files
        removed) failing too is logged and noted in the job's ``failed`` event, and does not
        take the place of ``exc``: the job failed of ``exc``, and that is what its caller is
        told (a store refusing a delete once hid the ingest's own error behind a traceback)."""
        reason = _describe(exc)
        detail: dict[str, str] = {}
        try:
            _steps().fail(work, reason)
        except Exception as cleanup:  # noqa: BLE001 - whatever it was, exc stays the failure
            detail["cleanup"] = _describe(cleanup)
            log.warning("job %s: cleaning up after %s failed did not finish: %s", work.job.id, step, cleanup)
        finally:
            self.catalog.jobs.event(work.job.id, self.worker, "failed", step, error=reason, **detail)
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

    def interrupt(self) -> bool:
        """Take no more jobs and hand the running one back (see :meth:`JobRunner.interrupt`);
        True if one was running. Its thread cannot be stopped: end the process next."""
        self._stop.set()
        return self.runner.interrupt()

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
    force: bool = False,
    views: str | Sequence[str] | None = None,
    input_kind: str | None = None,
    hold: bool = False,
) -> VersionRecord:
    """Build, verify and publish a new version of ``dataset`` from the file at ``path``.

    ``path`` is a matrix in any registered format, an MTX folder, or an archive holding one
    (:func:`widecube.io.open_input`); ``obs``/``var`` name cell/gene metadata files joined on
    id; ``max_unpacked`` caps an archive's expanded size in bytes (default 20 × its size).
    ``views`` names the views to build (``"summary,quantiles"`` or a list; those they require
    come too; default: every view); an unknown name is refused before the job is recorded.
    ``input_kind`` (counts, log1p, scaled) overrides the kind ingest detects from the values.
    The work is one job (see ``widecube jobs``), run here, in this process; its error is raised.
    The version is published only if the dataset's live version is still the one live when
    the job started; otherwise it stays verified and :class:`~widecube.catalog.PointerMoved`
    is raised, naming the version live instead, unless ``force`` (publish whatever is live).
    With ``hold`` the version is verified and not published (``_ingest.Held``, a
    :class:`~widecube.catalog.PointerMoved`, is raised): ``publish --together`` makes it live.
    Work and staging folders left by killed jobs are removed first (:func:`reclaim_orphans`).

        >>> ingest("pbmc.h5ad", dataset="pbmc", groupbys=["cell_type", "cell_type,donor"])  # doctest: +SKIP
    """
    from ..views import parse_input_kind, parse_views

    settings = settings or Settings()
    _steps().check_name(dataset)
    params: dict[str, Any] = {
        "groupbys": list(groupbys or []),
        "layer": layer,
        "format": format,
        "obs": str(obs) if obs else None,
        "var": str(var) if var else None,
        "allow_missing_metadata": allow_missing_metadata,
        "max_unpacked": max_unpacked,
        "force": force,
        "views": parse_views(views),
        "input_kind": parse_input_kind(input_kind),
        "hold": hold,
    }
    with _catalog(settings, catalog) as opened:
        reclaim_orphans(settings, opened)
        runner = JobRunner(settings, opened)
        job = runner.submit(path, dataset=dataset, params=params, claim=True)
        done = runner.run(job.id, progress=progress, raise_errors=True)
        return opened.get_version(dataset, str(done.version))


def _steps() -> ModuleType:
    """The job steps (``_ingest``), imported when a job first runs: a worker waiting for jobs
    never loads the engine (views, kernels, readers: about 1.4 CPU-s of imports)."""
    from . import _ingest

    return _ingest


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


def _log_end(job: JobRecord, step: str, seconds: float) -> None:
    """The one line that says how a job ended (its start said so too): the server's log, the
    watcher's and ``widecube work``'s, so an operator sees every job without asking."""
    head = f"job {job.id} (dataset {job.dataset}):"
    if job.state == JobState.PUBLISHED:
        log.info("%s finished in %.1f s, published version %s", head, seconds, job.version)
    elif job.state == JobState.FAILED:
        log.info("%s failed in %s after %.1f s: %s", head, step, seconds, job.error)  # the input's fault
    else:  # superseded (or held): verified, not live; the error says why
        log.info("%s %s after %.1f s: %s", head, job.state.value, seconds, job.error)


def _quiet(step: str, done: float) -> None:
    pass


def _nothing() -> None:
    pass


class _Saving:
    """A job's progress reporter: ``progress`` told at once, and the step and fraction saved
    in the catalog (the job and its BUILDING version) when a step starts or ends, and at most
    once a second in between, by a thread of its own (:meth:`__exit__` waits for the last).

    A save is two catalog transactions; made by the computing thread, it waited for them:
    0.87 s over an ingest's 94 saves of the Poisson B100k, up to 81 ms each, and pass 1's
    threads report under one lock, so both waited (thread states sampled every 5 ms: 3 % of
    pass 1 with no thread running, behind a commit). Only the latest report waits here; one
    superseded before its turn is not saved (the catalog shows the latest anyway), a step's
    end is saved before the job moves on (:meth:`flush`), and a failed save is logged, never
    raised into the job."""

    def __init__(self, progress: Progress, catalog: Catalog, job: JobRecord, worker: str, every: float = 1.0):
        self._progress, self._catalog, self._every = progress, catalog, every
        self._job, self._worker = job, worker
        self._saved_at, self._step = 0.0, ""  # when the last save was asked for, of which step
        self._started = time.monotonic()
        self._latest: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._saver = ThreadPoolExecutor(1, thread_name_prefix=f"widecube-progress-{job.id[:8]}")

    def __enter__(self) -> _Saving:
        return self

    def __exit__(self, *exc: object) -> None:
        self._saver.shutdown(wait=True)

    def flush(self) -> None:
        """Wait until every report made so far is saved (or logged as not)."""
        self._saver.submit(_nothing).result()

    def report(self, step: str, done: float) -> None:
        self._progress(step, done)
        now = time.monotonic()
        if now - self._saved_at >= self._every or done >= 1.0 or step != self._step:
            self._saved_at, self._step = now, step
            saved = {"step": step, "fraction": round(done, 4), "elapsed_s": round(now - self._started, 1)}
            with self._lock:
                waiting, self._latest = self._latest is not None, saved
            if not waiting:
                self._saver.submit(self._save)

    def _save(self) -> None:
        job = self._job
        with self._lock:
            saved, self._latest = self._latest, None
        if saved is None:
            return
        try:
            self._catalog.report_progress(job.dataset, str(job.version), saved)
            self._catalog.jobs.report(job.id, self._worker, saved)
        except Exception:  # progress is shown, not relied on: the job goes on
            log.warning("job %s: could not save its progress", job.id, exc_info=True)


def _checkpoints(folder: Path) -> dict[str, dict[str, Any]]:
    """The checkpoints a job's earlier runs left, by step."""
    found = {}
    for name in _steps().STEPS:
        path = folder / f"{name}.json"
        if path.is_file():
            found[name] = json.loads(path.read_text())
    return found


def _cleanup(work: Work) -> None:
    """A finished job's work folder goes; so does an uploaded input (its own folder)."""
    shutil.rmtree(work.folder, ignore_errors=True)
    uploaded = Path(work.job.input).parent
    if work.job.source == "upload" and uploaded.parent == work.settings.local / "uploads":
        shutil.rmtree(uploaded, ignore_errors=True)


def _audit_end(catalog: Catalog, job: JobRecord) -> None:
    """Record how a job ended in the audit log (its publish, or why not), for whoever
    submitted it; a log that cannot be written does not undo the job."""
    try:
        catalog.audit.append(
            AuditEvent(
                action="ingest",
                outcome={"published": "ok", "superseded": "superseded"}.get(job.state.value, "failed"),
                actor=job.params.get("submitted_by"),
                via="server",
                dataset=job.dataset,
                version=job.version,
                detail={"job": job.id, "source": job.source, **({"error": job.error} if job.error else {})},
            )
        )
    except Exception:
        log.exception("job %s: could not write its audit row", job.id)
