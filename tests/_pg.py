"""A private PostgreSQL schema per test, for tests that run against a real server.

The server is ``WIDECUBE_TEST_POSTGRES_URL`` (default: the local one, trust auth). Each use
creates a schema ``wc_<uuid hex>``, yields a URL whose connections put that schema first on
their ``search_path`` (so unqualified tables, Alembic's version table included, land in it),
and drops the schema afterwards. An unreachable server is an error, not a skip: these tests
are part of what "the catalog works on PostgreSQL" means.

Example::

    >>> with postgres_schema() as (url, schema):
    ...     Catalog(url)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

__all__ = ["POSTGRES_URL", "postgres_schema"]

POSTGRES_URL = os.environ.get(
    "WIDECUBE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def postgres_schema(base_url: str = POSTGRES_URL) -> Iterator[tuple[str, str]]:
    """Yield ``(url, schema)`` for a fresh, empty schema that is dropped on exit."""
    schema = f"wc_{uuid.uuid4().hex}"
    admin = sa.create_engine(base_url)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = sa.make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        try:
            yield url.render_as_string(hide_password=False), schema
        finally:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()
