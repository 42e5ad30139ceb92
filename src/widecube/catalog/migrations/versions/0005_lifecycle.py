"""A version's life after publish: retention, removal, cold storage, corruption, releases.

* ``versions.status`` may also be ``removed`` (its snapshot was garbage-collected; the row
  stays, with when and by which policy), ``archived`` (its snapshot lives in cold storage)
  and ``corrupt`` (a scrub found a file that no longer matches the manifest).
* ``version_lifecycle``: one row per version that has lifecycle facts (pinned, last read,
  bytes, cold location, when and why its state changed, hot bytes waiting to be purged).
* ``retention``: a dataset's retention policy when it is not the default.
* ``releases`` and ``release_members``: named, immutable sets of dataset versions.

SQLite cannot alter a CHECK constraint, so ``versions`` is recreated there (Alembic's batch
mode with ``copy_from``). ``pointers`` references ``versions`` and SQLite enforces foreign
keys inside the migration's transaction (``PRAGMA foreign_keys`` cannot change there), so its
rows are set aside while the old table is dropped and put back after.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Written out by hand to match ``widecube.catalog._schema``; a test compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = ("building", "verified", "published", "failed", "retired")
_NEW = (*_OLD, "removed", "archived", "corrupt")


def _check(statuses: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _versions() -> sa.Table:
    """The versions table as 0003 left it, without its status check (see 0003's ``_jobs``)."""
    return sa.Table(
        "versions",
        sa.MetaData(),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("dataset_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("path", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("n_cells", sa.BigInteger, nullable=True),
        sa.Column("n_genes", sa.BigInteger, nullable=True),
        sa.Column("input_name", sa.Text, nullable=True),
        sa.Column("input_sha256", sa.String(64), nullable=True),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("info", sa.JSON, nullable=False),
        sa.Column("base_version", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_versions"),
        sa.UniqueConstraint("id", name="uq_versions_id"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_versions_dataset_id"),
        sa.Index("ix_versions_dataset_created", "dataset_id", "created_at", "seq"),
        sqlite_autoincrement=True,
    )


def _set_status_check(statuses: tuple[str, ...]) -> None:
    if op.get_context().dialect.name != "sqlite":
        op.drop_constraint("ck_versions_status", "versions", type_="check")
        op.create_check_constraint("ck_versions_status", "versions", _check(statuses))
        return
    conn = op.get_bind()
    pointers = sa.table("pointers", sa.column("dataset_id"), sa.column("version_id"), sa.column("updated_at"))
    kept = [dict(row) for row in conn.execute(sa.select(pointers)).mappings()]
    conn.execute(sa.delete(pointers))
    with op.batch_alter_table(
        "versions",
        copy_from=_versions(),
        recreate="always",
        table_kwargs={"sqlite_autoincrement": True},
    ) as batch:
        batch.create_check_constraint("ck_versions_status", _check(statuses))
    if kept:
        conn.execute(sa.insert(pointers), kept)


def upgrade() -> None:
    _set_status_check(_NEW)
    op.create_table(
        "version_lifecycle",
        sa.Column("version_id", sa.String(64), nullable=False),
        sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
        _timestamp("last_read_at", nullable=True),
        sa.Column("bytes", sa.BigInteger, nullable=True),
        sa.Column("archive_url", sa.Text, nullable=True),
        _timestamp("changed_at", nullable=True),
        sa.Column("changed_by", sa.Text, nullable=True),
        sa.Column("purge_path", sa.Text, nullable=True),
        _timestamp("purge_due", nullable=True),
        sa.PrimaryKeyConstraint("version_id", name="pk_version_lifecycle"),
        sa.ForeignKeyConstraint(["version_id"], ["versions.id"], name="fk_version_lifecycle_version_id"),
    )
    op.create_table(
        "retention",
        sa.Column("dataset_id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("keep_last", sa.Integer, nullable=False),
        sa.Column("keep_read_s", sa.Integer, nullable=False),
        _timestamp("updated_at"),
        sa.Column("updated_by", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("dataset_id", name="pk_retention"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_retention_dataset_id"),
        sa.CheckConstraint("keep_last >= 0 AND keep_read_s >= 0", name="ck_retention_bounds"),
    )
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        _timestamp("created_at"),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_releases"),
        sa.UniqueConstraint("name", name="uq_releases_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "release_members",
        sa.Column("release_id", sa.Integer, nullable=False),
        sa.Column("dataset_id", sa.Integer, nullable=False),
        sa.Column("version_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("release_id", "dataset_id", name="pk_release_members"),
        sa.ForeignKeyConstraint(["release_id"], ["releases.id"], name="fk_release_members_release_id"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_release_members_dataset_id"),
        sa.ForeignKeyConstraint(["version_id"], ["versions.id"], name="fk_release_members_version_id"),
    )
    op.create_index("ix_release_members_version", "release_members", ["version_id"])


def downgrade() -> None:
    op.drop_index("ix_release_members_version", table_name="release_members")
    for table in ("release_members", "releases", "retention", "version_lifecycle"):
        op.drop_table(table)
    op.execute("UPDATE versions SET status = 'failed', path = NULL WHERE status = 'removed'")
    op.execute(
        "UPDATE versions SET status = CASE WHEN id IN (SELECT version_id FROM pointers) "
        "THEN 'published' ELSE 'retired' END WHERE status IN ('archived', 'corrupt')"
    )
    _set_status_check(_OLD)
