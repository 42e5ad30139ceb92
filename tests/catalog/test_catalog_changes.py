"""The catalog's cached ``current()``: no SELECT while nothing changed, never a stale answer.

A reader process keeps asking for the live version while writers (another Catalog object in
this process, another process, and plain SQL) publish and roll back; every answer must be the
one the database holds at that moment, checked with plain SQL. (PostgreSQL, where commits
are heard through LISTEN/NOTIFY: ``test_catalog_notify``.)
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from widecube.catalog import Catalog


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


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'catalog.sqlite'}"


def test_current_skips_the_select_until_something_is_committed(sqlite_url: str) -> None:
    reader, writer = Catalog(sqlite_url), Catalog(sqlite_url)
    try:
        first = _version(writer)
        writer.publish("pbmc", first)
        selects = _Selects(reader)
        assert reader.current("pbmc").version == first
        assert selects.n == 1
        for _ in range(50):
            assert reader.current("pbmc").version == first
        assert selects.n == 1, "an unchanged catalog must be answered without SQL"

        second = _version(writer)  # a commit that does not move the pointer: re-read, same answer
        assert reader.current("pbmc").version == first
        writer.publish("pbmc", second)
        assert reader.current("pbmc").version == second
        writer.rollback("pbmc")
        assert reader.current("pbmc").version == first
    finally:
        reader.close()
        writer.close()


@pytest.mark.subprocess
def test_current_sees_a_publish_by_another_process_at_once(sqlite_url: str, tmp_path: Path) -> None:
    reader, writer = Catalog(sqlite_url), Catalog(sqlite_url)
    try:
        first, second = _version(writer), _version(writer)
        writer.publish("pbmc", first)
        assert reader.current("pbmc").version == first
        code = (
            "import sys; from widecube.catalog import Catalog; "
            f"c = Catalog({sqlite_url!r}); c.publish('pbmc', {second!r}); c.close()"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        assert reader.current("pbmc").version == second
    finally:
        reader.close()
        writer.close()


def test_current_sees_plain_sql_pointer_moves(sqlite_url: str) -> None:
    """Any connection's commit counts, not only the catalog's own code paths."""
    reader, writer = Catalog(sqlite_url), Catalog(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    try:
        first, second = _version(writer), _version(writer)
        writer.publish("pbmc", first)
        assert reader.current("pbmc").version == first
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE pointers SET version_id = :v"), {"v": second})
        assert reader.current("pbmc").version == second
    finally:
        engine.dispose()
        reader.close()
        writer.close()


def test_get_version_is_remembered_until_a_commit(sqlite_url: str) -> None:
    """A pinned request's lookup: no SELECT while unchanged, the new status after a publish."""
    reader, writer = Catalog(sqlite_url), Catalog(sqlite_url)
    try:
        first, second = _version(writer), _version(writer)
        writer.publish("pbmc", first)
        selects = _Selects(reader)
        assert reader.get_version("pbmc", first).status == "published"
        for _ in range(20):
            assert reader.get_version("pbmc", first).status == "published"
        assert selects.n == 1
        writer.publish("pbmc", second)  # retires first
        assert reader.get_version("pbmc", first).status == "retired"
        assert reader.get_version("pbmc", second).status == "published"
    finally:
        reader.close()
        writer.close()
