"""Engines for the catalog: any SQLAlchemy URL, with SQLite made safe for many processes.

SQLite needs three things to serve as a shared catalog:

* WAL journal mode, so readers (the API's ``current()``) never wait for a publish;
* a busy timeout, so concurrent writers wait for the lock instead of failing at once;
* write transactions that take the write lock when they begin (``BEGIN IMMEDIATE``). With
  the driver's default deferred ``BEGIN``, two transactions that both read and then write
  can each hold a read lock and fail to upgrade it ("database is locked"), whatever the
  timeout. We use SQLAlchemy's documented pysqlite recipe: the driver's own transaction
  handling is switched off at connect and the ``begin`` event emits our ``BEGIN``.

Read-only work opts out of the write lock (:func:`read_options`): on SQLite it begins a plain
deferred transaction, a consistent snapshot that blocks no one; elsewhere it runs in
autocommit, since each read is one statement, which sees one snapshot, and the BEGIN and
ROLLBACK round trips would double the cost of the API's ``current()``.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

__all__ = ["BUSY_TIMEOUT_MS", "READ_ONLY", "dumps_json", "make_engine", "read_options"]

BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "widecube_read_only"
_JSON_BACKENDS = frozenset({"sqlite", "postgresql", "mysql", "mariadb"})


def make_engine(url: str | sa.URL) -> sa.Engine:
    """Create an engine for the catalog at ``url``; for a SQLite file, create its folder.

    Example::

        >>> engine = make_engine("sqlite:////tmp/widecube/catalog.sqlite")
    """
    parsed = sa.make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() in _JSON_BACKENDS:
        kwargs["json_serializer"] = dumps_json
    engine = sa.create_engine(parsed, **kwargs)
    if engine.dialect.name == "sqlite":
        _create_parent_folder(parsed)
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def read_options(engine: sa.Engine) -> dict[str, Any]:
    """Execution options for a connection that only reads (see the module docstring)."""
    if engine.dialect.name == "sqlite":
        return {READ_ONLY: True}
    return {"isolation_level": "AUTOCOMMIT"}


def dumps_json(value: Any) -> str:
    """Serialize ``value`` to JSON, turning numpy scalars and arrays into plain numbers.

    Ingest parameters and manifest summaries are often computed with numpy; storing
    ``np.int64(3)`` as ``3`` is what the caller means, so it is not an error.
    """
    return json.dumps(value, default=_json_default, ensure_ascii=False, allow_nan=False)


def _json_default(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable: {value!r}")


def _create_parent_folder(url: sa.URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _on_sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Hand transaction control to _on_sqlite_begin (the pysqlite recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # The timeout first: switching the journal mode itself may have to wait for a lock.
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        _enable_wal(cursor)
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch the database file to WAL (a persistent setting) unless it already is.

    The switch needs an exclusive lock, and SQLite may refuse it at once, without calling
    the busy handler, while other connections open the same new file; so retry until the
    busy timeout is spent.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() not in ("wal", "memory"):
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


def _on_sqlite_begin(connection: sa.Connection) -> None:
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
