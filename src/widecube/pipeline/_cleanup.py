"""Reclaim the folders that killed ingest jobs left behind.

A job keeps its checkpoints and unpacked input in ``<storage>/work/<job id>`` and writes its
snapshot into ``<storage>/staging/<version>`` before verifying it; both go when the job ends.
A job whose process was killed leaves them on disk until a worker resumes it; a job that
will never be resumed (it was failed since, or its catalog row is gone) would leave them for
ever. :func:`reclaim_orphans` runs when ``widecube ingest``, ``widecube work`` and
``widecube serve`` start and removes:

* work folders of jobs that are final (published, failed, superseded) or unknown;
* staging folders of versions whose job is final or unknown, or whose version failed while
  its job waits to be resumed.

Never those of a job that is still running (its lease is valid) or may be resumed (not
final): a resumed job needs its checkpoints. Only folders named like ids (32 hex digits)
are considered; anything else in those folders is not widecube's to remove.

    >>> reclaim_orphans(settings, catalog)                           # doctest: +SKIP
    [PosixPath('/srv/widecube/work/3f2a...')]
"""

from __future__ import annotations

import logging
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

from ..catalog import Catalog, JobNotFound, JobRecord, VersionStatus
from ..config import Settings
from ..errors import NotFound

__all__ = ["reclaim_orphans"]

log = logging.getLogger("widecube.jobs")

_ID = re.compile(r"^[0-9a-f]{32}$")


def reclaim_orphans(settings: Settings, catalog: Catalog) -> list[Path]:
    """Remove the work and staging folders of jobs that will never use them; return them."""
    removed = []
    for folder in _ids(settings.storage / "work"):
        job = _job(catalog, folder.name)
        if job is None or job.state.final:
            removed.append(folder)
    for folder in _ids(settings.storage / "staging"):
        job = catalog.jobs.by_version(folder.name)
        if job is None or job.state.final or (not _running(job) and _failed(catalog, job)):
            removed.append(folder)
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
        log.info("removed %s, left by a job that ended or was killed", folder)
    return removed


def _ids(parent: Path) -> list[Path]:
    try:
        return sorted(p for p in parent.iterdir() if _ID.match(p.name) and p.is_dir())
    except FileNotFoundError:
        return []


def _job(catalog: Catalog, job: str) -> JobRecord | None:
    try:
        return catalog.jobs.get(job)
    except JobNotFound:
        return None


def _running(job: JobRecord) -> bool:
    return job.worker is not None and job.lease_until is not None and job.lease_until > datetime.now(UTC)


def _failed(catalog: Catalog, job: JobRecord) -> bool:
    try:
        return catalog.get_version(job.dataset, str(job.version)).status == VersionStatus.FAILED
    except NotFound:
        return False
