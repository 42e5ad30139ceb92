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
A catalog whose ``alembic_version`` already says :data:`HEAD` is opened without importing
Alembic at all (0.2 s of every process's start-up, with Mako).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ._engine import read_options

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["HEAD", "MIGRATIONS", "alembic_config", "head_revision", "upgrade"]

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
HEAD = "0006"
"""The newest revision in ``migrations/versions``; a test checks it against Alembic's own
answer (:func:`head_revision`), so a new revision cannot leave it behind."""
_LOCK_NAME = "widecube.catalog.migrate:"
# Alembic keeps the running migration in module globals (alembic.context, alembic.op), so
# two upgrades in one process must not overlap even on different databases.
_PROCESS_LOCK = threading.Lock()


def alembic_config(*, connection: sa.Connection | None = None, url: str | None = None) -> Config:
    """An Alembic config for the catalog migrations, bound to a connection or a URL.

    ``migrations/env.py`` uses the connection when there is one (widecube's own upgrades) and
    otherwise opens an engine on ``url`` (a developer running Alembic commands).
    """
    from alembic.config import Config

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
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS}"
    return head


def upgrade(engine: sa.Engine) -> None:
    """Upgrade the catalog at ``engine`` to head, in one transaction; a no-op when current."""
    if _revision(engine) == HEAD:
        return
    from alembic import command

    with _PROCESS_LOCK, engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:name || coalesce(current_schema(), '')))"),
                {"name": _LOCK_NAME},
            )
        command.upgrade(alembic_config(connection=connection), "head")


def _revision(engine: sa.Engine) -> str | None:
    """The catalog's revision, or None where it has none yet or it cannot be read here (then
    :func:`upgrade` takes Alembic's path, which creates, upgrades or says what is wrong). A
    read-only transaction: it never takes SQLite's write lock."""
    try:
        with engine.connect().execution_options(**read_options(engine)) as connection:
            rows = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    except sa.exc.SQLAlchemyError:
        return None
    return str(rows[0][0]) if len(rows) == 1 else None
