"""Retention and garbage collection, tiers (archive, restore), scrubbing and the manifest check,
on real snapshots and a real catalog: SQLite and PostgreSQL.

Versions are cheap copies of a few tiny ingests (``_lake.clone_version``); every expected
state is written out by hand (which versions go, which stay and why) and checked against the
catalog, the files on disk (os, not the store) and what reads answer (numpy from the input).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from _lake import GENE, clone_version, expected_means, tiny_input
from _pg import postgres_schema
from widecube.access import Actor
from widecube.catalog import Catalog, VersionRecord, VersionStatus
from widecube.config import Settings
from widecube.errors import (
    CatalogError,
    DatasetNotFound,
    PermissionDenied,
    SnapshotCorrupt,
    VersionArchived,
    VersionGone,
)
from widecube.pipeline import Jobs
from widecube.query import Widecube

pytestmark = pytest.mark.slow
CLI = Actor.cli("test")
S = VersionStatus


@dataclass
class Lake:
    settings: Settings
    catalog: Catalog
    sources: list[tuple[VersionRecord, list[float]]]  # ingested versions and their expected means
    count: int = 0

    def dataset(self) -> str:
        self.count += 1
        return f"g{self.count}"

    def versions(self, dataset: str, n: int, *, publish: bool = True, source: int = 0) -> list[str]:
        made = []
        for _ in range(n):
            version = clone_version(self.settings, self.catalog, self.sources[source][0], dataset=dataset)
            if publish:
                self.catalog.publish(dataset, version)
            made.append(version)
        return made

    def service(self, **settings: object) -> Widecube:
        return Widecube(self.settings.model_copy(update=settings))

    def folder(self, dataset: str, version: str) -> Path:
        assert isinstance(self.settings.storage, Path)
        return self.settings.storage / "datasets" / dataset / version

    def status(self, dataset: str, version: str) -> VersionStatus:
        return self.catalog.get_version(dataset, version).status


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def lake(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    root = tmp_path_factory.mktemp(f"lake-{request.param}")
    with postgres_schema() if request.param == "postgresql" else _no_schema() as (url, _):
        settings = Settings(
            storage=root / "store", catalog_url=url or "", gc_grace=0.0, archive_storage=root / "cold"
        )
        with Catalog(settings.catalog_url) as catalog:
            jobs = Jobs(settings, catalog)
            sources = []
            for seed in (0, 1):
                path, adata = tiny_input(root, seed)
                record = jobs.ingest(path, dataset="src", groupbys=["cell_type"], views="summary", actor=CLI)
                sources.append((record, expected_means(adata)))
            yield Lake(settings, catalog, sources)


class _no_schema:
    def __enter__(self) -> tuple[str, None]:
        return "", None

    def __exit__(self, *exc: object) -> None:
        return None


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _means(wc: Widecube, dataset: str, version: str) -> list[float]:
    found = wc.summary(
        dataset, genes=[GENE], groupby="cell_type", stats=["mean"], layer="input", version=version, actor=CLI
    )
    groups = list(found["groups"])
    values = np.asarray(found["values"]["mean"])[:, 0]
    return [float(values[groups.index(t)]) for t in ("T", "B", "NK", "Mono", "solo")]


# -- garbage collection ------------------------------------------------------------------------


def test_gc_removes_what_the_policy_releases_and_keeps_a_row_for_each(lake: Lake) -> None:
    d = lake.dataset()
    v = lake.versions(d, 6)  # v[5] live
    held = lake.versions(d, 1, publish=False)[0]  # verified, newer than the live one: waiting
    wc = lake.service()
    wc.retention(d, keep_last=2, read_within_minutes=0, actor=CLI)
    wc.pin(d, v[1], actor=CLI)
    wc.create_release(f"rel-{d}", [f"{d}@{v[2]}"], actor=CLI)
    sizes = {x: _bytes(lake.folder(d, x)) for x in (v[0], v[3])}
    assert all(sizes.values())

    dry = wc.gc(d, dry_run=True, actor=CLI)
    assert sorted((i.kind, i.version) for i in dry.removed) == sorted([("version", v[0]), ("version", v[3])])
    assert dry.bytes_freed == sum(sizes.values())
    assert lake.status(d, v[0]) == S.RETIRED and lake.folder(d, v[0]).is_dir()  # a dry run changes nothing

    done = wc.gc(d, actor=CLI)
    assert sorted((i.kind, i.version) for i in done.removed) == sorted(
        [("version", v[0]), ("version", v[3]), ("purge", v[0]), ("purge", v[3])]
    )
    assert done.bytes_freed == sum(sizes.values())
    for gone in (v[0], v[3]):
        record = lake.catalog.get_version(d, gone)
        assert record.status == S.REMOVED
        assert "keep_last=2" in str(record.reason)
        assert not lake.folder(d, gone).exists()
        with pytest.raises(VersionGone, match=f"version {gone} of dataset '{d}' was removed"):
            _means(wc, d, gone)
    kept = {v[1]: S.RETIRED, v[2]: S.RETIRED, v[4]: S.RETIRED, v[5]: S.PUBLISHED, held: S.VERIFIED}
    assert {x: lake.status(d, x) for x in kept} == kept
    assert all(lake.folder(d, x).is_dir() for x in kept)
    rows = {r.version: r for r in wc.inventory(d, actor=CLI)}
    assert rows[v[0]].status == "removed" and rows[v[0]].bytes == sizes[v[0]] and rows[v[0]].location is None
    assert rows[v[0]].changed_by is not None and "keep_last=2" in rows[v[0]].changed_by
    assert rows[v[1]].reasons == ["pinned"]
    assert rows[v[2]].reasons == [f"release rel-{d}"]
    assert rows[v[5]].reasons == ["live", "one of the last 2 published"]
    assert rows[held].reasons == ["waiting to be published"]
    assert rows[v[4]].bytes == _bytes(lake.folder(d, v[4]))
    assert wc.gc(d, actor=CLI).removed == []  # nothing more to do
    wc.close()


def test_a_version_read_recently_is_kept_across_processes(lake: Lake) -> None:
    d = lake.dataset()
    v = lake.versions(d, 3)
    reader, collector = lake.service(), lake.service()  # two processes' facades
    collector.retention(d, keep_last=1, read_within_minutes=10, actor=CLI)
    assert _means(reader, d, v[0]) == pytest.approx(lake.sources[0][1])
    reader.flush_reads(actor=CLI)  # what the reading server's upkeep does every round
    removed = [i.version for i in collector.gc(d, actor=CLI).removed if i.kind == "version"]
    assert removed == [v[1]]
    row = next(r for r in collector.inventory(d, actor=CLI) if r.version == v[0])
    assert row.retention == "keep" and row.reasons[0].startswith("read ")
    reader.close()
    collector.close()


def test_leftovers_of_failed_and_unknown_versions_and_their_caches_go(lake: Lake) -> None:
    d = lake.dataset()
    (live,) = lake.versions(d, 1)
    stray = lake.folder(d, "0" * 32)
    stray.mkdir(parents=True)
    (stray / "x.bin").write_bytes(b"1" * 1000)
    failed = lake.versions(d, 1, publish=False)[0]
    lake.catalog.mark_failed(d, failed, "killed")  # its folder stays behind, as a killed job leaves it
    failed_size = _bytes(lake.folder(d, failed))
    notes = lake.folder(d, "notes")
    notes.mkdir()
    wc = lake.service()
    assert lake.settings.cache is not None
    cache = lake.settings.cache / failed
    cache.mkdir(parents=True)
    (cache / "a.npy").write_bytes(b"2" * 300)
    report = wc.gc(d, actor=CLI)
    found = {(i.kind, i.version, i.bytes) for i in report.removed}
    assert ("leftover", "0" * 32, 1000) in found
    assert ("leftover", failed, failed_size) in found
    assert ("cache", failed, 300) in found
    assert not stray.exists() and not lake.folder(d, failed).exists() and not cache.exists()
    assert notes.is_dir() and lake.folder(d, live).is_dir()  # not a version's folder; the live one
    wc.close()


def test_files_stay_for_the_grace_period_and_readers_get_410_meanwhile(lake: Lake) -> None:
    d = lake.dataset()
    v = lake.versions(d, 3)
    wc = lake.service(gc_grace=3600.0)
    wc.retention(d, keep_last=1, read_within_minutes=0, actor=CLI)
    assert _means(wc, d, v[0]) == pytest.approx(lake.sources[0][1])  # opened before the gc
    report = wc.gc(d, actor=CLI)
    assert sorted(i.kind for i in report.removed) == ["version", "version"] and report.bytes_freed == 0
    assert lake.folder(d, v[0]).is_dir()  # in its grace: a request that resolved it finishes
    with pytest.raises(VersionGone):
        _means(wc, d, v[0])
    with lake.catalog._engine.begin() as conn:  # the grace is over
        conn.execute(
            sa.text("UPDATE version_lifecycle SET purge_due = :t"),
            {"t": datetime.now(UTC) - timedelta(seconds=1)},
        )
    lake.catalog._changes.committed()
    purged = wc.gc(d, actor=CLI)
    assert sorted((i.kind, i.version) for i in purged.removed) == sorted(
        [("purge", v[0]), ("purge", v[1]), ("cache", v[0])]  # v[0] was read: decoded into the cache
    )
    assert not lake.folder(d, v[0]).exists() and lake.folder(d, v[2]).is_dir()
    wc.close()


# -- tiers -------------------------------------------------------------------------------------


def test_archive_answers_409_with_how_to_restore_and_restore_brings_it_back(lake: Lake) -> None:
    d = lake.dataset()
    v = lake.versions(d, 2, source=1)
    wc = lake.service()
    with pytest.raises(CatalogError, match="published"):
        wc.archive(d, v[1], actor=CLI)  # the live one
    moved = wc.archive(d, v[0], actor=CLI)
    cold = lake.settings.archive_storage
    assert isinstance(cold, Path)
    assert moved.status == "archived" and (cold / "datasets" / d / v[0] / "manifest.json").is_file()
    assert lake.status(d, v[0]) == S.ARCHIVED
    with pytest.raises(VersionArchived, match=f"widecube restore {d}@{v[0]}"):
        _means(wc, d, v[0])
    with pytest.raises(CatalogError):
        wc.rollback(d, v[0], actor=CLI)
    wc.gc(d, actor=CLI)  # grace 0: the hot copy goes
    assert not lake.folder(d, v[0]).exists()
    row = next(r for r in wc.inventory(d, actor=CLI) if r.version == v[0])
    assert row.location == f"{cold}/datasets/{d}/{v[0]}" and row.reasons[0] == "archived"
    back = wc.restore(d, v[0], actor=CLI)
    assert back.status == "retired" and lake.status(d, v[0]) == S.RETIRED
    assert not (cold / "datasets" / d / v[0]).exists()
    assert _means(wc, d, v[0]) == pytest.approx(lake.sources[1][1])
    wc.close()


def test_a_restore_within_the_grace_writes_beside_the_folder_waiting_for_its_purge(lake: Lake) -> None:
    d = lake.dataset()
    v = lake.versions(d, 2)
    wc = lake.service(gc_grace=3600.0)
    assert _means(wc, d, v[0]) == pytest.approx(lake.sources[0][1])
    wc.archive(d, v[0], actor=CLI)
    back = wc.restore(d, v[0], actor=CLI)
    path = lake.catalog.get_version(d, v[0]).path
    assert path is not None and path != f"datasets/{d}/{v[0]}" and back.location.endswith(path)
    with lake.catalog._engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE version_lifecycle SET purge_due = :t"),
            {"t": datetime.now(UTC) - timedelta(seconds=1)},
        )
    lake.catalog._changes.committed()
    assert [i.kind for i in wc.gc(d, actor=CLI).removed] == ["purge"]
    assert not lake.folder(d, v[0]).exists()
    assert _means(wc, d, v[0]) == pytest.approx(lake.sources[0][1])  # read from its new folder
    wc.close()


# -- scrub and the manifest check ------------------------------------------------------------


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_scrub_finds_and_names_a_flipped_byte_in_any_snapshot_file(
    lake: Lake, request: pytest.FixtureRequest
) -> None:
    source = lake.sources[0][0]
    assert source.path is not None and isinstance(lake.settings.storage, Path)
    files = sorted(
        p.relative_to(lake.settings.storage / source.path).as_posix()
        for p in (lake.settings.storage / source.path).rglob("*")
        if p.is_file()
    )
    assert len(files) > 10 and "manifest.json" in files
    if "postgresql" in request.node.callspec.id:
        files = files[:: max(1, len(files) // 3)]  # the same code on PostgreSQL: a few files suffice
    wc = lake.service()
    for rel in files:
        d = lake.dataset()
        (v,) = lake.versions(d, 1)
        _flip(lake.folder(d, v) / rel)
        report = wc.scrub(d, actor=CLI)
        assert not report.ok, rel
        (finding,) = report.versions
        assert rel in [f["file"] for f in finding.files], (rel, finding.files)
        assert finding.marked_corrupt and lake.status(d, v) == S.CORRUPT
    wc.close()


def test_scrub_repair_rolls_the_dataset_back_to_its_newest_good_version(lake: Lake) -> None:
    d = lake.dataset()
    v = lake.versions(d, 3)
    _flip(lake.folder(d, v[1]) / "manifest.json")  # an older one, corrupt too: skipped by the repair
    table = next(p for p in sorted(lake.folder(d, v[2]).rglob("*.parquet")))
    _flip(table)
    wc = lake.service()
    report = wc.scrub(d, repair=True, actor=CLI)
    by = {f.version: f for f in report.versions}
    assert by[v[2]].repaired_to == v[0] and not by[v[2]].ok and not by[v[1]].ok and by[v[0]].ok
    assert lake.catalog.current(d).version == v[0]
    assert lake.status(d, v[2]) == S.CORRUPT and lake.status(d, v[1]) == S.CORRUPT
    with pytest.raises(SnapshotCorrupt):
        _means(wc, d, v[2])
    with pytest.raises(CatalogError):
        wc.rollback(d, v[2], actor=CLI)
    assert _means(wc, d, v[0]) == pytest.approx(lake.sources[0][1])
    wc.close()


def test_the_server_refuses_a_manifest_that_is_not_the_catalogs(lake: Lake) -> None:
    d = lake.dataset()
    v = lake.versions(d, 2)
    a, b = (lake.folder(d, x) / "manifest.json" for x in v)
    a.write_bytes(b.read_bytes())  # another version's manifest (its checksums all match its files)
    manifest = lake.folder(d, v[1]) / "manifest.json"
    manifest.write_bytes(manifest.read_bytes() + b" ")  # the same content, other bytes
    wc = lake.service()
    with pytest.raises(SnapshotCorrupt, match=f"manifest.json names dataset '{d}' version {v[1]}"):
        _means(wc, d, v[0])
    with pytest.raises(SnapshotCorrupt, match="manifest.json does not match the sha256 the catalog recorded"):
        _means(wc, d, v[1])
    wc.close()


def test_gc_on_an_unchanged_lake_is_cheap_to_repeat(lake: Lake) -> None:
    """The upkeep's gc runs every few minutes; with nothing to do it removes nothing."""
    wc = lake.service()
    first = wc.gc(actor=CLI)
    second = wc.gc(actor=CLI)
    assert second.removed == [] and second.kept == first.kept
    assert os.path.isdir(lake.folder("src", lake.sources[0][0].version))
    wc.close()


# -- deleting a dataset ------------------------------------------------------------------------


def test_deleting_a_dataset_hides_it_removes_its_versions_and_purges_its_files(lake: Lake) -> None:
    name = lake.dataset()
    old, live = lake.versions(name, 2)
    lake.catalog.access.grant(name, "user:rita", "reader", by="test")
    lake.catalog.access.set_policy(name, visibility="restricted")
    owner = Actor(user="olga", via="token", groups=frozenset())
    lake.catalog.access.grant(name, "user:olga", "owner", by="test")
    wc = lake.service(auth=True)
    try:
        rita = Actor(user="rita", via="token", groups=frozenset())
        with pytest.raises(PermissionDenied):
            wc.delete(name, actor=rita)  # a reader may read, not delete
        with pytest.raises(DatasetNotFound):
            wc.delete(name, actor=Actor.anonymous())  # restricted: not even named
        planned = wc.delete(name, dry_run=True, actor=owner)
        assert sorted(planned.versions) == sorted([old, live]) and planned.purge_after is None
        assert lake.catalog.current(name).version == live  # a dry run changes nothing
        done = wc.delete(name, actor=owner)
        assert sorted(done.versions) == sorted([old, live]) and not done.dry_run
        with pytest.raises(DatasetNotFound):
            wc.summary(name, genes=[GENE], groupby="cell_type", stats=["mean"], actor=CLI)
        assert name not in {d.name for d in wc.datasets(actor=CLI)}
        assert {lake.status(name, v) for v in (old, live)} == {S.REMOVED}
        assert lake.catalog.access.lookup(name, ("user:rita", "user:olga")).roles == ()
        rows = [r.event for r in lake.catalog.audit.rows(action="delete") if r.event.dataset == name]
        assert [(e.actor, e.outcome) for e in rows] == [("rita", "denied"), (None, "denied"), ("olga", "ok")]
        row = rows[-1]
        assert sorted(row.detail["removed"]) == sorted([old, live])
        assert lake.folder(name, live).is_dir()  # files go with the next gc (the grace is 0 here)
        wc.gc(name, actor=CLI)
        assert not lake.folder(name, old).exists() and not lake.folder(name, live).exists()
    finally:
        wc.close()


def test_a_dataset_in_a_release_or_being_built_is_not_deleted(lake: Lake) -> None:
    name = lake.dataset()
    (live,) = lake.versions(name, 1)
    wc = lake.service()
    try:
        wc.create_release("keep-" + name, [name], actor=CLI)
        with pytest.raises(CatalogError, match=f"release.*keep-{name}"):
            wc.delete(name, actor=CLI)
        assert lake.catalog.current(name).version == live and lake.status(name, live) == S.PUBLISHED
        other = lake.dataset()
        lake.versions(other, 1)
        lake.catalog.create_version(other, "b" * 32, input_name="x", input_sha256=None, params={})
        with pytest.raises(CatalogError, match="being built"):
            wc.delete(other, actor=CLI)
    finally:
        wc.close()
