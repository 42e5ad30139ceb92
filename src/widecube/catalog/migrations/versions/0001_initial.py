"""The initial catalog: datasets, versions, current-version pointers and their history.

Revision ID: 0001
Revises:
Create Date: 2026-01-01

Written out by hand to match ``widecube.catalog._schema``; a test compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUS_CHECK = "status IN ('building', 'verified', 'published', 'failed', 'retired')"
_ACTION_CHECK = "action IN ('publish', 'rollback')"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("name", name="uq_datasets_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "versions",
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
        sa.PrimaryKeyConstraint("seq", name="pk_versions"),
        sa.UniqueConstraint("id", name="uq_versions_id"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_versions_dataset_id"),
        sa.CheckConstraint(_STATUS_CHECK, name="ck_versions_status"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_versions_dataset_created", "versions", ["dataset_id", "created_at", "seq"])
    op.create_table(
        "pointers",
        sa.Column("dataset_id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("version_id", sa.String(64), nullable=False),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("dataset_id", name="pk_pointers"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_pointers_dataset_id"),
        sa.ForeignKeyConstraint(["version_id"], ["versions.id"], name="fk_pointers_version_id"),
    )
    op.create_table(
        "pointer_history",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("dataset_id", sa.Integer, nullable=False),
        sa.Column("from_version", sa.String(64), nullable=True),
        sa.Column("to_version", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        _timestamp("at"),
        sa.PrimaryKeyConstraint("id", name="pk_pointer_history"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_pointer_history_dataset_id"),
        sa.CheckConstraint(_ACTION_CHECK, name="ck_pointer_history_action"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_pointer_history_dataset", "pointer_history", ["dataset_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_pointer_history_dataset", table_name="pointer_history")
    op.drop_table("pointer_history")
    op.drop_table("pointers")
    op.drop_index("ix_versions_dataset_created", table_name="versions")
    op.drop_table("versions")
    op.drop_table("datasets")
