"""The catalog's tables, as SQLAlchemy Core metadata.

The database schema itself is created and changed only by the Alembic migrations in
``migrations/versions``; this module describes the same tables for queries, and a test checks
that both agree. Every constraint and index is named explicitly so that migrations can refer
to them by name on every backend.

Versions are ordered by ``created_at`` and then by ``seq``, an autoincrementing integer key:
two versions created within the same clock tick still have a strict, deterministic order.
The version id the caller chooses (a uuid4 hex) is unique across datasets.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

__all__ = [
    "ACTIONS",
    "UTCDateTime",
    "JOB_STATES",
    "datasets",
    "jobs",
    "metadata",
    "pointer_history",
    "pointers",
    "versions",
]

ACTIONS = ("publish", "rollback")
_STATUSES = ("building", "verified", "published", "failed", "retired")
JOB_STATES = (
    "received",
    "unpacked",
    "validated",
    "computed",
    "verified",
    "published",
    "failed",
    "superseded",
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    PostgreSQL keeps the zone (``timestamptz``); SQLite keeps naive text, so values read from
    it are stamped UTC here rather than leaking naive datetimes to callers.
    """

    impl = sa.DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"the catalog stores timezone-aware datetimes only, got {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


metadata = sa.MetaData()

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.Integer),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_datasets"),
    sa.UniqueConstraint("name", name="uq_datasets_name"),
    sqlite_autoincrement=True,
)

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("seq", sa.Integer),
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("dataset_id", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("path", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("n_cells", sa.BigInteger, nullable=True),
    sa.Column("n_genes", sa.BigInteger, nullable=True),
    sa.Column("input_name", sa.Text, nullable=True),
    sa.Column("input_sha256", sa.String(64), nullable=True),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("info", sa.JSON, nullable=False),
    # the version the pointer named when this one began building (NULL: none); see publish()
    sa.Column("base_version", sa.String(64), nullable=True),
    sa.PrimaryKeyConstraint("seq", name="pk_versions"),
    sa.UniqueConstraint("id", name="uq_versions_id"),
    sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_versions_dataset_id"),
    sa.CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in _STATUSES) + ")", name="ck_versions_status"
    ),
    sa.Index("ix_versions_dataset_created", "dataset_id", "created_at", "seq"),
    sqlite_autoincrement=True,
)

pointers = sa.Table(
    "pointers",
    metadata,
    sa.Column("dataset_id", sa.Integer, nullable=False, autoincrement=False),
    sa.Column("version_id", sa.String(64), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("dataset_id", name="pk_pointers"),
    sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_pointers_dataset_id"),
    sa.ForeignKeyConstraint(["version_id"], ["versions.id"], name="fk_pointers_version_id"),
)

pointer_history = sa.Table(
    "pointer_history",
    metadata,
    sa.Column("id", sa.Integer),
    sa.Column("dataset_id", sa.Integer, nullable=False),
    sa.Column("from_version", sa.String(64), nullable=True),
    sa.Column("to_version", sa.String(64), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_pointer_history"),
    sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_pointer_history_dataset_id"),
    sa.CheckConstraint(
        "action IN (" + ", ".join(f"'{a}'" for a in ACTIONS) + ")",
        name="ck_pointer_history_action",
    ),
    sa.Index("ix_pointer_history_dataset", "dataset_id", "id"),
    sqlite_autoincrement=True,
)

# One row per ingest job (see ``_jobs``). ``input_key`` identifies what triggered the job (an
# inbox entry by name, size and mtime; an upload by id) so that a trigger seen twice makes one
# job; it is cleared once the watcher has moved the entry away. ``worker``/``lease_until`` is
# the claim of the process running the job: a claim that is not renewed expires, and the job
# is picked up again. ``log`` is the list of step events (start, done, retry, failed, ...);
# ``attempts`` counts the tries of the step running now (or next), each counted as it starts.
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(32), nullable=False),
    sa.Column("dataset", sa.String(255), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("step", sa.String(16), nullable=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("input_key", sa.String(1024), nullable=True),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("version_id", sa.String(64), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("progress", sa.JSON, nullable=False),
    sa.Column("log", sa.JSON, nullable=False),
    sa.Column("worker", sa.String(128), nullable=True),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    sa.UniqueConstraint("input_key", name="uq_jobs_input_key"),
    sa.CheckConstraint("state IN (" + ", ".join(f"'{s}'" for s in JOB_STATES) + ")", name="ck_jobs_state"),
    sa.Index("ix_jobs_state_created", "state", "created_at"),
    sa.Index("ix_jobs_created", "created_at"),
)
