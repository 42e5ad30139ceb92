"""A cheap "has anything been committed since?" check, so hot reads can skip the catalog.

The API resolves a dataset's live version on every request. The SELECT behind it costs a
few hundred microseconds, most of a summary query's time (profiled: 60 % of
``Widecube.summary``). On SQLite, ``PRAGMA data_version`` on one connection changes whenever
*another* connection, in this process or any other, commits; reading it costs a few
microseconds. :class:`ChangeToken` holds a dedicated connection that never writes, so every
commit to the catalog changes its value, and a value seen twice means nothing changed in
between.

On other backends there is no equally cheap check, so :meth:`ChangeToken.read` answers None
and callers read the catalog every time.

    >>> token = ChangeToken("sqlite:////srv/widecube/catalog.sqlite")   # doctest: +SKIP
    >>> before = token.read(); ...; token.read() == before   # True: nothing was committed
"""

from __future__ import annotations

import sqlite3
import threading

import sqlalchemy as sa

__all__ = ["ChangeToken"]


class ChangeToken:
    """``read()`` returns a value that differs after any commit to the catalog (or None)."""

    def __init__(self, url: str | sa.URL) -> None:
        parsed = sa.make_url(url)
        database = parsed.database
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        if (
            parsed.get_backend_name() == "sqlite"
            and database
            and database != ":memory:"
            and not database.startswith("file:")
        ):
            # autocommit (isolation_level None): the pragma must not sit inside a read
            # transaction, which would pin one snapshot and hide later commits.
            self._conn = sqlite3.connect(database, check_same_thread=False, isolation_level=None)

    def read(self) -> int | None:
        """The catalog's current change count as this connection sees it; None: unknown."""
        if self._conn is None:
            return None
        with self._lock:
            try:
                return int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:
                return None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
