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
    "CLASSIFICATIONS",
    "ROLES",
    "SCOPES",
    "VISIBILITIES",
    "audit",
    "audit_head",
    "grants",
    "group_members",
    "tokens",
    "UTCDateTime",
    "JOB_STATES",
    "datasets",
    "dataset_metadata",
    "dataset_terms",
    "jobs",
    "metadata",
    "pointer_history",
    "pointers",
    "release_members",
    "releases",
    "retention",
    "version_lifecycle",
    "versions",
    "SEARCH_OBJECTS",
    "described",
]

ACTIONS = ("publish", "rollback")
VISIBILITIES = ("public", "internal", "restricted")
CLASSIFICATIONS = ("open", "internal", "controlled", "phi")
ROLES = ("reader", "writer", "owner", "admin")
SCOPES = ("read", "write", "admin")
_STATUSES = ("building", "verified", "published", "failed", "retired", "removed", "archived", "corrupt")
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
    # who may read it without a grant, and how sensitive it is (see ``widecube.access``)
    sa.Column("visibility", sa.String(16), nullable=False, server_default="restricted"),
    sa.Column("classification", sa.String(16), nullable=False, server_default="internal"),
    sa.PrimaryKeyConstraint("id", name="pk_datasets"),
    sa.CheckConstraint(
        "visibility IN (" + ", ".join(f"'{v}'" for v in VISIBILITIES) + ")", name="ck_datasets_visibility"
    ),
    sa.CheckConstraint(
        "classification IN (" + ", ".join(f"'{c}'" for c in CLASSIFICATIONS) + ")",
        name="ck_datasets_classification",
    ),
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

# One row per ingest job (see ``_jobstore``). ``input_key`` identifies what triggered the job (an
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

# -- access (``_grants``) and audit (``_audit``) -----------------------------------------------

# API tokens. The secret is shown once; only its SHA-256 is kept (a token is 256 random bits,
# so a fast hash is enough: there is nothing to brute-force). ``datasets``: JSON list the token
# is narrowed to (NULL: any the user may reach); ``scope`` caps the user's roles.
tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(32), nullable=False),
    sa.Column("user_name", sa.String(255), nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("scope", sa.String(8), nullable=False),
    sa.Column("datasets", sa.JSON, nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint("id", name="pk_tokens"),
    sa.CheckConstraint("scope IN (" + ", ".join(f"'{s}'" for s in SCOPES) + ")", name="ck_tokens_scope"),
    sa.Index("ix_tokens_user", "user_name"),
)

# Roles of users (``user:NAME``) and groups (``group:NAME``) on one dataset, or server-wide
# (``dataset`` = ``*``, role ``admin``). One row per (dataset, principal).
grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", sa.Integer),
    sa.Column("dataset", sa.String(255), nullable=False),
    sa.Column("principal", sa.String(255), nullable=False),
    sa.Column("role", sa.String(8), nullable=False),
    sa.Column("granted_by", sa.String(255), nullable=False),
    sa.Column("granted_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_grants"),
    sa.UniqueConstraint("dataset", "principal", name="uq_grants_dataset_principal"),
    sa.CheckConstraint("role IN (" + ", ".join(f"'{r}'" for r in ROLES) + ")", name="ck_grants_role"),
    sa.Index("ix_grants_principal", "principal"),
    sqlite_autoincrement=True,
)

# Members of local groups (users signing in with API tokens; OIDC users bring their groups in
# their token's claims).
group_members = sa.Table(
    "group_members",
    metadata,
    sa.Column("group_name", sa.String(255), nullable=False),
    sa.Column("user_name", sa.String(255), nullable=False),
    sa.Column("added_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("group_name", "user_name", name="pk_group_members"),
    sa.Index("ix_group_members_user", "user_name"),
)

# The audit log: append-only, each row's ``hash`` = SHA-256 of the previous row's hash and this
# row's fields, so an edited or deleted row breaks the chain. ``audit_head`` (one row) holds
# the last sequence number and hash: appends serialize on it, and deleting the newest rows is
# seen too.
audit = sa.Table(
    "audit",
    metadata,
    sa.Column("seq", sa.BigInteger, autoincrement=False),
    sa.Column("at", UTCDateTime(), nullable=False),
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
    sa.Index("ix_audit_at", "at"),
    sa.Index("ix_audit_actor", "actor"),
    sa.Index("ix_audit_dataset", "dataset"),
)

audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
)

# -- dataset metadata and search (``_descriptions``) -------------------------------------------------

# What people know about a dataset (title, description, organism, tissue, ..., free key/values),
# one row per dataset: ``fields`` holds them as JSON, ``document`` the words full-text search
# matches (normalized by ``_descriptions.words``: lower-cased letters and digits joined by spaces, the
# same input for SQLite's FTS5 table and PostgreSQL's tsvector index, so both find the same).
dataset_metadata = sa.Table(
    "dataset_metadata",
    metadata,
    sa.Column("dataset_id", sa.Integer, autoincrement=False),
    sa.Column("fields", sa.JSON, nullable=False),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("updated_by", sa.String(255), nullable=True),
    sa.PrimaryKeyConstraint("dataset_id", name="pk_dataset_metadata"),
    sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_dataset_metadata_dataset_id"),
)

# The faceted values of each dataset (organism, tissue, assay, disease, tag), one row per value:
# facet counts and filters are plain SQL on both backends.
dataset_terms = sa.Table(
    "dataset_terms",
    metadata,
    sa.Column("dataset_id", sa.Integer, nullable=False, autoincrement=False),
    sa.Column("field", sa.String(16), nullable=False),
    sa.Column("value", sa.String(255), nullable=False),
    sa.PrimaryKeyConstraint("dataset_id", "field", "value", name="pk_dataset_terms"),
    sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_dataset_terms_dataset_id"),
    sa.Index("ix_dataset_terms_field_value", "field", "value"),
)

SEARCH_OBJECTS = frozenset({"dataset_fts", "ix_dataset_metadata_search"})
"""The full-text structures the 0006 migration makes that SQLAlchemy Core cannot describe: SQLite's
FTS5 table ``dataset_fts`` (and its shadow tables ``dataset_fts_*``), PostgreSQL's GIN index on
``to_tsvector('simple', document)``."""


def described(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's ``include_name`` hook: False for the full-text objects of :data:`SEARCH_OBJECTS`,
    which these tables do not describe (autogenerate and the schema test skip them)."""
    if name is None:
        return True
    return not (name in SEARCH_OBJECTS or name.startswith("dataset_fts_"))


# -- lifecycle (``_lifecycle``) and releases (``_releases``) ------------------------------------

# Lifecycle facts of a version, one row per version that has any: ``pinned`` (kept by GC
# whatever the policy), ``last_read_at`` (flushed by the servers that read it), ``bytes`` (its
# snapshot's size when last measured), ``archive_url`` (the cold storage holding it while
# ``archived``), ``changed_at``/``changed_by`` (when and by which policy or person it became
# removed, archived or corrupt), ``purge_path``/``purge_due`` (that hot folder is deleted after
# this time: the grace readers that resolved it before the change get to finish).
version_lifecycle = sa.Table(
    "version_lifecycle",
    metadata,
    sa.Column("version_id", sa.String(64), nullable=False),
    sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("last_read_at", UTCDateTime(), nullable=True),
    sa.Column("bytes", sa.BigInteger, nullable=True),
    sa.Column("archive_url", sa.Text, nullable=True),
    sa.Column("changed_at", UTCDateTime(), nullable=True),
    sa.Column("changed_by", sa.Text, nullable=True),
    sa.Column("purge_path", sa.Text, nullable=True),
    sa.Column("purge_due", UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint("version_id", name="pk_version_lifecycle"),
    sa.ForeignKeyConstraint(["version_id"], ["versions.id"], name="fk_version_lifecycle_version_id"),
)

# A dataset's retention policy when it is not the default (``_lifecycle.DEFAULT_POLICY``).
retention = sa.Table(
    "retention",
    metadata,
    sa.Column("dataset_id", sa.Integer, nullable=False, autoincrement=False),
    sa.Column("keep_last", sa.Integer, nullable=False),
    sa.Column("keep_read_s", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("updated_by", sa.String(255), nullable=True),
    sa.PrimaryKeyConstraint("dataset_id", name="pk_retention"),
    sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_retention_dataset_id"),
    sa.CheckConstraint("keep_last >= 0 AND keep_read_s >= 0", name="ck_retention_bounds"),
)

# Releases: a name for an immutable set of dataset versions (at most one version per dataset).
releases = sa.Table(
    "releases",
    metadata,
    sa.Column("id", sa.Integer),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(255), nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.PrimaryKeyConstraint("id", name="pk_releases"),
    sa.UniqueConstraint("name", name="uq_releases_name"),
    sqlite_autoincrement=True,
)

release_members = sa.Table(
    "release_members",
    metadata,
    sa.Column("release_id", sa.Integer, nullable=False),
    sa.Column("dataset_id", sa.Integer, nullable=False),
    sa.Column("version_id", sa.String(64), nullable=False),
    sa.PrimaryKeyConstraint("release_id", "dataset_id", name="pk_release_members"),
    sa.ForeignKeyConstraint(["release_id"], ["releases.id"], name="fk_release_members_release_id"),
    sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_release_members_dataset_id"),
    sa.ForeignKeyConstraint(["version_id"], ["versions.id"], name="fk_release_members_version_id"),
    sa.Index("ix_release_members_version", "version_id"),
)
