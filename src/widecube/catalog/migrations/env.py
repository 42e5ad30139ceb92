"""Alembic environment of the widecube catalog.

widecube upgrades a catalog itself (see ``widecube.catalog._migrate.upgrade``): it opens a
connection, takes the migration lock, begins the transaction and passes the connection in
``config.attributes["connection"]``; the migrations then run inside that transaction, which
the caller commits. Without a connection (a developer running Alembic commands through
``alembic_config(url=...)``) an engine is made from ``sqlalchemy.url``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from widecube.catalog._engine import make_engine
from widecube.catalog._schema import described, metadata


def _run(connection: sa.Connection) -> None:
    # Batch mode lets future ALTERs run on SQLite, which recreates tables to alter them.
    context.configure(
        connection=connection, target_metadata=metadata, render_as_batch=True, include_name=described
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url: use _migrate.alembic_config")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


_main()
