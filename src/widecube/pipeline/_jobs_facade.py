"""The jobs facade: what the CLI and the API may do with ingest jobs, through one door.

:class:`Jobs` wraps one catalog's :class:`JobRunner` and the helpers around it (ingest in
this process, submit, list, get, run what waits, the worker, the watcher, the supervised
worker process, the uploads that become jobs). Every method takes the caller as ``actor``
and calls :func:`widecube.access.authorize` first, so the faces never hold the catalog.

    >>> with Jobs.open(Settings()) as jobs:                                # doctest: +SKIP
    ...     jobs.list(state="failed", actor=Actor.cli())
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..access import ANONYMOUS, SERVER, Actor, Door
from ..catalog import Catalog, JobNotFound, JobRecord, JobState, VersionRecord
from ..config import Settings
from ..errors import InvalidQuery
from ._cleanup import collect_garbage, reclaim_orphans
from ._runner import JobRunner, JobWorker, ingest
from ._supervise import WorkerProcess
from ._upload_store import Uploads, sweep_uploads
from ._watch import Watcher

if TYPE_CHECKING:
    from ._ingest import Progress

__all__ = ["Jobs"]


class Jobs:
    """The ingest jobs of one catalog (``settings``' storage, ``catalog``)."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings, self.catalog = settings, catalog
        self.door = Door(catalog, auth=settings.auth)
        """Authorization and audit: every public method asks it first."""
        self._runner = JobRunner(settings, catalog)
        self._uploads = Uploads(self._runner, self.door)

    @classmethod
    @contextlib.contextmanager
    def open(cls, settings: Settings) -> Iterator[Jobs]:
        """The jobs of ``settings``' catalog, opened for the block (closed after it)."""
        with Catalog(settings.catalog_url) as catalog:
            yield cls(settings, catalog)

    def ingest(
        self,
        path: str | Path,
        *,
        dataset: str,
        groupbys: Sequence[str] | None = None,
        progress: Progress | None = None,
        visibility: str | None = None,
        classification: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        actor: Actor = ANONYMOUS,
        **options: Any,
    ) -> VersionRecord:
        """Build, verify and publish a version here, in this process (see :func:`ingest`).
        ``metadata`` (title, organism, tags, ...) is set first, as ``describe`` would."""
        with self.door.act(actor, "submit", dataset, input=Path(path).name) as act:
            self._classify(dataset, visibility, classification, actor)
            self._describe(dataset, metadata, actor)
            record = ingest(
                path,
                dataset=dataset,
                groupbys=groupbys,
                settings=self.settings,
                catalog=self.catalog,
                progress=progress,
                **options,
            )
            act.version = record.version
            return record

    def submit(
        self,
        input: str | Path,
        *,
        dataset: str,
        params: dict[str, Any],
        source: str = "cli",
        visibility: str | None = None,
        classification: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        actor: Actor = ANONYMOUS,
    ) -> JobRecord:
        """Record a job for a worker to run (state RECEIVED); ``metadata`` is set at once."""
        with self.door.act(actor, "submit", dataset, input=Path(input).name, source=source) as act:
            self._classify(dataset, visibility, classification, actor)
            self._describe(dataset, metadata, actor)
            params = {**params, "submitted_by": actor.user}
            job = self._runner.submit(input, dataset=dataset, params=params, source=source)
            act.detail["job"] = job.id
            return job

    def _classify(
        self, dataset: str, visibility: str | None, classification: str | None, actor: Actor
    ) -> None:
        """Set the dataset's visibility or classification before its data lands (its owners,
        or whoever is creating it)."""
        if visibility is None and classification is None:
            return
        change = {k: v for k, v in (("visibility", visibility), ("classification", classification)) if v}
        with self.door.act(actor, "classify", dataset, **change):
            self.catalog.access.set_policy(dataset, visibility=visibility, classification=classification)

    def _describe(self, dataset: str, metadata: Mapping[str, Any] | None, actor: Actor) -> None:
        """Set the dataset's metadata given with an ingest (owners, or whoever is creating it),
        before its data lands: a bad field fails the ingest before any work."""
        if not metadata:
            return
        with self.door.act(actor, "describe", dataset, fields=sorted(metadata)):
            self.catalog.metadata.update(dataset, metadata, by=actor.user)

    def list(
        self,
        *,
        state: str | None = None,
        source: str | None = None,
        limit: int = 100,
        actor: Actor = ANONYMOUS,
    ) -> list[JobRecord]:
        """Jobs, newest first; ``state`` by name (an unknown one is refused, naming the known).
        Only the jobs of datasets the caller may ingest into are listed."""
        found = self.catalog.jobs.list(state=job_state(state), source=source, limit=limit)
        return [job for job in found if self.door.may(actor, "submit", job.dataset)]

    def get(self, job_id: str, *, actor: Actor = ANONYMOUS) -> JobRecord:
        """One job with its step log (:class:`~widecube.errors.NotFound` if none has that id,
        or if the caller may not ingest into its dataset)."""
        job = self.catalog.jobs.get(job_id)
        if not self.door.may(actor, "submit", job.dataset):
            raise JobNotFound(f"no job {job_id!r} in the catalog")
        return job

    def run_pending(self, *, actor: Actor = ANONYMOUS) -> builtins.list[JobRecord]:
        """Run jobs in this process until none is waiting."""
        self.door.authorize(actor, "jobs", SERVER)
        return self._runner.run_pending()

    def reclaim_orphans(self, *, actor: Actor = ANONYMOUS) -> builtins.list[Path | str]:
        """Remove the folders (and spill prefixes, as URLs) of killed jobs that will never resume."""
        self.door.authorize(actor, "jobs", SERVER)
        return reclaim_orphans(self.settings, self.catalog)

    def collect_garbage(
        self, *, dry_run: bool = False, actor: Actor = ANONYMOUS
    ) -> builtins.list[tuple[str, int, str]]:
        """The work and staging folders of jobs that ended or were killed (removed unless
        ``dry_run``): ``(path relative to the work folder, bytes, why)``, for ``widecube gc``."""
        self.door.authorize(actor, "gc", SERVER)
        return collect_garbage(self.settings, self.catalog, dry_run=dry_run)

    def worker(self, *, poll: float, actor: Actor = ANONYMOUS) -> JobWorker:
        """A worker thread over this catalog's runner (not started)."""
        self.door.authorize(actor, "jobs", SERVER)
        return JobWorker(self._runner, poll=poll)

    def supervisor(self, *, actor: Actor = ANONYMOUS) -> WorkerProcess:
        """A supervised ``widecube work`` child process (not started)."""
        self.door.authorize(actor, "jobs", SERVER)
        return WorkerProcess(self.settings, self.catalog, backoff=max(self.settings.job_backoff, 0.1))

    def watcher(
        self,
        inbox: Path | str,
        *,
        quiet: float | None = None,
        poll: float | None = None,
        views: str | builtins.list[str] | None = None,
        input_kind: str | None = None,
        actor: Actor = ANONYMOUS,
    ) -> Watcher:
        """A watcher turning what is dropped into ``inbox`` (a folder, or an ``s3://`` prefix)
        into jobs (building ``views`` unless a sidecar says otherwise; default: every view)."""
        self.door.authorize(actor, "jobs", SERVER)
        return Watcher(
            inbox,
            self.settings,
            self.catalog,
            runner=self._runner,
            quiet=quiet,
            poll=poll,
            views=views,
            input_kind=input_kind,
        )

    def uploads(self, *, actor: Actor = ANONYMOUS) -> Uploads:
        """The uploads that become jobs (each of their methods takes the caller too)."""
        self.door.authorize(actor, "upload", SERVER)
        return self._uploads

    def sweep_uploads(self, *, actor: Actor = ANONYMOUS) -> builtins.list[str]:
        """Remove unfinished uploads idle past their expiry; their ids."""
        self.door.authorize(actor, "upkeep", SERVER)
        return sweep_uploads(self.settings, self.catalog)


def job_state(name: str | None) -> JobState | None:
    """The job state called ``name``, None for None; an unknown one is refused."""
    if name is None:
        return None
    try:
        return JobState(name)
    except ValueError:
        known = ", ".join(s.value for s in JobState)
        raise InvalidQuery(f"unknown job state {name!r} (states: {known})") from None
