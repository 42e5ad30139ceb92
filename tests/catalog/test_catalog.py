"""Tests of widecube.catalog against real databases: a SQLite file and PostgreSQL.

Every test runs twice, once per backend. PostgreSQL tests each get a private schema (see
``_pg.py``); an unreachable server fails them. Expected states are written out by hand or
read back with plain SQL, never computed by the catalog itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from _pg import postgres_schema
from widecube.catalog import Catalog, DatasetRecord, VersionRecord, VersionStatus
from widecube.catalog._migrate import HEAD, head_revision
from widecube.catalog._schema import described, metadata
from widecube.errors import CatalogError, DatasetNotFound, NotFound, VersionNotFound

S = VersionStatus


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    schema: str | None  # the PostgreSQL schema the tables must land in


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    if request.param == "sqlite":
        # A folder that does not exist yet: the catalog must create it.
        path = tmp_path_factory.mktemp("catalog") / "nested" / "catalog.sqlite"
        yield Backend("sqlite", f"sqlite:///{path}", None)
    else:
        with postgres_schema() as (url, schema):
            yield Backend("postgresql", url, schema)


@pytest.fixture
def engine(backend: Backend) -> Iterator[sa.Engine]:
    """A plain engine on the same database, to check what the catalog wrote."""
    engine = sa.create_engine(backend.url)
    yield engine
    engine.dispose()


@pytest.fixture
def open_catalog(backend: Backend) -> Iterator[Callable[[], Catalog]]:
    opened: list[Catalog] = []

    def open_() -> Catalog:
        catalog = Catalog(backend.url)
        opened.append(catalog)
        return catalog

    yield open_
    for catalog in opened:
        catalog.close()


@pytest.fixture
def catalog(open_catalog: Callable[[], Catalog]) -> Catalog:
    return open_catalog()


def new_version(catalog: Catalog, dataset: str = "pbmc", *, verify: bool = True) -> str:
    version = uuid.uuid4().hex
    catalog.create_version(dataset, version, input_name="in.h5ad", input_sha256="ab" * 32, params={})
    if verify:
        catalog.mark_verified(dataset, version, path=f"{dataset}/{version}", n_cells=5, n_genes=7, info={})
    return version


def sql(engine: sa.Engine, query: str, **params: object) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(query), params)]


def statuses(catalog: Catalog, dataset: str = "pbmc") -> dict[str, VersionStatus]:
    return {r.version: r.status for r in catalog.versions(dataset)}


# -- schema ---------------------------------------------------------------------------------


def test_schema_is_created_by_alembic_at_head(catalog: Catalog, engine: sa.Engine, backend: Backend) -> None:
    assert head_revision() == "0006" == HEAD  # HEAD: the constant that skips Alembic when current
    assert sql(engine, "SELECT version_num FROM alembic_version") == [("0006",)]
    tables = set(sa.inspect(engine).get_table_names(schema=backend.schema))
    assert {"alembic_version", "datasets", "versions", "pointers", "pointer_history", "jobs"} <= tables
    if backend.schema is not None:
        public = set(sa.inspect(engine).get_table_names(schema="public"))
        assert not {"alembic_version", "versions"} & public


def test_migrations_match_schema_metadata(catalog: Catalog, engine: sa.Engine) -> None:
    with engine.connect() as conn:
        # the full-text objects (FTS5 table, tsvector index) are the migration's alone: skipped
        diff = compare_metadata(MigrationContext.configure(conn, opts={"include_name": described}), metadata)
    assert diff == []


def test_reopening_is_a_no_op(open_catalog: Callable[[], Catalog], engine: sa.Engine) -> None:
    first = open_catalog()
    version = new_version(first)
    first.publish("pbmc", version)
    second = open_catalog()
    assert sql(engine, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    assert second.current("pbmc").version == version
    assert sql(engine, "SELECT count(*) FROM versions") == [(1,)]


def test_opening_concurrently_on_a_fresh_database(backend: Backend, engine: sa.Engine) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_and_close() -> None:
        try:
            barrier.wait()
            Catalog(backend.url).close()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=open_and_close) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sql(engine, "SELECT version_num FROM alembic_version") == [(head_revision(),)]


_OPEN_AT = """
import sys, time
from widecube.catalog import Catalog
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
Catalog(sys.argv[1]).close()
"""


@pytest.mark.subprocess
def test_opening_from_several_processes_at_once(backend: Backend, engine: sa.Engine) -> None:
    start_at = time.time() + 3  # after every child has imported widecube
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_AT, backend.url, str(start_at)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    errors = [child.communicate(timeout=120)[1] for child in children]
    failures = [err for child, err in zip(children, errors, strict=True) if child.returncode]
    assert not failures, "\n".join(failures)
    assert sql(engine, "SELECT version_num FROM alembic_version") == [(head_revision(),)]


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    try:
        with catalog._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        catalog.close()


# -- versions and transitions ----------------------------------------------------------------


def test_create_version_records_building(catalog: Catalog) -> None:
    before = datetime.now(UTC)
    record = catalog.create_version(
        "pbmc", "v1", input_name="pbmc.h5ad", input_sha256="00" * 32, params={"min_cells": 3}
    )
    assert record == catalog.get_version("pbmc", "v1")
    assert (record.dataset, record.version, record.status) == ("pbmc", "v1", S.BUILDING)
    assert (record.path, record.reason, record.n_cells, record.n_genes) == (None, None, None, None)
    assert (record.input_name, record.input_sha256) == ("pbmc.h5ad", "00" * 32)
    assert (record.params, record.info) == ({"min_cells": 3}, {})
    for stamp in (record.created, record.updated):
        assert stamp.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=5) <= stamp <= datetime.now(UTC) + timedelta(seconds=5)


def test_duplicate_version_is_refused(catalog: Catalog) -> None:
    version = new_version(catalog)
    with pytest.raises(CatalogError, match=version):
        catalog.create_version("other", version, input_name=None, input_sha256=None, params={})


def test_mark_verified_only_from_building(catalog: Catalog) -> None:
    version = new_version(catalog, verify=False)
    record = catalog.mark_verified("pbmc", version, path="pbmc/x", n_cells=10, n_genes=20, info={"a": 1})
    assert (record.status, record.path, record.n_cells, record.n_genes) == (
        S.VERIFIED,
        "pbmc/x",
        10,
        20,
    )
    assert record.info == {"a": 1}
    with pytest.raises(CatalogError, match="is verified"):
        catalog.mark_verified("pbmc", version, path="pbmc/y", n_cells=1, n_genes=1, info={})
    failed = new_version(catalog, verify=False)
    catalog.mark_failed("pbmc", failed, "bad input")
    with pytest.raises(CatalogError, match="is failed"):
        catalog.mark_verified("pbmc", failed, path="pbmc/z", n_cells=1, n_genes=1, info={})


def test_large_counts_fit(catalog: Catalog) -> None:
    version = new_version(catalog, verify=False)
    record = catalog.mark_verified("pbmc", version, path="p", n_cells=2**40, n_genes=3, info={})
    assert catalog.get_version("pbmc", version).n_cells == 2**40 == record.n_cells


def test_mark_failed_from_building_and_verified(catalog: Catalog) -> None:
    building = new_version(catalog, verify=False)
    record = catalog.mark_failed("pbmc", building, "unreadable input")
    assert (record.status, record.reason, record.path) == (S.FAILED, "unreadable input", None)
    verified = new_version(catalog)
    record = catalog.mark_failed("pbmc", verified, "checksum mismatch")
    assert (record.status, record.reason, record.path) == (S.FAILED, "checksum mismatch", None)
    with pytest.raises(CatalogError, match="is failed"):
        catalog.mark_failed("pbmc", verified, "again")


def test_mark_failed_refuses_published_and_keeps_pointer(catalog: Catalog, engine: sa.Engine) -> None:
    live = new_version(catalog)
    catalog.publish("pbmc", live)
    with pytest.raises(CatalogError, match="is published"):
        catalog.mark_failed("pbmc", live, "late failure")
    other = new_version(catalog)
    catalog.mark_failed("pbmc", other, "verification failed")
    assert catalog.current("pbmc").version == live
    assert catalog.get_version("pbmc", other).path is None
    assert sql(engine, "SELECT version_id FROM pointers") == [(live,)]
    assert sql(engine, "SELECT count(*) FROM pointer_history") == [(1,)]


def test_publish_refuses_building_failed_and_published(catalog: Catalog) -> None:
    building = new_version(catalog, verify=False)
    with pytest.raises(CatalogError, match=f"version {building} of dataset 'pbmc' is building"):
        catalog.publish("pbmc", building)
    catalog.mark_failed("pbmc", building, "x")
    with pytest.raises(CatalogError, match="is failed"):
        catalog.publish("pbmc", building)
    live = new_version(catalog)
    catalog.publish("pbmc", live)
    with pytest.raises(CatalogError, match="is published"):
        catalog.publish("pbmc", live)
    with pytest.raises(DatasetNotFound):
        catalog.current("never-published")


# -- publish and rollback ------------------------------------------------------------------


def test_publish_retires_the_previous_version(catalog: Catalog, engine: sa.Engine) -> None:
    v1, v2, v3 = (new_version(catalog) for _ in range(3))
    first = catalog.publish("pbmc", v1)
    assert first.status == S.PUBLISHED
    assert catalog.current("pbmc") == first
    catalog.publish("pbmc", v2)
    assert statuses(catalog) == {v1: S.RETIRED, v2: S.PUBLISHED, v3: S.VERIFIED}
    assert catalog.current("pbmc").version == v2
    catalog.publish("pbmc", v1)  # a retired version may be published again
    assert statuses(catalog) == {v1: S.PUBLISHED, v2: S.RETIRED, v3: S.VERIFIED}
    history = sql(engine, "SELECT from_version, to_version, action FROM pointer_history ORDER BY id")
    assert history == [(None, v1, "publish"), (v1, v2, "publish"), (v2, v1, "publish")]
    assert sql(engine, "SELECT version_id FROM pointers") == [(v1,)]


def test_rollback_to_the_version_live_before(catalog: Catalog, engine: sa.Engine) -> None:
    """A plain rollback makes live the version that was live just before the current one went
    live (the pointer history's last move onto it): after a rollback, the one rolled back from."""
    v1, v2, v3, v4 = (new_version(catalog) for _ in range(4))
    for version in (v1, v2, v3):
        catalog.publish("pbmc", version)
    catalog.mark_failed("pbmc", v4, "x")
    record = catalog.rollback("pbmc")
    assert (record.version, record.status) == (v2, S.PUBLISHED)
    assert catalog.current("pbmc") == record
    assert statuses(catalog) == {v1: S.RETIRED, v2: S.PUBLISHED, v3: S.RETIRED, v4: S.FAILED}
    assert catalog.rollback("pbmc").version == v3  # v3 was live before v2 went live again
    assert catalog.rollback("pbmc", to=v1).version == v1
    assert catalog.rollback("pbmc", to=v3).version == v3  # roll forward
    assert catalog.rollback("pbmc").version == v1  # was 409 ("no retired version is older")
    assert catalog.live_before("pbmc") == v3
    rows = sql(engine, "SELECT from_version, to_version, action FROM pointer_history ORDER BY id")
    moves = [(v2, v3), (v3, v1), (v1, v3), (v3, v1)]
    assert rows[-4:] == [(a, b, "rollback") for a, b in moves]


def test_rollback_to_a_named_version(catalog: Catalog) -> None:
    v1, v2, v3 = (new_version(catalog) for _ in range(3))
    catalog.publish("pbmc", v1)
    catalog.publish("pbmc", v2)
    assert catalog.rollback("pbmc", to=v3).version == v3  # verified, never published
    assert statuses(catalog) == {v1: S.RETIRED, v2: S.RETIRED, v3: S.PUBLISHED}
    assert catalog.rollback("pbmc", to=v1).version == v1
    assert catalog.current("pbmc").version == v1
    with pytest.raises(CatalogError, match="is published"):
        catalog.rollback("pbmc", to=v1)
    building = new_version(catalog, verify=False)
    with pytest.raises(CatalogError, match="is building"):
        catalog.rollback("pbmc", to=building)
    with pytest.raises(VersionNotFound, match="nope"):
        catalog.rollback("pbmc", to="nope")


def test_rollback_needs_something_to_roll_back(catalog: Catalog) -> None:
    with pytest.raises(DatasetNotFound, match="'ghost'"):
        catalog.rollback("ghost")
    v1 = new_version(catalog)
    with pytest.raises(CatalogError, match="nothing is published"):
        catalog.rollback("pbmc")
    catalog.publish("pbmc", v1)
    with pytest.raises(CatalogError, match="no version was live before the current version"):
        catalog.rollback("pbmc")
    assert catalog.live_before("pbmc") is None


def test_versions_with_equal_timestamps_order_by_creation(catalog: Catalog, engine: sa.Engine) -> None:
    v1, v2, v3 = (new_version(catalog) for _ in range(3))
    with engine.begin() as conn:  # make the tie explicit rather than hoping for one
        conn.execute(sa.text("UPDATE versions SET created_at = (SELECT min(created_at) FROM versions)"))
    assert [r.version for r in catalog.versions("pbmc")] == [v3, v2, v1]
    catalog.publish("pbmc", v1)
    catalog.publish("pbmc", v2)
    catalog.publish("pbmc", v3)
    assert catalog.rollback("pbmc").version == v2


# -- reads ---------------------------------------------------------------------------------


def test_unknown_names_raise_not_found(catalog: Catalog) -> None:
    new_version(catalog)
    with pytest.raises(DatasetNotFound, match="'ghost'") as found:
        catalog.current("ghost")
    assert isinstance(found.value, KeyError) and isinstance(found.value, NotFound)
    with pytest.raises(DatasetNotFound, match="'ghost'"):
        catalog.versions("ghost")
    with pytest.raises(DatasetNotFound, match="'ghost'"):
        catalog.publish("ghost", "v")
    with pytest.raises(VersionNotFound, match="dataset 'pbmc' has no version 'nope'") as missing:
        catalog.get_version("pbmc", "nope")
    assert isinstance(missing.value, KeyError)
    with pytest.raises(VersionNotFound, match="'nope'"):
        catalog.publish("pbmc", "nope")
    with pytest.raises(VersionNotFound, match="'nope'"):
        catalog.mark_failed("pbmc", "nope", "x")
    with pytest.raises(DatasetNotFound, match="'pbmc'"):
        catalog.current("pbmc")  # exists, but nothing is published


def test_versions_newest_first(catalog: Catalog) -> None:
    created = [new_version(catalog, verify=False) for _ in range(6)]
    new_version(catalog, "other")
    listed = catalog.versions("pbmc")
    assert [r.version for r in listed] == created[::-1]
    assert all(r.dataset == "pbmc" for r in listed)
    stamps = [r.created for r in listed]
    assert stamps == sorted(stamps, reverse=True)


def test_datasets_sorted_with_current(catalog: Catalog) -> None:
    live = new_version(catalog, "zebrafish")
    new_version(catalog, "arabidopsis")
    catalog.publish("zebrafish", live)
    listed = catalog.datasets()
    assert [d.name for d in listed] == ["arabidopsis", "zebrafish"]
    assert all(isinstance(d, DatasetRecord) and d.created.utcoffset() == timedelta(0) for d in listed)
    assert listed[0].current is None
    assert listed[1].current == catalog.current("zebrafish")


def test_json_round_trip(catalog: Catalog) -> None:
    params = {
        "groupby": ["cell_type", "donor"],
        "min_cells": 3,
        "scale": 0.5,
        "name": "Zürich 🧬",
        "x": None,
    }
    info = {
        "views": {"summary": {"encoding": "summary", "version": "0.1.0"}},
        "nested": [[1, 2], {"a": True}],
    }
    catalog.create_version("pbmc", "v1", input_name=None, input_sha256=None, params=params)
    catalog.mark_verified("pbmc", "v1", path="pbmc/v1", n_cells=1, n_genes=1, info=info)
    record = catalog.get_version("pbmc", "v1")
    assert record.params == params and record.info == info
    assert record.input_name is None and record.input_sha256 is None


def test_numpy_values_are_stored_as_plain_json(catalog: Catalog) -> None:
    params = {"min_cells": np.int64(3), "scale": np.float32(0.5), "genes": np.array([1, 2])}
    catalog.create_version("pbmc", "v1", input_name=None, input_sha256=None, params=params)
    info = {"n_groups": np.int32(4)}
    n_cells: Any = np.int64(9)  # counts taken from array shapes are numpy integers
    record = catalog.mark_verified("pbmc", "v1", path="p", n_cells=n_cells, n_genes=1, info=info)
    assert record.params == {"min_cells": 3, "scale": 0.5, "genes": [1, 2]}
    assert type(record.params["min_cells"]) is int and type(record.n_cells) is int
    assert record.info == {"n_groups": 4}


def test_values_that_are_not_json_are_refused(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="params of version v1 of dataset 'pbmc'"):
        catalog.create_version("pbmc", "v1", input_name=None, input_sha256=None, params={"f": object()})
    catalog.create_version("pbmc", "v1", input_name=None, input_sha256=None, params={})
    with pytest.raises(CatalogError, match="info of version v1"):
        catalog.mark_verified("pbmc", "v1", path="p", n_cells=1, n_genes=1, info={"x": float("nan")})
    assert catalog.get_version("pbmc", "v1").status == S.BUILDING


def test_unreachable_database_is_a_catalog_error() -> None:
    url = "postgresql+psycopg://widecube:secret@127.0.0.1:1/nowhere"
    with pytest.raises(CatalogError, match="cannot open the catalog") as refused:
        Catalog(url)
    assert "secret" not in str(refused.value)


def test_records_are_frozen(catalog: Catalog) -> None:
    record = catalog.get_version("pbmc", new_version(catalog))
    assert isinstance(record, VersionRecord)
    with pytest.raises(AttributeError):
        record.status = S.FAILED  # type: ignore[misc]


# -- concurrency ---------------------------------------------------------------------------


def test_concurrent_publishes_serialize(
    catalog: Catalog, open_catalog: Callable[[], Catalog], engine: sa.Engine
) -> None:
    first = new_version(catalog)
    catalog.publish("pbmc", first)
    batches = [[new_version(catalog) for _ in range(10)] for _ in range(2)]
    every = {first, *batches[0], *batches[1]}
    # Separate instances, opened before the race so that it is all publishing and reading.
    writer_catalogs = [open_catalog() for _ in batches]
    reader_catalog = open_catalog()
    reading, writers_done = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    seen: list[VersionRecord] = []

    def publish_all(mine: Catalog, versions: list[str]) -> None:
        try:
            for version in versions:
                mine.publish("pbmc", version)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    def read_until_done() -> None:
        try:
            while not writers_done.is_set():
                seen.append(reader_catalog.current("pbmc"))
                reading.set()
        except BaseException as exc:
            errors.append(exc)
        finally:
            reading.set()

    reader = threading.Thread(target=read_until_done)
    writers = [
        threading.Thread(target=publish_all, args=(mine, batch))
        for mine, batch in zip(writer_catalogs, batches, strict=True)
    ]
    reader.start()
    reading.wait()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    writers_done.set()
    reader.join()

    assert errors == []
    final = statuses(catalog)
    published = [v for v, status in final.items() if status == S.PUBLISHED]
    assert len(published) == 1
    assert sql(engine, "SELECT version_id FROM pointers") == [(published[0],)]
    assert {v for v, status in final.items() if status == S.RETIRED} == every - set(published)
    history = sql(engine, "SELECT from_version, to_version FROM pointer_history ORDER BY id")
    assert len(history) == 21 and history[0] == (None, first)
    assert sorted(str(to) for _, to in history[1:]) == sorted([*batches[0], *batches[1]])
    # The pointer moved as a chain: each publish retired exactly what the previous one set.
    assert all(history[i][0] == history[i - 1][1] for i in range(1, len(history)))
    assert history[-1][1] == published[0]
    assert seen, "the reader never ran"
    assert all(r.status == S.PUBLISHED and r.path is not None and r.version in every for r in seen)


@pytest.mark.subprocess
def test_a_current_catalog_opens_without_alembic_and_a_new_one_is_migrated(tmp_path: Path) -> None:
    """The first process creates the schema through Alembic; the next finds ``alembic_version``
    at head and never imports Alembic (0.2 s of start-up), yet sees the same tables."""
    probe = (
        "import json, sys; from widecube.catalog import Catalog; "
        "c = Catalog(sys.argv[1]); c.close(); print(json.dumps('alembic' in sys.modules))"
    )
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    command = [sys.executable, "-c", probe, url]
    runs = [subprocess.run(command, capture_output=True, text=True, timeout=120) for _ in "ab"]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    assert [json.loads(r.stdout) for r in runs] == [True, False]
    engine = sa.create_engine(url)
    try:
        assert sql(engine, "SELECT version_num FROM alembic_version") == [("0006",)]
    finally:
        engine.dispose()
