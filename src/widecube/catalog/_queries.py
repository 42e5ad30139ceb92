"""The SQL the catalog runs: one function per statement, each on a caller's connection.

These functions neither begin nor commit transactions and apply no status rules; the
:class:`~widecube.catalog.Catalog` decides both. Keeping the statements here keeps the
catalog's logic readable and lets the hot-path query be built once, at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from widecube.catalog._records import DatasetRecord, VersionRecord, VersionStatus
from widecube.catalog._schema import datasets, pointer_history, pointers, versions
from widecube.errors import DatasetNotFound, VersionNotFound

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
    _V.base_version.label("base"),
)
_NEWEST_FIRST = (_V.created_at.desc(), _V.seq.desc())
_VERSIONS = sa.select(_D.name.label("dataset"), *_FIELDS).select_from(
    versions.join(datasets, _V.dataset_id == _D.id)
)
# The API's hot path: one three-way join along a unique index and two primary keys.
_CURRENT = (
    sa.select(_D.name.label("dataset"), *_FIELDS)
    .select_from(pointers.join(datasets, _P.dataset_id == _D.id).join(versions, _P.version_id == _V.id))
    .where(_D.name == sa.bindparam("name"))
)
_DATASETS = (
    sa.select(_D.name.label("dataset"), _D.created_at.label("dataset_created"), *_FIELDS)
    .select_from(
        datasets.outerjoin(pointers, _P.dataset_id == _D.id).outerjoin(versions, _P.version_id == _V.id)
    )
    .order_by(_D.name)
)


@dataclass(frozen=True)
class VersionRef:
    """The columns of a version that state changes need: its key, id, status and age."""

    seq: int
    id: str
    status: VersionStatus
    created_at: datetime


def ensure_dataset(conn: sa.Connection, dataset: str, now: datetime) -> int:
    """Lock the dataset's row, creating it first if needed; return its id."""
    found = conn.execute(sa.select(_D.id).where(_D.name == dataset).with_for_update()).first()
    if found is not None:
        return int(found.id)
    try:
        with conn.begin_nested():
            key = conn.execute(sa.insert(datasets).values(name=dataset, created_at=now))
            assert key.inserted_primary_key is not None
            return int(key.inserted_primary_key[0])
    except IntegrityError:
        # Another writer created it between our SELECT and INSERT; use theirs.
        return lock_dataset(conn, dataset)


def lock_dataset(conn: sa.Connection, dataset: str) -> int:
    """Lock the dataset's row for this transaction (PostgreSQL); return its id."""
    found = conn.execute(sa.select(_D.id).where(_D.name == dataset).with_for_update()).first()
    if found is None:
        raise DatasetNotFound(f"no dataset named {dataset!r} in the catalog")
    return int(found.id)


def dataset_id(conn: sa.Connection, dataset: str) -> int:
    """The dataset's id (no lock); :class:`DatasetNotFound` if there is none."""
    found = conn.execute(sa.select(_D.id).where(_D.name == dataset)).first()
    if found is None:
        raise DatasetNotFound(f"no dataset named {dataset!r} in the catalog")
    return int(found.id)


def pointer(conn: sa.Connection, dataset_id: int) -> str | None:
    """The version id the dataset's pointer names, or None if nothing was ever published."""
    found = conn.execute(sa.select(_P.version_id).where(_P.dataset_id == dataset_id)).first()
    return None if found is None else str(found.version_id)


def version_ref(conn: sa.Connection, dataset: str, dataset_id: int, version: str) -> VersionRef:
    """The version ``version`` of the dataset; :class:`VersionNotFound` if it has none."""
    query = sa.select(_V.seq, _V.id, _V.status, _V.created_at).where(
        _V.dataset_id == dataset_id, _V.id == version
    )
    found = conn.execute(query).first()
    if found is None:
        raise VersionNotFound(f"dataset {dataset!r} has no version {version!r}")
    return _ref(*found)


def live_before(conn: sa.Connection, dataset_id: int, current: str) -> str | None:
    """The version that was live just before ``current`` last went live, read from the pointer
    history (its last move onto ``current``); None if ``current`` was the first."""
    _H = pointer_history.c
    query = (
        sa.select(_H.from_version)
        .where(_H.dataset_id == dataset_id, _H.to_version == current)
        .order_by(_H.id.desc())
        .limit(1)
    )
    found = conn.execute(query).first()
    return None if found is None or found.from_version is None else str(found.from_version)


def version_exists(conn: sa.Connection, version: str) -> bool:
    """Whether any dataset has a version with this id (ids are unique catalog-wide)."""
    return conn.execute(sa.select(_V.seq).where(_V.id == version)).first() is not None


def insert_version(conn: sa.Connection, dataset_id: int, version: str, **values: Any) -> None:
    """Add a version row; ``values`` are its other columns."""
    conn.execute(sa.insert(versions).values(id=version, dataset_id=dataset_id, **values))


def set_status(
    conn: sa.Connection, version: str, status: VersionStatus, now: datetime, **values: Any
) -> None:
    """Set a version's status (and ``values``), stamping ``updated_at``."""
    statement = sa.update(versions).where(_V.id == version)
    conn.execute(statement.values(status=status.value, updated_at=now, **values))


def set_progress(conn: sa.Connection, version: str, info: dict[str, Any], now: datetime) -> int:
    """Replace a BUILDING version's ``info`` (its progress); 0 rows when it is not building."""
    statement = sa.update(versions).where(_V.id == version, _V.status == VersionStatus.BUILDING.value)
    return int(conn.execute(statement.values(info=info, updated_at=now)).rowcount)


def set_pointer(
    conn: sa.Connection, dataset_id: int, previous: str | None, version: str, now: datetime
) -> None:
    """Point the dataset at ``version``; ``previous`` is what it named (None: no pointer yet)."""
    if previous is None:
        values = dict(dataset_id=dataset_id, version_id=version, updated_at=now)
        conn.execute(sa.insert(pointers).values(**values))
    else:
        moved = sa.update(pointers).where(_P.dataset_id == dataset_id)
        conn.execute(moved.values(version_id=version, updated_at=now))


def append_history(
    conn: sa.Connection,
    dataset_id: int,
    previous: str | None,
    version: str,
    action: str,
    now: datetime,
) -> None:
    """Record one pointer move in the audit table."""
    row = dict(dataset_id=dataset_id, from_version=previous, to_version=version, action=action)
    conn.execute(sa.insert(pointer_history).values(at=now, **row))


def get_version(conn: sa.Connection, dataset: str, version: str) -> VersionRecord:
    """The full record of one version; :class:`VersionNotFound` naming both if absent."""
    found = conn.execute(_VERSIONS.where(_D.name == dataset, _V.id == version)).mappings().first()
    if found is None:
        raise VersionNotFound(f"dataset {dataset!r} has no version {version!r}")
    return _record(found)


def current(conn: sa.Connection, dataset: str) -> VersionRecord | None:
    """The version the dataset's pointer names, in one SELECT; None if none."""
    found = conn.execute(_CURRENT, {"name": dataset}).mappings().first()
    return None if found is None else _record(found)


def list_versions(conn: sa.Connection, dataset: str) -> list[VersionRecord]:
    """Every version of the dataset, newest first; :class:`DatasetNotFound` if unknown."""
    if conn.execute(sa.select(_D.id).where(_D.name == dataset)).first() is None:
        raise DatasetNotFound(f"no dataset named {dataset!r} in the catalog")
    rows = conn.execute(_VERSIONS.where(_D.name == dataset).order_by(*_NEWEST_FIRST))
    return [_record(row) for row in rows.mappings()]


def list_datasets(conn: sa.Connection) -> list[DatasetRecord]:
    """Every dataset by name, with the version its pointer names (None if nothing)."""
    return [
        DatasetRecord(
            name=row["dataset"],
            created=row["dataset_created"],
            current=None if row["version"] is None else _record(row),
        )
        for row in conn.execute(_DATASETS).mappings()
    ]


def _ref(seq: int, id: str, status: str, created_at: datetime) -> VersionRef:
    return VersionRef(seq, id, VersionStatus(status), created_at)


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
        base=row["base"],
    )
