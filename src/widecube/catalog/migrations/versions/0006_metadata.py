"""Dataset metadata and full-text search.

* ``dataset_metadata``: one row per described dataset: its fields (title, description,
  organism, tissue, assay, disease, license, citation, doi, contact, tags, free key/values) as
  JSON, and ``document``, the words full-text search matches (see ``_descriptions.words``).
* ``dataset_terms``: the faceted values (organism, tissue, assay, disease, tag), a row each.
* The full-text index over ``document``: on SQLite an FTS5 table ``dataset_fts`` (rowid = the
  dataset's id; the catalog writes it in the transaction that writes the metadata), on
  PostgreSQL a GIN index on ``to_tsvector('simple', document)``. Neither is described by
  ``_schema`` (``SEARCH_OBJECTS``); the schema test skips them.

Revision ID: 0006
Revises: 0004 (for now: 0005 is written in parallel; the chain is fixed at merge)
Create Date: 2026-12-02

Written out by hand to match ``widecube.catalog._schema``; a test compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dataset_metadata",
        sa.Column("dataset_id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("dataset_id", name="pk_dataset_metadata"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_dataset_metadata_dataset_id"),
    )
    op.create_table(
        "dataset_terms",
        sa.Column("dataset_id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("field", sa.String(16), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("dataset_id", "field", "value", name="pk_dataset_terms"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_dataset_terms_dataset_id"),
    )
    op.create_index("ix_dataset_terms_field_value", "dataset_terms", ["field", "value"])
    if op.get_context().dialect.name == "sqlite":
        # the words are normalized before they are stored (letters and digits, lower case), so
        # the tokenizer only splits on spaces; diacritics are kept, as PostgreSQL keeps them
        op.execute(
            "CREATE VIRTUAL TABLE dataset_fts "
            "USING fts5(document, tokenize = 'unicode61 remove_diacritics 0')"
        )
    elif op.get_context().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX ix_dataset_metadata_search ON dataset_metadata "
            "USING gin (to_tsvector('simple', document))"
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS dataset_fts")
    elif op.get_context().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_dataset_metadata_search")
    op.drop_index("ix_dataset_terms_field_value", table_name="dataset_terms")
    op.drop_table("dataset_terms")
    op.drop_table("dataset_metadata")
