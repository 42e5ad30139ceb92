"""Version resolution: which snapshot a request reads, opened once, and which are out of service.

Every query resolves the dataset's version exactly once (the live one, or a pinned one)
and then reads only that immutable snapshot, so a publish in the middle of a request can
never mix two versions. Opened snapshots are kept per version (least recently used go).

What is served is what was verified: a read that finds a file at fault raises
:class:`~widecube.errors.SnapshotCorrupt` (503) naming it, and the facade remembers the
version as corrupt, answering 503 for it at once until a verify passes again.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from ..access import Door
from ..catalog import Catalog, VersionRecord, VersionStatus
from ..config import Settings
from ..errors import SnapshotCorrupt, VersionNotFound, WidecubeError
from ..snapshot import MANIFEST, Fault, Snapshot, corrupt, open_storage
from ._index import SnapshotIndex, index_of

__all__ = ["Resolver", "serving"]

_SERVABLE = {VersionStatus.PUBLISHED, VersionStatus.RETIRED, VersionStatus.VERIFIED}
_reading: contextvars.ContextVar[Snapshot | None] = contextvars.ContextVar("widecube_reading", default=None)
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
        try:
            return method(self, *args, **kwargs)
        except SnapshotCorrupt as exc:
            self._mark_corrupt(exc)
            raise
        except WidecubeError:
            raise
        except Exception as exc:
            snap = _reading.get()
            if snap is None or not self._first_failure(snap.version):
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
                raise VersionNotFound(
                    f"version {version} of dataset {dataset!r} is {record.status}, not servable"
                )
        bad = self._corrupt.get(record.version)
        if bad is not None:  # a fresh error each time: one shared instance would pile up tracebacks
            raise SnapshotCorrupt(str(bad), dataset=bad.dataset, version=bad.version, files=bad.files)
        snap = self._snapshot(record)
        _reading.set(snap)
        return record, snap

    def _indexed(self, dataset: str, version: str | None) -> tuple[VersionRecord, Snapshot, SnapshotIndex]:
        record, snap = self.resolve(dataset, version)
        return record, snap, index_of(snap)

    def _snapshot(self, record: VersionRecord) -> Snapshot:
        with self._lock:
            snap = self._open.get(record.version)
            if snap is not None:
                self._open.move_to_end(record.version)
                return snap
        assert record.path is not None
        try:
            snap = Snapshot(
                self.storage.sub(record.path),
                cache=self.settings.cache,
                cache_limit=self.settings.cache_max_bytes or None,
            )
        except (OSError, ValueError) as exc:  # the manifest itself is unreadable
            found = corrupt(record.dataset, record.version, [Fault(MANIFEST, "cannot be read")])
            self._mark_corrupt(found)
            raise found from exc
        with self._lock:
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
