"""A cheap "has anything been committed since?" check, so hot reads can skip the catalog.

The API resolves a dataset's live version on every request. The SELECT behind it costs a
few hundred microseconds, most of a summary query's time (profiled: 60 % of
``Widecube.summary``). :meth:`ChangeToken.read` returns a value that changes after commits; a
value seen twice means the caller may reuse what it read in between. None means "unknown":
the caller reads the catalog.

* **SQLite**: ``PRAGMA data_version`` on a dedicated connection that never writes changes
  whenever *another* connection, in this process or any other, commits, and it has changed by
  the time the writer's commit returns. Reading it costs a few microseconds.
* **PostgreSQL** (psycopg driver): every write transaction of the catalog sends ``NOTIFY``
  (:meth:`ChangeToken.announce`, delivered on commit, on a channel named after the catalog's
  schema so that catalogs in other schemas of the same database do not wake each other; a
  stray wake-up only costs a re-read). A daemon thread keeps a dedicated connection that
  ``LISTEN``\\s and bumps a counter on every notification. A notification arrives a few
  milliseconds *after* the writer's commit returns, and one can be lost (a replica cut off
  from the server, a pointer moved by plain SQL), so the counter is also bumped every
  :data:`FALLBACK_S` seconds whatever happens: **a commit is seen at most** :data:`FALLBACK_S`
  **seconds after it returns**, normally within milliseconds. While the listener is
  (re)connecting, and in a forked child that did not start it, ``read()`` answers None.
* **Strict readers** (access decisions: a revoked token or grant must be refused by the very
  next request, in any process) ask ``read(strict=True)``: SQLite's value qualifies, the
  notification counter does not, so on PostgreSQL they read every time.
* Other backends: None, always.

    >>> token = ChangeToken(make_engine("sqlite:////srv/widecube/catalog.sqlite"))  # doctest: +SKIP
    >>> before = token.read(); ...; token.read() == before   # True: nothing was committed
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import sqlite3
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    import psycopg

__all__ = ["FALLBACK_S", "ChangeToken"]

log = logging.getLogger("widecube.catalog")

FALLBACK_S = 5.0
"""On PostgreSQL, the longest a commit can go unseen by a cached lookup (seconds)."""

_RETRY_S = 1.0  # wait between attempts to (re)connect the listener
_CONNECT_TIMEOUT_S = 10
# Both sides derive the channel from the schema the catalog's tables live in (the first on
# the search path), on the server, so replicas reaching the server by different host names or
# credentials agree; md5 keeps it a valid identifier (under 64 bytes) whatever the schema.
_CHANNEL = "'widecube_' || md5(current_schema())"
_NOTIFY = sa.text(f"SELECT pg_notify({_CHANNEL}, '')")


class ChangeToken:
    """``read()`` returns a value that differs after any commit to the catalog (or None)."""

    def __init__(self, engine: sa.Engine) -> None:
        url = engine.url
        database = url.database
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._listener: _Listener | None = None
        if (
            engine.dialect.name == "sqlite"
            and database
            and database != ":memory:"
            and not database.startswith("file:")
        ):
            # autocommit (isolation_level None): the pragma must not sit inside a read
            # transaction, which would pin one snapshot and hide later commits.
            self._conn = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        elif engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
            args, kwargs = engine.dialect.create_connect_args(url)
            kwargs.pop("context", None)  # SQLAlchemy's type adapters: not needed to listen
            self._listener = _Listener(list(args), dict(kwargs), FALLBACK_S)
            # A catalog dropped without close() must not leave its thread and connection behind.
            weakref.finalize(self, self._listener.close)

    def read(self, *, strict: bool = False) -> int | None:
        """The catalog's current change count as this process sees it; None: unknown.

        ``strict``: only a value that has moved by the time any writer's commit returned.
        """
        if self._listener is not None:
            return None if strict else self._listener.read()
        if self._conn is None:
            return None
        with self._lock:
            try:
                return int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:
                return None

    def announce(self, conn: sa.Connection) -> None:
        """Inside a write transaction: tell the listeners (on its commit) that it committed."""
        if conn.dialect.name == "postgresql":
            conn.execute(_NOTIFY)

    def committed(self) -> None:
        """After a write transaction of this process committed: its own next read must not
        answer from before it (the NOTIFY reaches this process's listener a little later)."""
        if self._listener is not None:
            self._listener.bump()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        if self._listener is not None:
            self._listener.close()


class _Listener:
    """A thread that LISTENs on the catalog's channel and counts what it hears."""

    def __init__(self, args: list[Any], kwargs: dict[str, Any], fallback_s: float) -> None:
        self._args, self._kwargs, self._fallback_s = args, kwargs, fallback_s
        self._count = 0
        self._due = 0.0  # the monotonic time of the next fallback bump
        self._live = False  # listening now: counts may be trusted
        self.backend_pid: int | None = None  # the listening connection's server process
        self._stopping = self._forked = self._ended = False
        self._lost = False  # an outage was reported and is not over
        self._lock = threading.Lock()
        # close() writes a byte here to wake the thread from its wait on the connection.
        self._wake_r, self._wake_w = socket.socketpair()
        _LISTENERS.add(self)
        self._thread = threading.Thread(target=self._run, name="widecube-catalog-listen", daemon=True)
        self._thread.start()

    def read(self) -> int | None:
        if not self._live:
            return None
        now = time.monotonic()
        if now >= self._due:
            self._bump(now)
        return self._count

    def close(self) -> None:
        with self._lock:
            if self._stopping or self._forked:
                return
            self._stopping = True
            self._live = False
            if not self._ended:
                self._wake_w.send(b"x")
        if threading.current_thread() is not self._thread:  # (a finalizer may run anywhere)
            self._thread.join(timeout=2.0)  # a hung connect ends later, then closes its own

    def bump(self) -> None:
        """Move the count now (a commit of this process)."""
        self._bump(time.monotonic())

    def _bump(self, now: float) -> None:
        with self._lock:
            self._count += 1
            self._due = now + self._fallback_s

    def _run(self) -> None:
        import psycopg  # on first use (a PostgreSQL catalog): an SQLite one never imports it

        try:
            while not self._stopping:
                try:
                    with psycopg.connect(
                        *self._args,
                        **self._kwargs,
                        autocommit=True,
                        connect_timeout=_CONNECT_TIMEOUT_S,
                    ) as conn:
                        self._listen(conn)
                except psycopg.Error as exc:
                    if not self._stopping and not self._lost:
                        log.warning(
                            "not listening for catalog changes (%s): reading the catalog on "
                            "every request until the connection is back",
                            str(exc).strip(),
                        )
                    self._lost = True
                finally:
                    self._live = False
                self._sleep(_RETRY_S)
        finally:
            self._live = False
            with self._lock:
                self._wake_r.close()
                self._wake_w.close()
                self._ended = True

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        import psycopg
        from psycopg import pq
        from psycopg import sql as pgsql

        row = conn.execute(f"SELECT {_CHANNEL}").fetchone()
        if row is None or row[0] is None:  # no schema on the search path exists (yet)
            raise psycopg.OperationalError("the catalog's schema is missing")
        conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(row[0])))
        # Whatever was committed before LISTEN took effect went unheard: a new count makes
        # every answer remembered until now a miss.
        self._bump(time.monotonic())
        self.backend_pid = conn.info.backend_pid
        self._live = True
        if self._lost:
            log.info("listening for catalog changes again")
            self._lost = False
        pgconn = conn.pgconn
        with selectors.DefaultSelector() as waiting:
            waiting.register(conn.fileno(), selectors.EVENT_READ, "server")
            waiting.register(self._wake_r, selectors.EVENT_READ, "wake")
            while not self._stopping:
                if any(key.data == "wake" for key, _ in waiting.select()):
                    return
                pgconn.consume_input()  # raises once the server has gone
                if pgconn.status != pq.ConnStatus.OK:
                    raise psycopg.OperationalError("the listener's connection is lost")
                while pgconn.notifies() is not None:
                    pass
                self._bump(time.monotonic())

    def _sleep(self, seconds: float) -> None:
        with selectors.DefaultSelector() as waiting:
            waiting.register(self._wake_r, selectors.EVENT_READ)
            waiting.select(seconds)

    def _after_fork(self) -> None:
        # The child has no listening thread: its counts would never move again.
        self._live, self._forked = False, True


_LISTENERS: weakref.WeakSet[_Listener] = weakref.WeakSet()


def _forget_listeners() -> None:
    for listener in list(_LISTENERS):
        listener._after_fork()


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere processes are spawned, never forked
    os.register_at_fork(after_in_child=_forget_listeners)
