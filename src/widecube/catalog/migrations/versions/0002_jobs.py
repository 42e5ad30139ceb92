"""Jobs: one row per ingest job, its state, claim (lease), progress and step log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-02-01

Written out by hand to match ``widecube.catalog._schema.jobs``; a test compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATE_CHECK = "state IN ('received', 'unpacked', 'validated', 'computed', 'verified', 'published', 'failed')"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "jobs",
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
        _timestamp("lease_until", nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("started_at", nullable=True),
        _timestamp("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("input_key", name="uq_jobs_input_key"),
        sa.CheckConstraint(_STATE_CHECK, name="ck_jobs_state"),
    )
    op.create_index("ix_jobs_state_created", "jobs", ["state", "created_at"])
    op.create_index("ix_jobs_created", "jobs", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_created", table_name="jobs")
    op.drop_index("ix_jobs_state_created", table_name="jobs")
    op.drop_table("jobs")
