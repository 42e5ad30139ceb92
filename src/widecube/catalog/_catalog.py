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

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from widecube.catalog._engine import READ_ONLY, make_engine
from widecube.catalog._migrate import upgrade
from widecube.catalog._records import (
    DatasetRecord,
    VersionRecord,
    VersionStatus,
    check_transition,
)
from widecube.catalog._schema import datasets, pointer_history, pointers, versions
from widecube.errors import CatalogError, DatasetNotFound, VersionNotFound

__all__ = ["Catalog"]

_V = versions.c
_D = datasets.c
_P = pointers.c
_FIELDS = (
    _V.id.label("version"),
    _V.status,
    _V.created_at.label("created"),
    _V.updated_at.label("updated"),
    _V.path,
    _V.reason,
    _V.n_cells,
    _V.n_genes,
    _V.input_name,
    _V.input_sha256,
    _V.params,
    _V.info,
)
_NEWEST_FIRST = (_V.created_at.desc(), _V.seq.desc())
_VERSIONS = sa.select(_D.name.label("dataset"), *_FIELDS).select_from(
    versions.join(datasets, _V.dataset_id == _D.id)
)
# The API's hot path: one indexed three-way join, built once.
_CURRENT = (
    sa.select(_D.name.label("dataset"), *_FIELDS)
    .select_from(
        pointers.join(datasets, _P.dataset_id == _D.id).join(versions, _P.version_id == _V.id)
    )
    .where(_D.name == sa.bindparam("name"))
)
_DATASETS = (
    sa.select(_D.name.label("dataset"), _D.created_at.label("dataset_created"), *_FIELDS)
    .select_from(
        datasets.outerjoin(pointers, _P.dataset_id == _D.id).outerjoin(
            versions, _P.version_id == _V.id
        )
    )
    .order_by(_D.name)
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
        try:
            upgrade(self._engine)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise CatalogError(f"cannot open the catalog at {_safe(url)}: {exc}") from exc

    def close(self) -> None:
        """Close every pooled connection."""
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
        """Record a new version (status BUILDING), creating the dataset on first use."""
        now = _now()
        with self._write() as conn:
            dataset_id = self._ensure_dataset(conn, dataset, now)
            exists = conn.execute(sa.select(_V.seq).where(_V.id == version)).first()
            if exists is not None:
                raise CatalogError(
                    f"version {version} already exists (creating it for {dataset!r})"
                )
            values = dict(
                id=version,
                dataset_id=dataset_id,
                status=VersionStatus.BUILDING.value,
                created_at=now,
                updated_at=now,
                input_name=input_name,
                input_sha256=input_sha256,
                params=params,
                info={},
            )
            try:
                conn.execute(sa.insert(versions).values(**values))
            except IntegrityError as exc:
                raise CatalogError(f"version {version} already exists ({dataset!r})") from exc
            return self._get(conn, dataset, version)

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
        values = dict(path=path, n_cells=int(n_cells), n_genes=int(n_genes), info=info)
        return self._transition(dataset, version, VersionStatus.VERIFIED, values)

    def mark_failed(self, dataset: str, version: str, reason: str) -> VersionRecord:
        """Record that a BUILDING or VERIFIED version failed; its path is forgotten.

        The pointer is not touched: a published version never fails, it is only retired.
        """
        values = dict(path=None, reason=reason)
        return self._transition(dataset, version, VersionStatus.FAILED, values)

    def publish(self, dataset: str, version: str) -> VersionRecord:
        """Make a VERIFIED (or RETIRED) version the live one, retiring the previous one."""
        with self._write() as conn:
            dataset_id = self._lock_dataset(conn, dataset)
            current = self._pointer(conn, dataset_id)
            target = self._row(conn, dataset, dataset_id, version)
            self._move_pointer(conn, dataset, dataset_id, current, target, "publish")
            return self._get(conn, dataset, version)

    def rollback(self, dataset: str, to: str | None = None) -> VersionRecord:
        """Publish an earlier version again: ``to``, or the newest retired one before the current.

        Example::

            >>> catalog.rollback("pbmc").version  # the version published before the current
            'f3c1...'
        """
        with self._write() as conn:
            dataset_id = self._lock_dataset(conn, dataset)
            current = self._pointer(conn, dataset_id)
            if current is None:
                raise CatalogError(f"cannot roll back dataset {dataset!r}: nothing is published")
            if to is None:
                target = self._previous(
                    conn, dataset_id, self._row(conn, dataset, dataset_id, current)
                )
                if target is None:
                    raise CatalogError(
                        f"cannot roll back dataset {dataset!r}: no retired version is older "
                        f"than the current version {current}"
                    )
            else:
                target = self._row(conn, dataset, dataset_id, to)
            self._move_pointer(conn, dataset, dataset_id, current, target, "rollback")
            return self._get(conn, dataset, target.id)

    # -- reads ---------------------------------------------------------------------------

    def current(self, dataset: str) -> VersionRecord:
        """The published version of ``dataset`` (one SELECT; the API calls this per request)."""
        with self._read() as conn:
            row = conn.execute(_CURRENT, {"name": dataset}).mappings().first()
        if row is None:
            raise DatasetNotFound(f"no published dataset named {dataset!r} in the catalog")
        return _record(row)

    def get_version(self, dataset: str, version: str) -> VersionRecord:
        """One version of ``dataset``, whatever its status."""
        with self._read() as conn:
            return self._get(conn, dataset, version)

    def versions(self, dataset: str) -> list[VersionRecord]:
        """Every version of ``dataset``, newest first."""
        with self._read() as conn:
            if conn.execute(sa.select(_D.id).where(_D.name == dataset)).first() is None:
                raise DatasetNotFound(f"no dataset named {dataset!r} in the catalog")
            rows = conn.execute(_VERSIONS.where(_D.name == dataset).order_by(*_NEWEST_FIRST))
            return [_record(row) for row in rows.mappings()]

    def datasets(self) -> list[DatasetRecord]:
        """Every dataset, by name, with its published version (None if nothing is)."""
        with self._read() as conn:
            rows = conn.execute(_DATASETS).mappings().all()
        return [
            DatasetRecord(
                name=row["dataset"],
                created=row["dataset_created"],
                current=None if row["version"] is None else _record(row),
            )
            for row in rows
        ]

    # -- helpers -------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._engine.connect() as conn:
            yield conn.execution_options(**{READ_ONLY: True})

    def _transition(
        self, dataset: str, version: str, target: VersionStatus, values: dict[str, Any]
    ) -> VersionRecord:
        with self._write() as conn:
            dataset_id = self._lock_dataset(conn, dataset)
            row = self._row(conn, dataset, dataset_id, version)
            check_transition(dataset, version, VersionStatus(row.status), target)
            conn.execute(
                sa.update(versions)
                .where(_V.seq == row.seq)
                .values(status=target.value, updated_at=_now(), **values)
            )
            return self._get(conn, dataset, version)

    def _move_pointer(
        self,
        conn: sa.Connection,
        dataset: str,
        dataset_id: int,
        current: str | None,
        target: sa.Row[Any],
        action: str,
    ) -> None:
        check_transition(dataset, target.id, VersionStatus(target.status), VersionStatus.PUBLISHED)
        now = _now()
        if current is not None:  # never target.id: that one is published, refused above
            conn.execute(
                sa.update(versions)
                .where(_V.id == current)
                .values(status=VersionStatus.RETIRED.value, updated_at=now)
            )
        conn.execute(
            sa.update(versions)
            .where(_V.seq == target.seq)
            .values(status=VersionStatus.PUBLISHED.value, updated_at=now)
        )
        if current is None:
            conn.execute(
                sa.insert(pointers).values(
                    dataset_id=dataset_id, version_id=target.id, updated_at=now
                )
            )
        else:
            conn.execute(
                sa.update(pointers)
                .where(_P.dataset_id == dataset_id)
                .values(version_id=target.id, updated_at=now)
            )
        conn.execute(
            sa.insert(pointer_history).values(
                dataset_id=dataset_id,
                from_version=current,
                to_version=target.id,
                action=action,
                at=now,
            )
        )

    @staticmethod
    def _ensure_dataset(conn: sa.Connection, dataset: str, now: datetime) -> int:
        found = conn.execute(sa.select(_D.id).where(_D.name == dataset).with_for_update()).first()
        if found is not None:
            return int(found.id)
        try:
            with conn.begin_nested():
                result = conn.execute(sa.insert(datasets).values(name=dataset, created_at=now))
                return int(result.inserted_primary_key[0])
        except IntegrityError:
            # Another writer created it between our SELECT and INSERT; use theirs.
            return Catalog._lock_dataset(conn, dataset)

    @staticmethod
    def _lock_dataset(conn: sa.Connection, dataset: str) -> int:
        found = conn.execute(sa.select(_D.id).where(_D.name == dataset).with_for_update()).first()
        if found is None:
            raise DatasetNotFound(f"no dataset named {dataset!r} in the catalog")
        return int(found.id)

    @staticmethod
    def _pointer(conn: sa.Connection, dataset_id: int) -> str | None:
        found = conn.execute(sa.select(_P.version_id).where(_P.dataset_id == dataset_id)).first()
        return None if found is None else str(found.version_id)

    @staticmethod
    def _row(conn: sa.Connection, dataset: str, dataset_id: int, version: str) -> sa.Row[Any]:
        query = sa.select(_V.seq, _V.id, _V.status, _V.created_at).where(
            _V.dataset_id == dataset_id, _V.id == version
        )
        found = conn.execute(query).first()
        if found is None:
            raise VersionNotFound(f"dataset {dataset!r} has no version {version!r}")
        return found

    @staticmethod
    def _previous(conn: sa.Connection, dataset_id: int, current: sa.Row[Any]) -> sa.Row[Any] | None:
        """The newest RETIRED version created before ``current`` (ties broken by ``seq``)."""
        earlier = sa.or_(
            _V.created_at < current.created_at,
            sa.and_(_V.created_at == current.created_at, _V.seq < current.seq),
        )
        query = (
            sa.select(_V.seq, _V.id, _V.status, _V.created_at)
            .where(_V.dataset_id == dataset_id, _V.status == VersionStatus.RETIRED.value, earlier)
            .order_by(*_NEWEST_FIRST)
            .limit(1)
        )
        return conn.execute(query).first()

    @staticmethod
    def _get(conn: sa.Connection, dataset: str, version: str) -> VersionRecord:
        query = _VERSIONS.where(_D.name == dataset, _V.id == version)
        row = conn.execute(query).mappings().first()
        if row is None:
            raise VersionNotFound(f"dataset {dataset!r} has no version {version!r}")
        return _record(row)


def _record(row: sa.RowMapping) -> VersionRecord:
    return VersionRecord(
        dataset=row["dataset"],
        version=row["version"],
        status=VersionStatus(row["status"]),
        created=row["created"],
        updated=row["updated"],
        path=row["path"],
        reason=row["reason"],
        n_cells=row["n_cells"],
        n_genes=row["n_genes"],
        input_name=row["input_name"],
        input_sha256=row["input_sha256"],
        params=row["params"],
        info=row["info"],
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"
