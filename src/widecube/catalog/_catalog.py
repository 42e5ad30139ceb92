"""The catalog: datasets, their versions, and the pointer that says which version is live.

A snapshot folder is immutable once written; what changes is the catalog. Publishing or
rolling back is one transaction that moves the dataset's pointer, retires the version it
named, publishes the new one and appends a row to the pointer history, so a reader sees
either the old state or the new one, never a mix.

Every write transaction first locks the dataset's row (``SELECT ... FOR UPDATE`` on
PostgreSQL; on SQLite every write transaction begins with ``BEGIN IMMEDIATE``, see
``_engine``), so writers of one dataset serialize and each re-reads the state it changes
after taking the lock. Reads take no lock.

Example::

    >>> catalog = Catalog("sqlite:////srv/widecube/catalog.sqlite")
    >>> v = uuid.uuid4().hex
    >>> _ = catalog.create_version("pbmc", v, input_name="pbmc.h5ad", input_sha256=None,
    ...                            params={"groupby": ["cell_type"]})
    >>> _ = catalog.mark_verified("pbmc", v, path=f"pbmc/{v}", n_cells=3, n_genes=2, info={})
    >>> catalog.publish("pbmc", v).status
    <VersionStatus.PUBLISHED: 'published'>
    >>> catalog.current("pbmc").path == f"pbmc/{v}"
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from widecube.catalog import _queries as q
from widecube.catalog._audit import Audit
from widecube.catalog._changes import ChangeToken
from widecube.catalog._descriptions import MetadataStore
from widecube.catalog._engine import dumps_json, make_engine, read_options
from widecube.catalog._grants import Access
from widecube.catalog._jobstore import Jobs
from widecube.catalog._lifecycle import Lifecycle
from widecube.catalog._migrate import upgrade
from widecube.catalog._pointer import move_pointer
from widecube.catalog._records import (
    DatasetRecord,
    VersionRecord,
    VersionStatus,
    check_transition,
)
from widecube.catalog._releases import Releases
from widecube.errors import CatalogError, DatasetNotFound

__all__ = ["Catalog", "PointerMoved"]

_REMEMBER = 4096  # remembered lookups (dataset pointers, pinned versions) before starting afresh


class PointerMoved(CatalogError):
    """A job's version was not published: the dataset's pointer moved since it began building.

    The version stays VERIFIED (an admin may still publish it); ``current`` is the version
    live instead, ``base`` the one that was live when the job began (None: nothing).
    """

    def __init__(self, dataset: str, version: str, base: str | None, current: str | None) -> None:
        self.dataset, self.version, self.base, self.current = dataset, version, base, current
        started = f"when version {base} was live" if base is not None else "when no version was live"
        now = f"version {current} is live" if current is not None else "no version is live"
        super().__init__(
            f"version {version} of dataset {dataset!r} was not published: {now} now, but the job "
            f"building it started {started}; it stays verified, not live (publish it with "
            f"`widecube rollback {dataset} --to {version}` if it should be)"
        )


class Catalog:
    """The catalog at a SQLAlchemy URL (SQLite file or PostgreSQL), schema kept at head.

    Opening a catalog runs the migrations, which is safe from many processes at once.
    Instances are thread-safe; use one per process and :meth:`close` it when done.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self._engine = make_engine(url)
        except SQLAlchemyError as exc:
            raise CatalogError(f"cannot open the catalog at {_safe(url)}: {exc}") from exc
        self._read_options = read_options(self._engine)
        try:
            upgrade(self._engine)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise CatalogError(f"cannot open the catalog at {_safe(url)}: {exc}") from exc
        self.jobs = Jobs(self._write, self._read)
        """The ingest jobs (see ``_jobstore``): create, claim, advance, list."""
        self._changes = ChangeToken(self._engine)
        self.access = Access(self._write, self._read, self._changes)
        """Tokens, grants, groups and each dataset's visibility and classification."""
        self.audit = Audit(self._write, self._read)
        """The hash-chained audit log."""
        self.metadata = MetadataStore(self._write, self._read, self._changes, self._engine.dialect.name)
        """Datasets' descriptions (title, organism, tags, ...) and full-text search over them."""
        self.lifecycle = Lifecycle(self._write, self._read)
        """Retention policies, pins, reads, removal, cold storage and corruption of versions."""
        self.releases = Releases(self._write, self._read)
        """Named, immutable sets of dataset versions; several pointers moved at once."""
        self._remembered: dict[tuple[str, ...], tuple[int, VersionRecord]] = {}
        self._listed: tuple[int, list[DatasetRecord]] | None = None

    def close(self) -> None:
        """Close every pooled connection (and, on PostgreSQL, stop listening for changes)."""
        self._changes.close()
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({_safe(self.url)!r})"

    # -- state changes -------------------------------------------------------------------

    def create_version(
        self,
        dataset: str,
        version: str,
        *,
        input_name: str | None,
        input_sha256: str | None,
        params: dict[str, Any],
    ) -> VersionRecord:
        """Record a new version (status BUILDING), creating the dataset on first use.

        The version live now is recorded as its ``base``: see :meth:`publish`'s ``unless_moved``.
        """
        _check_json(dataset, version, "params", params)
        now = _now()
        refused = f"version {version} already exists (creating it for dataset {dataset!r})"
        with self._write() as conn:
            dataset_id = q.ensure_dataset(conn, dataset, now)
            if q.version_exists(conn, version):
                raise CatalogError(refused)
            try:
                q.insert_version(
                    conn,
                    dataset_id,
                    version,
                    status=VersionStatus.BUILDING.value,
                    created_at=now,
                    updated_at=now,
                    input_name=input_name,
                    input_sha256=input_sha256,
                    params=params,
                    info={},
                    base_version=q.pointer(conn, dataset_id),
                )
            except IntegrityError as exc:
                raise CatalogError(refused) from exc
            return q.get_version(conn, dataset, version)

    def mark_verified(
        self,
        dataset: str,
        version: str,
        *,
        path: str,
        n_cells: int,
        n_genes: int,
        info: dict[str, Any],
    ) -> VersionRecord:
        """Record that a BUILDING version's snapshot at ``path`` passed verification."""
        _check_json(dataset, version, "info", info)
        values = dict(path=path, n_cells=int(n_cells), n_genes=int(n_genes), info=info)
        return self._transition(dataset, version, VersionStatus.VERIFIED, values)

    def report_progress(self, dataset: str, version: str, progress: dict[str, Any]) -> None:
        """Save a BUILDING version's progress (``{"step": ..., "fraction": ...}``) in its
        ``info`` so that the API can show it; ignored once the version left BUILDING."""
        info = {"progress": progress}
        _check_json(dataset, version, "info", info)
        with self._write() as conn:
            q.set_progress(conn, version, info, _now())

    def mark_failed(self, dataset: str, version: str, reason: str) -> VersionRecord:
        """Record that a BUILDING or VERIFIED version failed; its path is forgotten.

        The pointer is not touched: a published version never fails, it is only retired.
        """
        values = dict(path=None, reason=reason)
        return self._transition(dataset, version, VersionStatus.FAILED, values)

    def publish(self, dataset: str, version: str, *, unless_moved: bool = False) -> VersionRecord:
        """Make a VERIFIED (or RETIRED) version the live one, retiring the previous one.

        With ``unless_moved`` this is a compare-and-swap, as an ingest job publishes: the
        pointer moves only if it still names the version's ``base`` (what was live when the
        version began building). Otherwise the version stays VERIFIED, its ``reason`` says
        which version is live instead, and :class:`PointerMoved` is raised. The comparison
        and the move are one transaction under the dataset's row lock, so of two jobs that
        began from the same pointer exactly one publishes. Without it (an admin's publish or
        rollback) the pointer moves whatever it names.
        """
        moved: PointerMoved | None = None
        with self._write() as conn:
            dataset_id = q.lock_dataset(conn, dataset)
            target = q.version_ref(conn, dataset, dataset_id, version)
            if unless_moved:
                base = q.get_version(conn, dataset, version).base
                current = q.pointer(conn, dataset_id)
                if current != base and target.status == VersionStatus.VERIFIED:
                    moved = PointerMoved(dataset, version, base, current)
                    q.set_status(conn, version, VersionStatus.VERIFIED, _now(), reason=str(moved))
            if moved is None:
                self._move_pointer(conn, dataset, dataset_id, target, "publish")
            record = q.get_version(conn, dataset, version)
        if moved is not None:  # raised after the commit, which keeps the reason
            raise moved
        return record

    def rollback(self, dataset: str, to: str | None = None) -> VersionRecord:
        """Publish an earlier version again: ``to``, or the version that was live before the
        current one went live (the pointer history's last move onto it, whether that was a
        publish, a rollback or a roll forward).

        ``to`` may name any RETIRED or VERIFIED version of the dataset.

        Example::

            >>> catalog.rollback("pbmc").version  # the version published before the current
            'f3c1...'
        """
        with self._write() as conn:
            dataset_id = q.lock_dataset(conn, dataset)
            current = q.pointer(conn, dataset_id)
            if current is None:
                raise CatalogError(f"cannot roll back dataset {dataset!r}: nothing is published")
            if to is not None:
                target = q.version_ref(conn, dataset, dataset_id, to)
            else:
                before = q.live_before(conn, dataset_id, current)
                if before is None:
                    raise CatalogError(
                        f"cannot roll back dataset {dataset!r}: no version was live before the "
                        f"current version {current}"
                    )
                target = q.version_ref(conn, dataset, dataset_id, before)
            self._move_pointer(conn, dataset, dataset_id, target, "rollback")
            return q.get_version(conn, dataset, target.id)

    # -- reads ---------------------------------------------------------------------------

    def current(self, dataset: str) -> VersionRecord:
        """The published version of ``dataset``; the API calls this on every request.

        One SELECT, skipped while the catalog is unchanged (see :meth:`_unchanged`). On
        PostgreSQL "unchanged" is learnt by LISTEN/NOTIFY, so another process's publish is
        seen a few milliseconds after it returns, at most ``_changes.FALLBACK_S`` (5 s) after.
        """

        def load() -> VersionRecord:
            with self._read() as conn:
                record = q.current(conn, dataset)
            if record is None:
                raise DatasetNotFound(f"no published dataset named {dataset!r} in the catalog")
            return record

        return self._unchanged(("current", dataset), load)

    def get_version(self, dataset: str, version: str) -> VersionRecord:
        """One version of ``dataset``, whatever its status (a pinned request's lookup; its
        SELECT is skipped while the catalog is unchanged)."""

        def load() -> VersionRecord:
            with self._read() as conn:
                return q.get_version(conn, dataset, version)

        return self._unchanged(("version", dataset, version), load)

    def _unchanged(self, key: tuple[str, ...], load: Callable[[], VersionRecord]) -> VersionRecord:
        """``load()``, or its earlier answer if the change token (``_changes``) says nothing was
        committed since. The token is read *before* loading, so a commit racing with the load
        only makes the next call load again. Errors (unknown names) are never remembered."""
        token = self._changes.read()
        if token is not None:
            hit = self._remembered.get(key)
            if hit is not None and hit[0] == token:
                return hit[1]
        record = load()
        if token is not None:
            if len(self._remembered) >= _REMEMBER:
                self._remembered.clear()
            self._remembered[key] = (token, record)
        return record

    def live_before(self, dataset: str) -> str | None:
        """The version a plain :meth:`rollback` of ``dataset`` would make live (None: none)."""
        with self._read() as conn:
            dataset_id = q.dataset_id(conn, dataset)
            current = q.pointer(conn, dataset_id)
            return None if current is None else q.live_before(conn, dataset_id, current)

    def versions(self, dataset: str) -> list[VersionRecord]:
        """Every version of ``dataset``, newest first."""
        with self._read() as conn:
            return q.list_versions(conn, dataset)

    def datasets(self) -> list[DatasetRecord]:
        """Every dataset, by name, with its published version (None if nothing is).

        One SELECT, skipped while the catalog is unchanged (as :meth:`current`): listings,
        searches and cross-dataset queries ask on every request."""
        token = self._changes.read()
        listed = self._listed
        if token is not None and listed is not None and listed[0] == token:
            return list(listed[1])
        with self._read() as conn:
            found = q.list_datasets(conn)
        if token is not None:
            self._listed = (token, found)
        return list(found)

    # -- transactions --------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._engine.begin() as conn:
            yield conn
            self._changes.announce(conn)  # PostgreSQL: NOTIFY the other processes, on commit
        self._changes.committed()  # and this one at once: it reads its own writes

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._engine.connect() as conn:
            yield conn.execution_options(**self._read_options)

    def _transition(
        self, dataset: str, version: str, target: VersionStatus, values: dict[str, Any]
    ) -> VersionRecord:
        with self._write() as conn:
            dataset_id = q.lock_dataset(conn, dataset)
            ref = q.version_ref(conn, dataset, dataset_id, version)
            check_transition(dataset, version, ref.status, target)
            q.set_status(conn, version, target, _now(), **values)
            return q.get_version(conn, dataset, version)

    @staticmethod
    def _move_pointer(
        conn: sa.Connection, dataset: str, dataset_id: int, target: q.VersionRef, action: str
    ) -> None:
        """Retire the current version, publish ``target``, move the pointer, log the move
        (``_pointer.move_pointer``). The caller holds the dataset's lock."""
        move_pointer(conn, dataset, dataset_id, target, action, _now())


def _check_json(dataset: str, version: str, what: str, value: dict[str, Any]) -> None:
    """Refuse what the JSON columns cannot store, naming the version, before any SQL runs."""
    try:
        dumps_json(value)
    except (TypeError, ValueError) as exc:
        raise CatalogError(
            f"{what} of version {version} of dataset {dataset!r} is not plain JSON: {exc}"
        ) from exc


def _now() -> datetime:
    return datetime.now(UTC)


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"
