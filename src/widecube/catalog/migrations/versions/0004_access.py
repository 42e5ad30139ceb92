"""Governed access: dataset visibility and classification, API tokens, grants, local groups,
and the hash-chained audit log.

* ``datasets.visibility`` (public, internal, restricted) and ``datasets.classification``
  (open, internal, controlled, phi). Datasets that exist when this migration runs become
  ``restricted`` and ``internal``: nobody but an admin reads them until someone opens them
  (safe by default; ``widecube access set`` changes it).
* ``tokens``, ``grants``, ``group_members``, ``audit`` and ``audit_head`` (see ``_schema``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Written out by hand to match ``widecube.catalog._schema``; a test compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_VISIBILITIES = ("public", "internal", "restricted")
_CLASSIFICATIONS = ("open", "internal", "controlled", "phi")
_ROLES = ("reader", "writer", "owner", "admin")
_SCOPES = ("read", "write", "admin")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _policy_column(name: str, default: str, values: tuple[str, ...]) -> None:
    check = f"ck_datasets_{name}"
    if op.get_context().dialect.name == "sqlite":
        # SQLite adds a column with a named CHECK in place; a batch copy would have to drop
        # ``datasets``, which versions and pointers reference.
        op.execute(
            f"ALTER TABLE datasets ADD COLUMN {name} VARCHAR(16) DEFAULT '{default}' NOT NULL "
            f"CONSTRAINT {check} CHECK ({_in(name, values)})"
        )
    else:
        op.add_column("datasets", sa.Column(name, sa.String(16), nullable=False, server_default=default))
        op.create_check_constraint(check, "datasets", _in(name, values))


def upgrade() -> None:
    _policy_column("visibility", "restricted", _VISIBILITIES)
    _policy_column("classification", "internal", _CLASSIFICATIONS)
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("datasets", sa.JSON, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_by", sa.String(255), nullable=False),
        _timestamp("created_at"),
        _timestamp("expires_at", nullable=True),
        _timestamp("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tokens"),
        sa.CheckConstraint(_in("scope", _SCOPES), name="ck_tokens_scope"),
    )
    op.create_index("ix_tokens_user", "tokens", ["user_name"])
    op.create_table(
        "grants",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("dataset", sa.String(255), nullable=False),
        sa.Column("principal", sa.String(255), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("granted_by", sa.String(255), nullable=False),
        _timestamp("granted_at"),
        sa.PrimaryKeyConstraint("id", name="pk_grants"),
        sa.UniqueConstraint("dataset", "principal", name="uq_grants_dataset_principal"),
        sa.CheckConstraint(_in("role", _ROLES), name="ck_grants_role"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_grants_principal", "grants", ["principal"])
    op.create_table(
        "group_members",
        sa.Column("group_name", sa.String(255), nullable=False),
        sa.Column("user_name", sa.String(255), nullable=False),
        _timestamp("added_at"),
        sa.PrimaryKeyConstraint("group_name", "user_name", name="pk_group_members"),
    )
    op.create_index("ix_group_members_user", "group_members", ["user_name"])
    op.create_table(
        "audit",
        sa.Column("seq", sa.BigInteger, nullable=False, autoincrement=False),
        _timestamp("at"),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("dataset", sa.String(255), nullable=True),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("client", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit"),
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_index("ix_audit_actor", "audit", ["actor"])
    op.create_index("ix_audit_dataset", "audit", ["dataset"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )


def downgrade() -> None:
    for table in ("audit_head", "audit", "group_members", "grants", "tokens"):
        op.drop_table(table)
    for name in ("classification", "visibility"):
        if op.get_context().dialect.name != "sqlite":
            op.drop_constraint(f"ck_datasets_{name}", "datasets", type_="check")
        op.drop_column("datasets", name)
