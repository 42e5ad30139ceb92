"""Compare-and-swap publishing and superseded jobs.

* ``versions.base_version``: the version the dataset's pointer named when this version began
  building (NULL: nothing was live). A job publishes its version only if the pointer still
  names it. Versions still building or verified when this migration runs get the pointer of
  now, so a job that resumes after the upgrade publishes unless the pointer moves again.
* ``jobs.state`` may also be ``superseded``: the job's version was verified but not published,
  because the pointer moved since the job started.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Written out by hand to match ``widecube.catalog._schema``; a test compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = ("received", "unpacked", "validated", "computed", "verified", "published", "failed")
_NEW = (*_OLD, "superseded")


def _check(states: tuple[str, ...]) -> str:
    return "state IN (" + ", ".join(f"'{s}'" for s in states) + ")"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _jobs(states: tuple[str, ...] | None) -> sa.Table:
    """The jobs table as 0002 made it, with ``states`` as its state check (None: no check).

    SQLite cannot alter a CHECK constraint, nor does reflection see one, so the table is
    recreated from this definition (Alembic's batch mode with ``copy_from``).
    """
    checks = [sa.CheckConstraint(_check(states), name="ck_jobs_state")] if states else []
    return sa.Table(
        "jobs",
        sa.MetaData(),
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
        sa.Index("ix_jobs_state_created", "state", "created_at"),
        sa.Index("ix_jobs_created", "created_at"),
        *checks,
    )


def _set_state_check(states: tuple[str, ...]) -> None:
    if op.get_context().dialect.name == "sqlite":
        with op.batch_alter_table("jobs", copy_from=_jobs(None), recreate="always") as batch:
            batch.create_check_constraint("ck_jobs_state", _check(states))
    else:
        op.drop_constraint("ck_jobs_state", "jobs", type_="check")
        op.create_check_constraint("ck_jobs_state", "jobs", _check(states))


def upgrade() -> None:
    op.add_column("versions", sa.Column("base_version", sa.String(64), nullable=True))
    op.execute(
        "UPDATE versions SET base_version = "
        "(SELECT p.version_id FROM pointers p WHERE p.dataset_id = versions.dataset_id) "
        "WHERE status IN ('building', 'verified')"
    )
    _set_state_check(_NEW)


def downgrade() -> None:
    op.execute("UPDATE jobs SET state = 'failed' WHERE state = 'superseded'")
    _set_state_check(_OLD)
    op.drop_column("versions", "base_version")  # SQLite >= 3.35 drops a column in place
