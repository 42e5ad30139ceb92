"""Reclaim the folders that killed ingest jobs left behind.

A job keeps its checkpoints, unpacked input and the readers' scratch files in
``<work>/work/<job id>`` (``Settings.work``: the storage folder unless set) and writes its
snapshot into ``<storage>/staging/<version>`` (on an object store: the version's final
prefix, which the same rules treat as its staging folder) before verifying it; both go
when the job ends. A job whose process was killed leaves them on disk until a worker
resumes it, which may be never (``widecube ingest`` alone runs no worker).
:func:`reclaim_orphans` runs when ``widecube ingest``, ``widecube work`` and ``widecube
serve`` start and removes:

* the work and staging folders of jobs that are final (published, failed, superseded) or
  unknown to the catalog;
* of a job that may still be resumed (not final) but is not running (no valid lease), what
  its resumption would throw away anyway: the readers' scratch files (``work/<id>/scratch``,
  stale in a new process), and its staging folder while the job has not finished computing
  (compute starts afresh) or once its version failed. Checkpoints, the unpacked input, and
  the staging folder of a computed job (which verify moves into place) stay.

With the spill on an object store (``WIDECUBE_SPILL``), a job's ranges of rows are objects
under ``<spill>/<job id>/`` while it computes; the prefixes of jobs that are final or unknown,
and of jobs that are not running (compute starts afresh, from pass 1), are removed the same
way, and named by their URL in what it returns.

Nothing of a running job is touched, and the job is claimed while its folders are trimmed,
so no worker can resume it meanwhile. Only folders named like ids (32 hex digits) are
considered; anything else there is not widecube's to remove.

    >>> reclaim_orphans(settings, catalog)                           # doctest: +SKIP
    [PosixPath('/srv/widecube/staging/3f2a...'), PosixPath('/srv/widecube/work/9b0c...')]
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from ..catalog import Catalog, JobNotFound, JobRecord, JobState, VersionStatus
from ..config import Settings
from ..errors import NotFound
from ..snapshot import Storage, open_storage
from ._workers import worker_name

__all__ = ["collect_garbage", "reclaim_orphans"]

log = logging.getLogger("widecube.jobs")

_ID = re.compile(r"^[0-9a-f]{32}$")
_BEFORE_COMPUTED = (JobState.RECEIVED, JobState.UNPACKED, JobState.VALIDATED)


def reclaim_orphans(settings: Settings, catalog: Catalog) -> list[Path | str]:
    """Remove what killed and ended jobs left in the work and staging folders and under the
    spill prefix; return it (folders, and the spill's prefixes as URLs)."""
    storage = open_storage(settings.storage)
    work = settings.local / "work"
    staging = storage.local / "staging" if storage.local is not None else None
    spill = open_storage(settings.spill) if settings.spill else None
    spilled = _spilled(spill)
    removed: list[Path | str] = []
    waiting: dict[str, JobRecord] = {}  # not final: trimmed under a claim, below
    for name in spilled:
        job = _job(catalog, name)
        if job is None or job.state.final:
            removed.append(_remove_spill(spill, name))
        else:
            waiting[job.id] = job
    for folder in _ids(work):
        job = _job(catalog, folder.name)
        if job is None or job.state.final:
            removed += _remove([folder])
        else:
            waiting[job.id] = job
    for folder in _ids(staging) if staging is not None else []:
        job = catalog.jobs.by_version(folder.name)
        if job is None or job.state.final:
            removed += _remove([folder])
        else:
            waiting[job.id] = job
    me = worker_name()
    for job in waiting.values():
        claimed = catalog.jobs.claim(me, lease_s=settings.job_lease, job=job.id)
        if claimed is None:  # running: hands off
            continue
        try:
            stale = [work / job.id / "scratch"]
            if claimed.state in _BEFORE_COMPUTED or _failed(catalog, claimed):
                if staging is not None:
                    stale.append(staging / str(claimed.version))
                elif claimed.version:  # written in place on the object store: never published
                    storage.remove(f"datasets/{claimed.dataset}/{claimed.version}")
            removed += _remove(stale)
            if job.id in spilled:  # not running: its pass 1 starts afresh
                removed.append(_remove_spill(spill, job.id))
        finally:
            catalog.jobs.release(job.id, me)
    return removed


def collect_garbage(settings: Settings, catalog: Catalog, *, dry_run: bool) -> list[tuple[str, int, str]]:
    """What :func:`reclaim_orphans` removes (``dry_run``: would remove, at least: the folders
    and spill prefixes of jobs that ended or that the catalog does not know), as ``(path
    relative to the work folder, or the spill prefix's URL, bytes, why)`` for a garbage
    collection's report."""
    storage = open_storage(settings.storage)
    staging = storage.local / "staging" if storage.local is not None else None
    folders = _ids(settings.local / "work") + (_ids(staging) if staging is not None else [])
    sizes: dict[Path | str, int] = {p: _bytes(p) for p in folders}
    sizes |= {p / "scratch": _bytes(p / "scratch") for p in folders}
    spill = open_storage(settings.spill) if settings.spill else None
    spilled = _spilled(spill)
    urls = {name: f"{spill.url}/{name}" for name in spilled} if spill is not None else {}
    sizes |= {urls[name]: n for name, n in spilled.items()}
    why = "left by a job that ended or was killed"
    if dry_run:
        ended: list[Path | str] = []
        for folder in folders:
            job = (
                _job(catalog, folder.name)
                if folder.parent.name == "work"
                else catalog.jobs.by_version(folder.name)
            )
            if job is None or job.state.final:
                ended.append(folder)
        for name, url in urls.items():
            job = _job(catalog, name)
            if job is None or job.state.final:
                ended.append(url)
        return [(_relative(settings, p), sizes[p], why) for p in ended]
    return [(_relative(settings, p), sizes.get(p, 0), why) for p in reclaim_orphans(settings, catalog)]


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def _spilled(spill: Storage | None) -> dict[str, int]:
    """``{job id: bytes}`` of the jobs' prefixes under the spill prefix (none: empty)."""
    if spill is None:
        return {}
    out: dict[str, int] = {}
    for info in spill.scan():
        name = info.path.split("/", 1)[0]
        if _ID.match(name):
            out[name] = out.get(name, 0) + info.size
    return out


def _remove_spill(spill: Storage | None, job: str) -> str:
    assert spill is not None  # only called for what _spilled found there
    spill.remove(job)
    log.info("removed %s/%s, spilled by a job that ended or was killed", spill.url, job)
    return f"{spill.url}/{job}"


def _relative(settings: Settings, path: Path | str) -> str:
    if isinstance(path, str):  # a spill prefix's URL
        return path
    for root in (settings.local, settings.storage):
        if isinstance(root, Path) and path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return path.name


def _remove(folders: list[Path]) -> list[Path]:
    gone = [folder for folder in folders if folder.exists()]
    for folder in gone:
        shutil.rmtree(folder, ignore_errors=True)
        log.info("removed %s, left by a job that ended or was killed", folder)
    return gone


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


def _failed(catalog: Catalog, job: JobRecord) -> bool:
    try:
        return catalog.get_version(job.dataset, str(job.version)).status == VersionStatus.FAILED
    except NotFound:
        return False
