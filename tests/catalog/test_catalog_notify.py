"""The cached ``current()`` on PostgreSQL: LISTEN/NOTIFY, a fallback bound, never stale for long.

Readers (``Catalog`` objects in this process and in another one) memoize the live version;
writers publish. A reader must answer from memory (no SQL) while nothing changed, see every
publish within a second through the notification, never trust its memory while its listener
is down, see a change its listener never heard of within ``FALLBACK_S``, and ignore catalogs
in other schemas of the same database. Access lookups stay strict: read every time.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from _pg import POSTGRES_URL, postgres_schema
from widecube.catalog import Catalog, _changes

pytestmark = pytest.mark.postgres


def _version(catalog: Catalog, dataset: str = "pbmc") -> str:
    v = uuid.uuid4().hex
    catalog.create_version(dataset, v, input_name="x.h5ad", input_sha256=None, params={})
    catalog.mark_verified(dataset, v, path=f"{dataset}/{v}", n_cells=1, n_genes=1, info={})
    return v


class _Selects:
    """Counts the SELECTs the catalog's own engine runs."""

    def __init__(self, catalog: Catalog) -> None:
        self.n = 0
        event.listen(catalog._engine, "before_cursor_execute", self._count)

    def _count(self, conn: object, cursor: object, statement: str, *args: object) -> None:
        self.n += statement.lstrip().upper().startswith("SELECT")


def _until(condition: Callable[[], bool], within: float) -> float:
    """Poll ``condition`` until it holds; the seconds it took (fails after ``within``)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < within, f"not within {within} s"
        time.sleep(0.005)
    return time.monotonic() - start


def _listening(catalog: Catalog) -> bool:
    return catalog._changes.read() is not None


def _truth(url: str) -> str:
    """The live version as plain SQL on a fresh connection reads it."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SELECT version_id FROM pointers")).scalar_one())
    finally:
        engine.dispose()


@pytest.fixture
def url() -> Iterator[str]:
    with postgres_schema() as (url, _):
        yield url


@pytest.fixture
def no_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only notifications move the readers' counts (for catalogs opened afterwards)."""
    monkeypatch.setattr(_changes, "FALLBACK_S", 600.0)


@pytest.mark.usefixtures("no_fallback")
def test_a_publish_reaches_a_memoizing_reader_within_a_second(url: str) -> None:
    writer = Catalog(url)
    first, second = _version(writer), _version(writer)
    writer.publish("pbmc", first)
    reader = Catalog(url)  # opened after the setup: no notification is still on its way
    try:
        _until(lambda: _listening(reader), within=5)
        selects = _Selects(reader)
        assert reader.current("pbmc").version == first
        assert reader.get_version("pbmc", second).status == "verified"
        for _ in range(50):
            assert reader.current("pbmc").version == first
            assert reader.get_version("pbmc", second).status == "verified"
        assert selects.n == 2, "an unchanged catalog must be answered without SQL"

        writer.publish("pbmc", second)
        took = _until(lambda: reader.current("pbmc").version == second, within=1)
        assert selects.n >= 3, "the new version must come from a fresh read"
        assert reader.get_version("pbmc", first).status == "retired" == _status(url, first)
        print(f"publish seen after {took * 1000:.1f} ms")
        after = selects.n  # the one notification was heard: the answer is remembered
        for _ in range(20):
            assert reader.current("pbmc").version == second == _truth(url)
        assert selects.n == after, "memoized again once the notification was heard"
    finally:
        reader.close()
        writer.close()


@pytest.mark.usefixtures("no_fallback")
def test_a_catalog_reads_its_own_writes_at_once(url: str) -> None:
    """Its own publish must not wait for the notification to come back to its listener."""
    catalog = Catalog(url)
    try:
        first, second = _version(catalog), _version(catalog)
        catalog.publish("pbmc", first)
        _until(lambda: _listening(catalog), within=5)
        for _ in range(5):
            assert catalog.current("pbmc").version == first  # remembered
        for target in (second, first, second):  # publish, then read at once, no sleep
            catalog.publish("pbmc", target)
            assert catalog.current("pbmc").version == target == _truth(url)
    finally:
        catalog.close()


def _status(url: str, version: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT status FROM versions WHERE id = :v")
            return str(conn.execute(query, {"v": version}).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.usefixtures("no_fallback")
def test_the_memo_is_not_used_while_the_listener_is_down(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_changes, "_RETRY_S", 1.5)  # a window long enough to look into
    writer = Catalog(url)
    first, second, third = _version(writer), _version(writer), _version(writer)
    writer.publish("pbmc", first)
    reader = Catalog(url)
    admin = sa.create_engine(POSTGRES_URL)
    try:
        _until(lambda: _listening(reader), within=5)
        listener = reader._changes._listener
        assert listener is not None and listener.backend_pid is not None
        killed = listener.backend_pid
        assert reader.current("pbmc").version == first  # remembered

        with admin.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": killed}).scalar()
        _until(lambda: not _listening(reader), within=1)
        writer.publish("pbmc", second)  # no one hears this one
        selects = _Selects(reader)
        assert reader.current("pbmc").version == second
        assert reader.current("pbmc").version == second
        assert selects.n == 2, "no answer from memory while the listener is down"
        assert not _listening(reader), "the test's window closed too early"
        # The race a reconnect must undo: a lookup that read the count just before the outage
        # was noticed and loaded just before the unheard publish (planted, as it is rare).
        stale = reader.get_version("pbmc", first)
        reader._remembered[("current", "pbmc")] = (listener._count, stale)

        _until(lambda: _listening(reader), within=5)
        assert listener.backend_pid != killed
        assert reader.current("pbmc").version == second, "a change made while not listening"
        lost = [r for r in caplog.records if "not listening for catalog changes" in r.message]
        assert len(lost) == 1 and lost[0].levelname == "WARNING", caplog.text
        heard = reader._changes.read()
        writer.publish("pbmc", third)
        _until(lambda: reader._changes.read() != heard, within=1)  # its notification
        assert reader.current("pbmc").version == third
        before = selects.n
        for _ in range(10):
            assert reader.current("pbmc").version == third == _truth(url)
        assert selects.n == before, "memoizing again after reconnecting"
    finally:
        admin.dispose()
        reader.close()
        writer.close()


@pytest.mark.usefixtures("no_fallback")
def test_a_catalog_in_another_schema_neither_wakes_nor_misleads(url: str) -> None:
    writer = Catalog(url)
    mine = _version(writer)
    writer.publish("pbmc", mine)
    reader = Catalog(url)
    with postgres_schema() as (other_url, _):
        other = Catalog(other_url)
        try:
            _until(lambda: _listening(reader), within=5)
            assert reader.current("pbmc").version == mine
            count = reader._changes.read()
            for _ in range(3):  # the same dataset name, in the other schema
                other.publish("pbmc", _version(other))
            time.sleep(0.3)  # time for a (wrong) notification to arrive
            assert reader._changes.read() == count, "woken by another schema's commits"
            assert reader.current("pbmc").version == mine == _truth(url)
            assert other.current("pbmc").version != mine

            again = _version(writer)
            writer.publish("pbmc", again)
            _until(lambda: reader.current("pbmc").version == again, within=1)
        finally:
            other.close()
            reader.close()
            writer.close()


def test_access_lookups_still_read_every_time(url: str) -> None:
    """A revocation holds on the very next lookup of another catalog: no NOTIFY delay."""
    writer, reader = Catalog(url), Catalog(url)
    try:
        writer.access.set_policy("pbmc")
        _until(lambda: _listening(reader), within=5)
        ana = ("user:ana",)
        writer.access.grant("pbmc", "user:ana", "reader", by="own")
        assert reader.access.lookup("pbmc", ana).roles == ("reader",)
        selects = _Selects(reader)
        for _ in range(5):
            assert reader.access.lookup("pbmc", ana).roles == ("reader",)
        assert selects.n >= 5
        writer.access.revoke("pbmc", "user:ana")
        assert reader.access.lookup("pbmc", ana).roles == ()
    finally:
        reader.close()
        writer.close()


def test_a_change_nobody_announced_is_seen_within_the_fallback(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_changes, "FALLBACK_S", 0.5)
    writer, reader = Catalog(url), Catalog(url)
    monkeypatch.setattr(writer._changes, "announce", lambda conn: None)
    try:
        first, second = _version(writer), _version(writer)
        writer.publish("pbmc", first)
        _until(lambda: _listening(reader), within=5)
        assert reader.current("pbmc").version == first
        writer.publish("pbmc", second)
        took = _until(lambda: reader.current("pbmc").version == second, within=0.5 + 0.2)
        print(f"unannounced publish seen after {took * 1000:.0f} ms")
        assert reader._changes.read() is not None, "seen through the fallback, not a reconnect"
    finally:
        reader.close()
        writer.close()


_READER = """
import sys, time
from widecube.catalog import Catalog, _changes
_changes.FALLBACK_S = 600.0
url, first, second = sys.argv[1:]
catalog = Catalog(url)
deadline = time.monotonic() + 10
while catalog._changes.read() is None:
    assert time.monotonic() < deadline, "the listener never started"
    time.sleep(0.005)
assert catalog.current("pbmc").version == first
print("ready", flush=True)
while catalog.current("pbmc").version != second:
    assert time.monotonic() < deadline + 10, "the publish never arrived"
    time.sleep(0.001)
print("seen", time.time(), flush=True)
catalog.close()
"""


@pytest.mark.subprocess
def test_another_process_sees_a_publish_within_a_second(url: str) -> None:
    writer = Catalog(url)
    try:
        first, second = _version(writer), _version(writer)
        writer.publish("pbmc", first)
        proc = subprocess.Popen(
            [sys.executable, "-c", _READER, url, first, second],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            writer.publish("pbmc", second)
            published = time.time()
            out, _ = proc.communicate(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == 0
        word, seen = out.split()
        assert word == "seen"
        assert float(seen) - published < 1.0
    finally:
        writer.close()


_FORKS = """
import os, sys, time, warnings
from widecube.catalog import Catalog
warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads: what is tested
url, first, second = sys.argv[1:]
catalog = Catalog(url)
while catalog._changes.read() is None:
    time.sleep(0.005)
assert catalog.current("pbmc").version == first  # remembered by the parent
pid = os.fork()
if pid == 0:  # the child has no listener thread: no count, a fresh read every time
    ok = catalog._changes.read() is None
    sys.stdin.readline()  # the parent's test publishes meanwhile
    ok = ok and catalog.current("pbmc").version == second
    os._exit(0 if ok else 1)
print("forked", flush=True)
sys.stdin.readline()
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status), flush=True)
"""


@pytest.mark.subprocess
def test_a_forked_child_does_not_trust_the_parents_count(url: str) -> None:
    writer = Catalog(url)
    try:
        first, second = _version(writer), _version(writer)
        writer.publish("pbmc", first)
        proc = subprocess.Popen(
            [sys.executable, "-c", _FORKS, url, first, second],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdin is not None and proc.stdout is not None
            assert proc.stdout.readline().strip() == "forked"
            writer.publish("pbmc", second)
            out, _ = proc.communicate("go\n", timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == 0
        assert out.split() == ["child", "0"]
    finally:
        writer.close()
