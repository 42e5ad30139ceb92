"""Version resolution: which snapshot a request reads, opened once, and which are out of service.

Every query resolves the dataset's version exactly once (the live one, or a pinned one)
and then reads only that immutable snapshot, so a publish in the middle of a request can
never mix two versions. Opened snapshots are kept per version (least recently used go).

What is served is what was verified: a read that finds a file at fault raises
:class:`~widecube.errors.SnapshotCorrupt` (503) naming it, and the facade remembers the
version as corrupt, answering 503 for it at once until a verify passes again. A snapshot
whose manifest does not match the catalog's record of the version (another dataset or
version, other sizes, another manifest than the one verified) is refused the same way.

Garbage collection and archiving change the catalog first and delete the files a grace
period later (``Settings.gc_grace``): a request that resolved the version before finishes on
intact files. A request whose files vanish anyway (it outlived the grace) asks the catalog
afresh and answers :class:`~widecube.errors.VersionGone` (410) or
:class:`~widecube.errors.VersionArchived` (409) naming the version, never a wrong value: a
request that ran longer than the grace also checks, before it answers, that its version was
not removed meanwhile (Zarr reads a deleted chunk as fill values, so files vanishing under a
read could otherwise go unnoticed).

Every resolve records when the version was read (in memory; ``flush_reads`` writes it to the
catalog for the retention policy's "read in the last T minutes").
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from ..access import ANONYMOUS, SERVER, Actor, Door
from ..catalog import Catalog, VersionRecord, VersionStatus
from ..config import Settings
from ..errors import SnapshotCorrupt, VersionArchived, VersionGone, VersionNotFound, WidecubeError
from ..snapshot import MANIFEST, Fault, Snapshot, corrupt, open_storage
from ._index import SnapshotIndex, index_of

__all__ = ["Resolver", "manifest_mismatch", "serving"]

_SERVABLE = {VersionStatus.PUBLISHED, VersionStatus.RETIRED, VersionStatus.VERIFIED}
_reading: contextvars.ContextVar[Snapshot | None] = contextvars.ContextVar("widecube_reading", default=None)
_CHANGE_LAG_S = 6.0  # how late a process may learn of another's commit (PostgreSQL: _changes, 5 s)
F = TypeVar("F", bound=Callable[..., Any])


def serving(method: F) -> F:
    """Mark a query: a corrupt file found while it reads takes the version out of service.

    A :class:`SnapshotCorrupt` is remembered; any other unexpected error (e.g. Zarr's CRC-32C
    codec refusing a chunk read outside :meth:`Snapshot.array`) triggers one check of the
    version's files per process, which turns it into :class:`SnapshotCorrupt` if one is at fault.
    """

    @functools.wraps(method)
    def wrapper(self: Resolver, *args: Any, **kwargs: Any) -> Any:
        token = _reading.set(None)
        started = time.monotonic()
        try:
            answer = method(self, *args, **kwargs)
            snap = _reading.get()
            if snap is not None and time.monotonic() - started > self.settings.gc_grace - _CHANGE_LAG_S:
                self._still_here(snap)  # long enough for a purge to have begun under it
            return answer
        except SnapshotCorrupt as exc:
            snap = _reading.get()
            if snap is not None:
                self._still_here(snap)  # a file gone because the version was removed: 410
            self._mark_corrupt(exc)
            raise
        except WidecubeError:
            raise
        except Exception as exc:
            snap = _reading.get()
            if snap is None:
                raise
            self._still_here(snap)
            if not self._first_failure(snap.version):
                raise
            faults = snap.check()
            if not faults:
                raise
            found = corrupt(snap.dataset, snap.version, faults)
            self._mark_corrupt(found)
            raise found from exc
        finally:
            _reading.reset(token)

    return wrapper  # type: ignore[return-value]


class Resolver:
    """The catalog, the opened snapshots and the versions out of service (shared state of
    the facade's reads, admin moves and cache upkeep)."""

    def __init__(self, settings: Settings | None = None, *, keep_open: int = 256) -> None:
        self.settings = settings or Settings()
        self.catalog = Catalog(self.settings.catalog_url)
        self.storage = open_storage(self.settings.storage)
        """Where the snapshots are (a folder or an object store); read through the local cache."""
        self.door = Door(self.catalog, auth=self.settings.auth)
        """Authorization and audit: every public method asks it first."""
        self._open: OrderedDict[str, Snapshot] = OrderedDict()
        self._paths: dict[str, str] = {}  # version -> the path its opened snapshot was read from
        self._reads: dict[str, float] = {}  # version -> wall time of its last resolve here
        self._keep = keep_open
        self._lock = threading.Lock()
        self._corrupt: dict[str, SnapshotCorrupt] = {}  # version -> why it is out of service
        self._failed: set[str] = set()  # versions checked after an unexpected read error

    def close(self) -> None:
        self.catalog.close()

    def resolve(self, dataset: str, version: str | None = None) -> tuple[VersionRecord, Snapshot]:
        """The version to read (live, or pinned) and its opened snapshot.

        The primitive every facade method builds on (after :func:`~widecube.access.authorize`)."""
        if version is None:
            record = self.catalog.current(dataset)
        else:
            record = self.catalog.get_version(dataset, version)
        if record.status not in _SERVABLE or record.path is None:
            self._refuse(record)
        bad = self._corrupt.get(record.version)
        if bad is not None:  # a fresh error each time: one shared instance would pile up tracebacks
            raise SnapshotCorrupt(str(bad), dataset=bad.dataset, version=bad.version, files=bad.files)
        snap = self._snapshot(record)
        _reading.set(snap)
        self._reads[record.version] = time.time()  # one dict store: atomic under the GIL
        return record, snap

    def flush_reads(self, *, actor: Actor = ANONYMOUS) -> int:
        """Write the versions this process read since the last flush to the catalog (their
        last read time, for retention); returns how many. The server's upkeep calls it."""
        self.door.authorize(actor, "upkeep", SERVER)
        return self._flush_reads()

    def _flush_reads(self) -> int:
        reads, self._reads = self._reads, {}
        self.catalog.lifecycle.record_reads({v: datetime.fromtimestamp(t, UTC) for v, t in reads.items()})
        return len(reads)

    def _refuse(self, record: VersionRecord) -> None:
        """Raise what a version that cannot be served answers: 410 removed, 409 archived, 503
        corrupt, 404 otherwise (building, failed)."""
        dataset, version = record.dataset, record.version
        if record.status == VersionStatus.REMOVED:
            raise VersionGone(f"version {version} of dataset {dataset!r} was removed: {record.reason}")
        if record.status == VersionStatus.ARCHIVED:
            raise VersionArchived(
                f"version {version} of dataset {dataset!r} is archived in cold storage; restore it "
                f"with `widecube restore {dataset}@{version}` (or POST "
                f'/api/v1/admin/datasets/{dataset}/restore {{"version": "{version}"}}) to read it'
            )
        if record.status == VersionStatus.CORRUPT:
            raise SnapshotCorrupt(
                f"version {version} of dataset {dataset!r} is out of service: {record.reason}",
                dataset=dataset,
                version=version,
                files=[],
            )
        raise VersionNotFound(f"version {version} of dataset {dataset!r} is {record.status}, not servable")

    def _still_here(self, snap: Snapshot) -> None:
        """Raise 410/409 if the catalog (read afresh) says ``snap``'s version was removed or
        archived: what a read whose files vanished answers instead of an error or a guess."""
        found = self.catalog.lifecycle.status(snap.version)
        if found is None:
            raise VersionGone(
                f"version {snap.version} of dataset {snap.dataset!r} is no longer in the catalog"
            )
        status, by = found
        if status in (VersionStatus.REMOVED, VersionStatus.ARCHIVED):
            with self._lock:
                self._open.pop(snap.version, None)
            self._refuse(self.catalog.get_version(snap.dataset, snap.version))

    def _indexed(self, dataset: str, version: str | None) -> tuple[VersionRecord, Snapshot, SnapshotIndex]:
        record, snap = self.resolve(dataset, version)
        return record, snap, index_of(snap)

    def _snapshot(self, record: VersionRecord) -> Snapshot:
        with self._lock:
            snap = self._open.get(record.version)
            if snap is not None and self._paths.get(record.version) == record.path:
                self._open.move_to_end(record.version)
                return snap
        assert record.path is not None
        try:
            files = self.storage.sub(record.path)
            snap = Snapshot(
                files, cache=self.settings.cache, cache_limit=self.settings.cache_max_bytes or None
            )
        except (OSError, ValueError) as exc:  # the manifest itself is unreadable
            found = corrupt(record.dataset, record.version, [Fault(MANIFEST, "cannot be read")])
            self._mark_corrupt(found)
            raise found from exc
        mismatch = manifest_mismatch(record, snap, files.get(MANIFEST))
        if mismatch:
            found = corrupt(record.dataset, record.version, [Fault(MANIFEST, mismatch)])
            self._mark_corrupt(found)
            raise found
        with self._lock:
            if self._paths.get(record.version) != record.path:
                self._open.pop(record.version, None)
            self._paths[record.version] = record.path
            snap = self._open.setdefault(record.version, snap)
            while len(self._open) > self._keep:
                self._open.popitem(last=False)
        return snap

    def _mark_corrupt(self, exc: SnapshotCorrupt) -> None:
        with self._lock:
            self._corrupt[exc.version] = exc

    def _mark_intact(self, version: str) -> None:
        with self._lock:
            self._corrupt.pop(version, None)
            self._failed.discard(version)

    def _first_failure(self, version: str) -> bool:
        """True the first time an unexpected read error hits ``version`` in this process."""
        with self._lock:
            if version in self._failed:
                return False
            self._failed.add(version)
            return True


def manifest_mismatch(record: VersionRecord, snap: Snapshot, manifest: bytes) -> str | None:
    """Why ``snap``'s manifest is not the one the catalog recorded for ``record`` (None: it is).

    The catalog keeps the manifest's sha256 from the ingest's verify step (``info``); versions
    verified before it was kept are compared by dataset, version and sizes only."""
    expected = (record.dataset, record.version, record.n_cells, record.n_genes)
    found = (snap.dataset, snap.version, snap.n_cells, snap.n_genes)
    if expected != found:
        return (
            f"names dataset {found[0]!r} version {found[1]} ({found[2]} cells × {found[3]} genes), "
            f"but the catalog records dataset {expected[0]!r} version {expected[1]} "
            f"({expected[2]} cells × {expected[3]} genes)"
        )
    recorded = record.info.get("manifest_sha256")
    if recorded and hashlib.sha256(manifest).hexdigest() != recorded:
        return "does not match the sha256 the catalog recorded when the version was verified"
    return None
