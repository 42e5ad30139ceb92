"""A version's life after it is built: retention policies, pins, reads, removal by garbage
collection, cold storage (archive, restore), corruption found by a scrub.

What garbage collection decides is pure (``widecube.query``'s retention plan); what it
changes happens here, one version per transaction under its dataset's row lock, after
checking again what may have changed since the plan (the pointer, a release, a pin, a read):
a version that became worth keeping is left alone.

Removing or archiving a version never deletes its hot files at once: the catalog changes
first (new requests answer 410 or 409 from then on) and the files are *purged* after a grace
period (``purge_due``), so a request that resolved the version just before finishes on
intact files. ``purge_path`` names the folder to purge; a restore writes a fresh folder when
the old one still waits for its purge, so the two never meet.

    >>> catalog.lifecycle.set_policy("pbmc", keep_last=5, keep_read_s=600, by="ana")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from widecube.catalog import _queries as q
from widecube.catalog._records import VersionStatus, check_transition
from widecube.catalog._schema import (
    dataset_metadata,
    dataset_terms,
    datasets,
    grants,
    pointer_history,
    pointers,
    release_members,
    releases,
    retention,
    version_lifecycle,
    versions,
)
from widecube.errors import CatalogError, DatasetNotFound

__all__ = ["DEFAULT_POLICY", "Lifecycle", "Purge", "RetentionPolicy", "VersionFacts"]

Transaction = Callable[[], AbstractContextManager[sa.Connection]]
_V, _D, _L, _R = versions.c, datasets.c, version_lifecycle.c, retention.c
_GONE = (VersionStatus.REMOVED.value, VersionStatus.FAILED.value)
"""Versions a dataset's deletion leaves as they are: nothing of them is served or stored."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """What garbage collection keeps of a dataset besides the live version, pinned versions,
    versions named by a release and versions waiting to be published: the ``keep_last``
    newest versions that were ever published, and any version read in the last
    ``keep_read_s`` seconds. ``default``: no policy was set for the dataset."""

    keep_last: int = 3
    keep_read_s: int = 3600
    default: bool = True

    def describe(self) -> str:
        """The policy as the catalog records it on what it removes."""
        minutes = self.keep_read_s / 60
        return f"retention: keep_last={self.keep_last}, read_within={minutes:g} min"


DEFAULT_POLICY = RetentionPolicy()


@dataclass(frozen=True, slots=True)
class VersionFacts:
    """One version with what retention, inventory and scrub need to know about it."""

    dataset: str
    version: str
    status: VersionStatus
    created: datetime
    path: str | None
    live: bool
    ever_published: bool
    pinned: bool
    last_read: datetime | None
    bytes: int | None
    archive_url: str | None
    changed_at: datetime | None
    changed_by: str | None
    purge_path: str | None
    purge_due: datetime | None
    releases: tuple[str, ...]
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Purge:
    """Hot files of a removed or archived version whose grace period is over."""

    dataset: str
    version: str
    path: str


class Lifecycle:
    """The lifecycle tables of one catalog (see the module docstring)."""

    def __init__(self, write: Transaction, read: Transaction) -> None:
        self._write, self._read = write, read

    # -- policies and pins ---------------------------------------------------------------------

    def policy(self, dataset: str) -> RetentionPolicy:
        """The dataset's retention policy (the default unless one was set)."""
        with self._read() as conn:
            return _policy(conn, _dataset_id(conn, dataset))

    def policies(self) -> dict[str, RetentionPolicy]:
        """Every dataset's policy that is not the default, by dataset name."""
        query = sa.select(_D.name, _R.keep_last, _R.keep_read_s).join(retention, _R.dataset_id == _D.id)
        with self._read() as conn:
            return {
                row.name: RetentionPolicy(row.keep_last, row.keep_read_s, False)
                for row in conn.execute(query)
            }

    def set_policy(
        self, dataset: str, *, keep_last: int, keep_read_s: int, by: str | None
    ) -> RetentionPolicy:
        """Set the dataset's retention policy (replacing any)."""
        if keep_last < 0 or keep_read_s < 0:
            raise CatalogError(
                f"a retention policy keeps a number ≥ 0 of versions and seconds (dataset {dataset!r})"
            )
        with self._write() as conn:
            dataset_id = q.lock_dataset(conn, dataset)
            conn.execute(sa.delete(retention).where(_R.dataset_id == dataset_id))
            conn.execute(
                sa.insert(retention).values(
                    dataset_id=dataset_id,
                    keep_last=keep_last,
                    keep_read_s=keep_read_s,
                    updated_at=_now(),
                    updated_by=by,
                )
            )
        return RetentionPolicy(keep_last, keep_read_s, False)

    def pin(self, dataset: str, version: str, *, pinned: bool = True) -> None:
        """Pin a version (garbage collection keeps it whatever the policy) or unpin it."""
        with self._write() as conn:
            dataset_id = q.lock_dataset(conn, dataset)
            q.version_ref(conn, dataset, dataset_id, version)
            _upsert(conn, version, pinned=pinned)

    def record_reads(self, reads: dict[str, datetime]) -> None:
        """Record when versions were last read (``{version: time}``; older times never win).
        Versions unknown to the catalog are skipped."""
        if not reads:
            return
        with self._write() as conn:
            known = set(conn.execute(sa.select(_V.id).where(_V.id.in_(list(reads)))).scalars())
            for version in sorted(known):
                _upsert(conn, version, last_read_at=reads[version], newer_only=("last_read_at",))

    # -- what there is ------------------------------------------------------------------------

    def facts(self, dataset: str | None = None) -> list[VersionFacts]:
        """Every version (of one dataset, or all), by dataset, newest first."""
        named = _release_names
        published = sa.select(pointer_history.c.to_version).distinct().scalar_subquery()
        query = (
            sa.select(
                _D.name.label("dataset"),
                _V.id,
                _V.status,
                _V.created_at,
                _V.path,
                _V.info,
                (pointers.c.version_id.is_not(None)).label("live"),
                _V.id.in_(published).label("ever_published"),
                _L.pinned,
                _L.last_read_at,
                _L.bytes,
                _L.archive_url,
                _L.changed_at,
                _L.changed_by,
                _L.purge_path,
                _L.purge_due,
            )
            .select_from(
                versions.join(datasets, _V.dataset_id == _D.id)
                .outerjoin(pointers, pointers.c.version_id == _V.id)
                .outerjoin(version_lifecycle, _L.version_id == _V.id)
            )
            .order_by(_D.name, _V.created_at.desc(), _V.seq.desc())
        )
        with self._read() as conn:
            if dataset is not None:
                _dataset_id(conn, dataset)
                query = query.where(_D.name == dataset)
            names = named(conn)
            rows = conn.execute(query).mappings().all()
        return [
            VersionFacts(
                dataset=row["dataset"],
                version=row["id"],
                status=VersionStatus(row["status"]),
                created=row["created_at"],
                path=row["path"],
                live=bool(row["live"]),
                ever_published=bool(row["ever_published"]),
                pinned=bool(row["pinned"]),
                last_read=row["last_read_at"],
                bytes=row["bytes"],
                archive_url=row["archive_url"],
                changed_at=row["changed_at"],
                changed_by=row["changed_by"],
                purge_path=row["purge_path"],
                purge_due=row["purge_due"],
                releases=tuple(names.get(row["id"], ())),
                info=row["info"],
            )
            for row in rows
        ]

    def status(self, version: str) -> tuple[VersionStatus, str | None] | None:
        """A version's status and who changed it last, read now (no memory): what a reader
        whose files vanished asks before it answers. None for an unknown version."""
        query = (
            sa.select(_V.status, _L.changed_by, _L.changed_at)
            .select_from(versions.outerjoin(version_lifecycle, _L.version_id == _V.id))
            .where(_V.id == version)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        when = f" at {row.changed_at:%Y-%m-%d %H:%M:%S} UTC" if row.changed_at is not None else ""
        return VersionStatus(row.status), (f"{row.changed_by}{when}" if row.changed_by else None)

    # -- changes ------------------------------------------------------------------------------

    def remove(
        self, dataset: str, version: str, *, by: str, bytes: int, purge_due: datetime, read_before: datetime
    ) -> bool:
        """Mark a version ``removed`` (its hot files purged after ``purge_due``), unless what
        keeps versions changed since the plan: it went live, joined a release, was pinned,
        or was read at or after ``read_before``. Returns whether it was removed."""
        with self._write() as conn:
            dataset_id = q.lock_dataset(conn, dataset)
            ref = q.version_ref(conn, dataset, dataset_id, version)
            if ref.status not in (VersionStatus.VERIFIED, VersionStatus.RETIRED, VersionStatus.CORRUPT):
                return False
            if q.pointer(conn, dataset_id) == version or _in_release(conn, version):
                return False
            facts = conn.execute(
                sa.select(_L.pinned, _L.last_read_at).where(_L.version_id == version)
            ).first()
            if facts is not None and (
                facts.pinned or (facts.last_read_at and facts.last_read_at >= read_before)
            ):
                return False
            path = conn.execute(sa.select(_V.path).where(_V.id == version)).scalar_one()
            now = _now()
            q.set_status(
                conn, version, VersionStatus.REMOVED, now, reason=f"removed by garbage collection ({by})"
            )
            _upsert(
                conn,
                version,
                bytes=bytes,
                changed_at=now,
                changed_by=by,
                purge_path=path,
                purge_due=purge_due,
            )
            return True

    def deletable(self, dataset: str) -> list[str]:
        """The versions :meth:`delete_dataset` would mark removed (a dry run), oldest first."""
        with self._read() as conn:
            dataset_id = q.dataset_id(conn, dataset)
            kept = sa.select(_V.id).where(_V.dataset_id == dataset_id, _V.status.not_in(_GONE))
            query = kept.order_by(_V.seq)
            return [str(v) for v in conn.execute(query).scalars()]

    def delete_dataset(self, dataset: str, *, by: str, purge_due: datetime) -> list[str]:
        """Delete a dataset in one transaction: its pointer goes (reads answer 404 from the next
        request on, as for a dataset that never existed), every version with files becomes
        ``removed`` (its hot folder purged after ``purge_due``), and its grants, retention
        policy and metadata go. The catalog keeps the dataset's versions and audit rows. Refused
        (409) while a version is building or a release names one of its versions. Returns the
        versions removed."""
        with self._write() as conn:
            dataset_id = q.lock_dataset(conn, dataset)
            rows = conn.execute(
                sa.select(_V.id, _V.status, _V.path).where(_V.dataset_id == dataset_id).order_by(_V.seq)
            ).all()
            building = [r.id for r in rows if r.status == VersionStatus.BUILDING.value]
            if building:
                raise CatalogError(
                    f"dataset {dataset!r} has a version being built ({building[0]}): "
                    "wait for its job to end, then delete"
                )
            named = _release_names(conn)
            held = sorted({rel for r in rows for rel in named.get(r.id, [])})
            if held:
                raise CatalogError(
                    f"dataset {dataset!r} is named by release(s) {', '.join(held)}, which never "
                    "change: a dataset in a release cannot be deleted"
                )
            now = _now()
            conn.execute(sa.delete(pointers).where(pointers.c.dataset_id == dataset_id))
            removed = []
            for r in rows:
                if r.status in _GONE:
                    continue
                hot = r.status != VersionStatus.ARCHIVED.value
                q.set_status(conn, r.id, VersionStatus.REMOVED, now, reason=f"dataset deleted by {by}")
                _upsert(
                    conn,
                    r.id,
                    changed_at=now,
                    changed_by=f"deleted by {by}",
                    purge_path=r.path if hot else None,
                    purge_due=purge_due if hot else None,
                )
                removed.append(str(r.id))
            conn.execute(sa.delete(grants).where(grants.c.dataset == dataset))
            for table in (retention, dataset_terms, dataset_metadata):
                conn.execute(sa.delete(table).where(table.c.dataset_id == dataset_id))
            if conn.dialect.name == "sqlite":  # the metadata's full-text row (``_descriptions``)
                conn.execute(sa.text("DELETE FROM dataset_fts WHERE rowid = :id"), {"id": dataset_id})
            return removed

    def archive(
        self, dataset: str, version: str, *, url: str, by: str, bytes: int, purge_due: datetime
    ) -> None:
        """Mark a verified or retired version ``archived`` in the cold storage at ``url`` (its
        copy there is complete and checked); its hot files are purged after ``purge_due``."""
        with self._write() as conn:
            dataset_id = q.lock_dataset(conn, dataset)
            ref = q.version_ref(conn, dataset, dataset_id, version)
            check_transition(dataset, version, ref.status, VersionStatus.ARCHIVED)
            path = conn.execute(sa.select(_V.path).where(_V.id == version)).scalar_one()
            now = _now()
            q.set_status(conn, version, VersionStatus.ARCHIVED, now)
            _upsert(
                conn,
                version,
                bytes=bytes,
                archive_url=url,
                changed_at=now,
                changed_by=by,
                purge_path=path,
                purge_due=purge_due,
            )

    def restore(self, dataset: str, version: str, *, path: str, by: str) -> VersionStatus:
        """Mark an archived version hot again at ``path`` (copied back and checked): retired
        if it was ever live, else verified. Returns the status it got."""
        with self._write() as conn:
            dataset_id = q.lock_dataset(conn, dataset)
            ref = q.version_ref(conn, dataset, dataset_id, version)
            if ref.status != VersionStatus.ARCHIVED:
                raise CatalogError(f"version {version} of dataset {dataset!r} is {ref.status}, not archived")
            ever = conn.execute(
                sa.select(pointer_history.c.id).where(pointer_history.c.to_version == version).limit(1)
            ).first()
            target = VersionStatus.RETIRED if ever is not None else VersionStatus.VERIFIED
            now = _now()
            q.set_status(conn, version, target, now, path=path)
            _upsert(conn, version, archive_url=None, changed_at=now, changed_by=by)
            return target

    def mark_corrupt(self, dataset: str, version: str, *, by: str, reason: str) -> None:
        """Mark a version ``corrupt`` (a scrub found a file at fault); the pointer stays."""
        with self._write() as conn:
            dataset_id = q.lock_dataset(conn, dataset)
            ref = q.version_ref(conn, dataset, dataset_id, version)
            if ref.status == VersionStatus.CORRUPT:
                return
            check_transition(dataset, version, ref.status, VersionStatus.CORRUPT)
            now = _now()
            q.set_status(conn, version, VersionStatus.CORRUPT, now, reason=reason)
            _upsert(conn, version, changed_at=now, changed_by=by)

    def due(self, now: datetime | None = None) -> list[Purge]:
        """Hot folders whose purge is due (grace over)."""
        moment = now or _now()
        query = (
            sa.select(_D.name, _L.version_id, _L.purge_path)
            .select_from(
                version_lifecycle.join(versions, _V.id == _L.version_id).join(
                    datasets, _D.id == _V.dataset_id
                )
            )
            .where(_L.purge_due.is_not(None), _L.purge_due <= moment, _L.purge_path.is_not(None))
            .order_by(_L.purge_due)
        )
        with self._read() as conn:
            return [Purge(row.name, row.version_id, row.purge_path) for row in conn.execute(query)]

    def claim_purge(self, purge: Purge) -> bool:
        """Take a due purge (one process deletes it); its ``purge_path`` stays set until
        :meth:`purged`, so a restore meanwhile writes elsewhere."""
        with self._write() as conn:
            done = conn.execute(
                sa.update(version_lifecycle)
                .where(_L.version_id == purge.version, _L.purge_due.is_not(None), _L.purge_path == purge.path)
                .values(purge_due=None)
            )
            return bool(done.rowcount)

    def purged(self, purge: Purge) -> None:
        """The purge's folder is gone."""
        with self._write() as conn:
            conn.execute(
                sa.update(version_lifecycle)
                .where(_L.version_id == purge.version, _L.purge_path == purge.path)
                .values(purge_path=None)
            )


def _now() -> datetime:
    return datetime.now(UTC)


def _dataset_id(conn: sa.Connection, dataset: str) -> int:
    found = conn.execute(sa.select(_D.id).where(_D.name == dataset)).scalar()
    if found is None:
        raise DatasetNotFound(f"no dataset named {dataset!r} in the catalog")
    return int(found)


def _policy(conn: sa.Connection, dataset_id: int) -> RetentionPolicy:
    row = conn.execute(sa.select(_R.keep_last, _R.keep_read_s).where(_R.dataset_id == dataset_id)).first()
    return DEFAULT_POLICY if row is None else RetentionPolicy(row.keep_last, row.keep_read_s, False)


def _in_release(conn: sa.Connection, version: str) -> bool:
    query = sa.select(release_members.c.release_id).where(release_members.c.version_id == version).limit(1)
    return conn.execute(query).first() is not None


def _release_names(conn: sa.Connection) -> dict[str, list[str]]:
    query = (
        sa.select(release_members.c.version_id, releases.c.name)
        .join(releases, releases.c.id == release_members.c.release_id)
        .order_by(releases.c.name)
    )
    found: dict[str, list[str]] = {}
    for row in conn.execute(query):
        found.setdefault(row.version_id, []).append(row.name)
    return found


def _upsert(conn: sa.Connection, version: str, *, newer_only: tuple[str, ...] = (), **values: Any) -> None:
    """Insert or update the version's lifecycle row (one statement: concurrent writers of the
    same row, such as two servers recording reads, never collide on the key). Columns in
    ``newer_only`` keep their stored value when it is later."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        insert: Any = postgresql.insert(version_lifecycle)
    elif dialect == "sqlite":
        insert = sqlite.insert(version_lifecycle)
    else:  # pragma: no cover - the catalog runs on SQLite and PostgreSQL
        raise CatalogError(f"the lifecycle tables need SQLite or PostgreSQL, not {dialect}")
    statement = insert.values(version_id=version, **values)
    updates: dict[str, Any] = {}
    for name in values:
        new = statement.excluded[name]
        if name in newer_only:
            old = version_lifecycle.c[name]
            updates[name] = sa.case((sa.or_(old.is_(None), old < new), new), else_=old)
        else:
            updates[name] = new
    conn.execute(statement.on_conflict_do_update(index_elements=[_L.version_id], set_=updates))
