"""Bring a catalog's schema to the newest Alembic revision, safely from many processes.

widecube runs its migrations itself, so a catalog is always current when a
:class:`~widecube.catalog.Catalog` opens it. The Alembic configuration is built in code and
points at the ``migrations`` folder inside the package; no ``alembic.ini`` is needed.
Developers create a new revision with::

    >>> from alembic import command
    >>> from widecube.catalog._migrate import alembic_config
    >>> command.revision(alembic_config(url="sqlite:///dev.sqlite"), "add x", autogenerate=True)

Concurrent upgrades are serialized by the database: on SQLite the upgrade runs in a
``BEGIN IMMEDIATE`` transaction, on PostgreSQL under a transaction-scoped advisory lock keyed
by the schema, so the second process waits, then finds the schema at head and does nothing.
Within one process a lock also keeps upgrades apart, as Alembic's running state is global.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

__all__ = ["MIGRATIONS", "alembic_config", "head_revision", "upgrade"]

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
_LOCK_NAME = "widecube.catalog.migrate:"
# Alembic keeps the running migration in module globals (alembic.context, alembic.op), so
# two upgrades in one process must not overlap even on different databases.
_PROCESS_LOCK = threading.Lock()


def alembic_config(*, connection: sa.Connection | None = None, url: str | None = None) -> Config:
    """An Alembic config for the catalog migrations, bound to a connection or a URL.

    ``migrations/env.py`` uses the connection when there is one (widecube's own upgrades) and
    otherwise opens an engine on ``url`` (a developer running Alembic commands).
    """
    config = Config()
    # ConfigParser would read '%' as interpolation.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision of the catalog schema that this widecube knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS}"
    return head


def upgrade(engine: sa.Engine) -> None:
    """Upgrade the catalog at ``engine`` to head, in one transaction; a no-op when current."""
    with _PROCESS_LOCK, engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:name || coalesce(current_schema(), '')))"),
                {"name": _LOCK_NAME},
            )
        command.upgrade(alembic_config(connection=connection), "head")
