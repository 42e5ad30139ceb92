"""Ingest jobs in the catalog: their states, who runs each one, and the log of their steps.

A job moves forward one state at a time, or fails from any state that is not final::

    received ─► unpacked ─► validated ─► computed ─► verified ─► published
        │           │           │           │           │  │
        └───────────┴───────────┴─────┬─────┴───────────┘  └──► superseded (error: the
                                      ▼                          newer live version)
                                    failed (error: the reason)

*superseded*: the job's version was verified, but the dataset's pointer had moved since the
job started (another version was published or rolled back to), so the version stays
verified, not live (see ``Catalog.publish``).

Each try of a step is counted in ``attempts`` *before* the step runs (:meth:`Jobs.start`),
so a step whose worker dies (a signal, a kill, out of memory) still uses up a try; when a
claimed job's step has used all its tries, :meth:`Jobs.start` refuses (:class:`AttemptsUsed`)
and the runner fails the job with that reason instead of running the step again. A worker
stopped on purpose gives its try back (:meth:`Jobs.interrupt`).

A worker *claims* a job before running it: it writes its name and a lease deadline into the
row, and renews the lease while it works. A job whose lease ran out (its worker was killed)
can be claimed again, and the new worker resumes it from its state. Claims are safe between
processes: on PostgreSQL the candidate row is taken with ``FOR UPDATE SKIP LOCKED``; SQLite
write transactions begin with ``BEGIN IMMEDIATE`` (see ``_engine``), so they serialize. Every
state change is conditional on the caller still holding the claim.

    >>> job = catalog.jobs.create(dataset="pbmc", source="cli", input="/in/pbmc.h5ad", params={})
    >>> catalog.jobs.claim("worker-1", lease_s=60).id == job.id
    True
"""

from __future__ import annotations

import builtins
import enum
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from widecube.catalog._schema import jobs
from widecube.errors import CatalogError, NotFound

__all__ = [
    "AttemptsUsed",
    "JobNotFound",
    "JobRecord",
    "JobState",
    "Jobs",
    "LeaseLost",
    "check_job_transition",
]

_J = jobs.c
Transaction = Callable[[], AbstractContextManager[sa.Connection]]


class JobState(enum.StrEnum):
    """Where an ingest job is; each state names the last step it completed."""

    RECEIVED = "received"
    UNPACKED = "unpacked"
    VALIDATED = "validated"
    COMPUTED = "computed"
    VERIFIED = "verified"
    PUBLISHED = "published"
    FAILED = "failed"
    SUPERSEDED = "superseded"

    @property
    def final(self) -> bool:
        return self in (JobState.PUBLISHED, JobState.FAILED, JobState.SUPERSEDED)


ORDER = (
    JobState.RECEIVED,
    JobState.UNPACKED,
    JobState.VALIDATED,
    JobState.COMPUTED,
    JobState.VERIFIED,
    JobState.PUBLISHED,
)


class JobNotFound(NotFound):
    """No job with that id is in the catalog."""


class LeaseLost(CatalogError):
    """This worker no longer holds the job's claim (its lease ran out and another took it)."""


class AttemptsUsed(CatalogError):
    """A job's step has been tried ``job_attempts`` times already (its workers died or its
    transient errors persisted); it is not started again."""


def check_job_transition(job: str, current: JobState, target: JobState) -> None:
    """Raise :class:`CatalogError` unless a job may go from ``current`` to ``target``.

    >>> check_job_transition("ab12", JobState.RECEIVED, JobState.UNPACKED)
    >>> check_job_transition("ab12", JobState.VERIFIED, JobState.SUPERSEDED)
    >>> check_job_transition("ab12", JobState.RECEIVED, JobState.COMPUTED)
    Traceback (most recent call last):
    ...
    widecube.errors.CatalogError: job ab12 is received; it can only become unpacked or failed
    """
    if current.final:
        raise CatalogError(f"job {job} is {current.value}, a final state; it cannot become {target.value}")
    following = ORDER[ORDER.index(current) + 1]
    if current == JobState.VERIFIED and target == JobState.SUPERSEDED:
        return
    if target not in (following, JobState.FAILED):
        raise CatalogError(f"job {job} is {current.value}; it can only become {following.value} or failed")


@dataclass(frozen=True)
class JobRecord:
    """One job as the catalog last recorded it.

    ``step`` is the step running now (None between steps), ``progress`` its last report
    (``{"step", "fraction", "elapsed_s"}``), ``log`` the step events, oldest first
    (``{"event": "start" | "done" | "retry" | "failed" | "died" | "interrupted" | "superseded",
    "step", "worker", "at", ...}``). ``attempts`` counts the tries of the step running now
    (or next, or where the job ended), each counted as it starts. ``version`` is the dataset
    version the job builds.
    """

    id: str
    dataset: str
    state: JobState
    step: str | None
    source: str
    input: str
    input_key: str | None
    version: str | None
    attempts: int
    error: str | None
    worker: str | None
    lease_until: datetime | None
    created: datetime
    updated: datetime
    started: datetime | None
    finished: datetime | None
    params: dict[str, Any] = field(hash=False)
    progress: dict[str, Any] = field(hash=False)
    log: list[dict[str, Any]] = field(hash=False)


class Jobs:
    """The jobs table, reached as :attr:`Catalog.jobs`; every method is one transaction."""

    def __init__(self, write: Transaction, read: Transaction) -> None:
        self._write, self._read = write, read

    # -- creating and claiming ----------------------------------------------------------

    def create(
        self,
        *,
        dataset: str,
        source: str,
        input: str,
        params: dict[str, Any],
        input_key: str | None = None,
        worker: str | None = None,
        lease_s: float = 60.0,
        error: str | None = None,
    ) -> JobRecord:
        """Record a new RECEIVED job (FAILED when ``error`` is given) and return it.

        A job with the same ``input_key`` already there is returned instead: a trigger seen
        twice makes one job. With ``worker`` the job is born claimed by it, so that no other
        worker picks up a job its submitter is about to run.
        """
        now = _now()
        row: dict[str, Any] = dict(
            id=uuid.uuid4().hex,
            dataset=dataset,
            state=JobState.RECEIVED.value,
            source=source,
            input=input,
            input_key=input_key,
            params=params,
            version_id=uuid.uuid4().hex,
            attempts=0,
            progress={},
            log=[],
            created_at=now,
            updated_at=now,
        )
        if worker is not None:
            row.update(worker=worker, lease_until=now + timedelta(seconds=lease_s), started_at=now)
        if error is not None:
            row.update(state=JobState.FAILED.value, error=error, finished_at=now)
        with self._write() as conn:
            if input_key is not None and (found := _by_key(conn, input_key)) is not None:
                return found
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(jobs).values(**row))
            except IntegrityError:  # another process registered the same key just now
                found = _by_key(conn, input_key) if input_key is not None else None
                if found is None:
                    raise
                return found
            return _get(conn, row["id"])

    def claim(self, worker: str, *, lease_s: float, job: str | None = None) -> JobRecord | None:
        """Claim the oldest unfinished job nobody holds (or ``job``); None if there is none."""
        now = _now()
        free = sa.or_(_J.worker.is_(None), _J.lease_until < now, _J.worker == worker)
        query = sa.select(_J.id).where(_J.state.not_in(_FINAL), free)
        if job is not None:
            query = query.where(_J.id == job)
        query = query.order_by(_J.created_at, _J.id).limit(1).with_for_update(skip_locked=True)
        with self._write() as conn:
            found = conn.execute(query).first()
            if found is None:
                return None
            claimed = (
                sa.update(jobs)
                .where(_J.id == found.id, free)
                .values(
                    worker=worker,
                    lease_until=now + timedelta(seconds=lease_s),
                    updated_at=now,
                    started_at=sa.func.coalesce(_J.started_at, now),
                )
            )
            if conn.execute(claimed).rowcount != 1:
                return None
            return _get(conn, found.id)

    def renew(self, job: str, worker: str, *, lease_s: float) -> bool:
        """Extend ``worker``'s lease on ``job``; False when it no longer holds the claim."""
        now = _now()
        held = sa.update(jobs).where(_J.id == job, _J.worker == worker, _J.state.not_in(_FINAL))
        with self._write() as conn:
            done = conn.execute(held.values(lease_until=now + timedelta(seconds=lease_s)))
            return bool(done.rowcount == 1)

    def start(self, job: str, worker: str, step: str, *, limit: int) -> JobRecord:
        """Count a try of ``step`` and log its start, in one transaction, before it runs.

        :class:`AttemptsUsed` (nothing changes) when ``limit`` tries were counted already;
        its message says how the earlier tries ended.
        """
        now = _now()
        with self._write() as conn:
            record = _held(conn, job, worker)
            if record.attempts >= limit:
                raise AttemptsUsed(_used_up(record, step))
            tries = record.attempts + 1
            entry = {
                "event": "start",
                "step": step,
                "worker": worker,
                "at": now.isoformat(),
                "attempt": tries,
            }
            conn.execute(
                sa.update(jobs)
                .where(_J.id == job)
                .values(log=[*record.log, entry], step=step, attempts=tries, updated_at=now)
            )
            return _get(conn, job)

    def interrupt(self, job: str, worker: str) -> bool:
        """``worker`` is being stopped on purpose: give the running step's try back and the
        claim up, so the next worker resumes the job at once; False if it did not hold it."""
        now = _now()
        with self._write() as conn:
            try:
                record = _held(conn, job, worker)
            except (LeaseLost, JobNotFound):
                return False
            values: dict[str, Any] = dict(worker=None, lease_until=None, step=None, updated_at=now)
            if record.step is not None and not record.state.final:
                entry = {"event": "interrupted", "step": record.step, "worker": worker, "at": now.isoformat()}
                values.update(log=[*record.log, entry], attempts=max(record.attempts - 1, 0))
            conn.execute(sa.update(jobs).where(_J.id == job).values(**values))
            return True

    def release_dead(self, worker_prefix: str, *, how: str) -> list[str]:
        """Free the claims of a worker known to be dead (its name starts with
        ``worker_prefix``), logging ``died`` with ``how``; its try stays counted. Returns
        the jobs freed, which the next worker can claim without waiting out the lease."""
        now = _now()
        freed = []
        query = (
            sa.select(jobs)
            .where(_J.worker.startswith(worker_prefix, autoescape=True), _J.state.not_in(_FINAL))
            .with_for_update()
        )
        with self._write() as conn:
            for row in conn.execute(query).mappings().all():
                record = _record(row)
                log = record.log
                if record.step is not None:
                    entry = {
                        "event": "died",
                        "step": record.step,
                        "worker": record.worker,
                        "at": now.isoformat(),
                        "how": how,
                    }
                    log = [*log, entry]
                conn.execute(
                    sa.update(jobs)
                    .where(_J.id == record.id)
                    .values(worker=None, lease_until=None, step=None, log=log, updated_at=now)
                )
                freed.append(record.id)
        return freed

    def release(self, job: str, worker: str) -> None:
        """Give the claim back (a worker stopping cleanly); the job waits for the next one."""
        with self._write() as conn:
            conn.execute(
                sa.update(jobs)
                .where(_J.id == job, _J.worker == worker)
                .values(worker=None, lease_until=None, step=None, updated_at=_now())
            )

    # -- progress ---------------------------------------------------------------------------

    def event(self, job: str, worker: str, event: str, step: str, **detail: Any) -> JobRecord:
        """Append a step event to the job's log; ``retry`` keeps ``step`` set, others clear it
        (a step's ``start`` is :meth:`start`, which also counts the try)."""
        now = _now()
        with self._write() as conn:
            record = _held(conn, job, worker)
            entry = {"event": event, "step": step, "worker": worker, "at": now.isoformat(), **detail}
            values: dict[str, Any] = dict(
                log=[*record.log, entry], updated_at=now, step=step if event == "retry" else None
            )
            conn.execute(sa.update(jobs).where(_J.id == job).values(**values))
            return _get(conn, job)

    def report(self, job: str, worker: str, progress: dict[str, Any]) -> None:
        """Save the running step's progress; ignored when ``worker`` lost the claim."""
        statement = sa.update(jobs).where(_J.id == job, _J.worker == worker, _J.state.not_in(_FINAL))
        with self._write() as conn:
            conn.execute(statement.values(progress=progress, updated_at=_now()))

    def advance(self, job: str, worker: str, target: JobState, *, error: str | None = None) -> JobRecord:
        """Move a job ``worker`` holds to ``target``; a final state also releases the claim,
        any other starts the next step's count of tries afresh."""
        now = _now()
        with self._write() as conn:
            record = _held(conn, job, worker)
            check_job_transition(job, record.state, target)
            values: dict[str, Any] = dict(state=target.value, step=None, updated_at=now)
            if target.final:
                values.update(worker=None, lease_until=None, finished_at=now, error=error)
            else:
                values.update(attempts=0)
            conn.execute(sa.update(jobs).where(_J.id == job).values(**values))
            return _get(conn, job)

    def forget_key(self, job: str) -> None:
        """Clear the job's ``input_key``: its trigger is gone, an identical one is a new job."""
        with self._write() as conn:
            conn.execute(sa.update(jobs).where(_J.id == job).values(input_key=None, updated_at=_now()))

    # -- reads ----------------------------------------------------------------------------

    def get(self, job: str) -> JobRecord:
        """One job; :class:`JobNotFound` if there is none with that id."""
        with self._read() as conn:
            return _get(conn, job)

    def by_version(self, version: str) -> JobRecord | None:
        """The job that builds dataset version ``version``, if any."""
        with self._read() as conn:
            found = conn.execute(sa.select(jobs).where(_J.version_id == version)).mappings().first()
        return None if found is None else _record(found)

    def by_key(self, input_key: str) -> JobRecord | None:
        """The job made for the trigger ``input_key``, if any."""
        with self._read() as conn:
            return _by_key(conn, input_key)

    def list(
        self, *, state: JobState | None = None, source: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        """Jobs newest first, optionally only those in ``state`` or from ``source``."""
        query = sa.select(jobs).order_by(_J.created_at.desc(), _J.id).limit(limit)
        if state is not None:
            query = query.where(_J.state == state.value)
        if source is not None:
            query = query.where(_J.source == source)
        with self._read() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def with_keys(self, prefix: str) -> builtins.list[JobRecord]:
        """Jobs whose ``input_key`` starts with ``prefix`` (a watcher's inbox entries)."""
        query = sa.select(jobs).where(_J.input_key.startswith(prefix, autoescape=True))
        with self._read() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]


_FINAL = tuple(s.value for s in JobState if s.final)


def _used_up(job: JobRecord, step: str) -> str:
    """Why ``step`` of ``job`` is not tried again, from the ends of its tries in the log.

    A try that was started but neither finished, retried nor interrupted ended with its
    worker (killed by a signal, the OOM killer, a crash in native code).
    """
    mine = [e for e in job.log if e.get("step") == step]
    starts = sum(e["event"] == "start" for e in mine)
    retried = [e for e in mine if e["event"] == "retry"]
    ended = len(retried) + sum(e["event"] == "interrupted" for e in mine)
    died = max(starts - ended, 0)
    tries = job.attempts
    how = _how_died(mine, died)
    if died >= tries:
        return (
            f"the worker running step {step} died {_times(died)} ({how}); the input may be "
            "malformed, or changed while it was read"
        )
    parts = [f"the worker died {_times(died)} ({how})"] if died else []
    if retried:
        parts.append(f"{len(retried)} transient error(s), the last: {retried[-1].get('error')}")
    return f"step {step} was tried {_times(tries)} and did not finish: " + "; ".join(parts)


def _how_died(entries: list[dict[str, Any]], died: int) -> str:
    """How ``died`` tries ended, from the supervisors' ``died`` entries (a worker without one
    is known only by its lease running out).

    >>> _how_died([{"event": "died", "how": "killed by signal 7 (SIGBUS)"}], 1)
    'killed by signal 7 (SIGBUS)'
    >>> _how_died([{"event": "died", "how": "killed by signal 11 (SIGSEGV)"}], 2)
    'killed by signal 11 (SIGSEGV) once; once a signal or kill no supervisor saw'
    """
    hows = Counter(str(e["how"]) for e in entries if e["event"] == "died" and e.get("how"))
    unseen = max(died - sum(hows.values()), 0)
    if not hows:
        return "signal or kill"
    if len(hows) == 1 and not unseen:
        return next(iter(hows))
    parts = [f"{how} {_times(n)}" for how, n in sorted(hows.items())]
    return "; ".join(parts + ([f"{_times(unseen)} a signal or kill no supervisor saw"] if unseen else []))


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _held(conn: sa.Connection, job: str, worker: str) -> JobRecord:
    """The job, locked for this transaction; :class:`LeaseLost` unless ``worker`` holds it."""
    found = conn.execute(sa.select(jobs).where(_J.id == job).with_for_update()).mappings().first()
    if found is None:
        raise JobNotFound(f"no job {job!r} in the catalog")
    record = _record(found)
    if record.worker != worker:
        raise LeaseLost(
            f"job {job} is no longer claimed by worker {worker} "
            f"(now: {record.worker or 'nobody'}, state {record.state.value})"
        )
    return record


def _get(conn: sa.Connection, job: str) -> JobRecord:
    found = conn.execute(sa.select(jobs).where(_J.id == job)).mappings().first()
    if found is None:
        raise JobNotFound(f"no job {job!r} in the catalog")
    return _record(found)


def _by_key(conn: sa.Connection, key: str) -> JobRecord | None:
    found = conn.execute(sa.select(jobs).where(_J.input_key == key)).mappings().first()
    return None if found is None else _record(found)


def _record(row: sa.RowMapping) -> JobRecord:
    return JobRecord(
        id=row["id"],
        dataset=row["dataset"],
        state=JobState(row["state"]),
        step=row["step"],
        source=row["source"],
        input=row["input"],
        input_key=row["input_key"],
        version=row["version_id"],
        attempts=row["attempts"],
        error=row["error"],
        worker=row["worker"],
        lease_until=row["lease_until"],
        created=row["created_at"],
        updated=row["updated_at"],
        started=row["started_at"],
        finished=row["finished_at"],
        params=row["params"],
        progress=row["progress"],
        log=row["log"],
    )


def _now() -> datetime:
    return datetime.now(UTC)
