"""``Storage.children`` (one level of names, what garbage collection lists) on a folder and on
S3 (moto on loopback), and garbage collection removing a failed version's objects through the
store interface."""

from __future__ import annotations

from pathlib import Path

import pytest

from _s3 import moto_bucket
from widecube.access import Actor
from widecube.catalog import Catalog
from widecube.config import Settings
from widecube.query import Widecube
from widecube.snapshot import Storage, open_storage

FILES = ["datasets/a/v1/manifest.json", "datasets/a/v1/x/0", "datasets/a/v2/y", "datasets/b/z", "top.txt"]


def _fill(store: Storage) -> None:
    for i, rel in enumerate(FILES):
        store.put(rel, b"x" * (i + 1))


def _expect(store: Storage) -> None:
    assert store.names() == {"datasets", "top.txt"}
    assert store.names("datasets") == {"a", "b"}
    assert store.names("datasets/a") == {"v1", "v2"}
    assert store.names("datasets/a/v1") == {"manifest.json", "x"}
    assert store.names("nothing/here") == set()


def test_children_of_a_folder(tmp_path: Path) -> None:
    store = open_storage(tmp_path / "s")
    _fill(store)
    _expect(store)


@pytest.mark.slow
@pytest.mark.subprocess
def test_children_on_s3_and_gc_removes_a_failed_versions_objects(tmp_path: Path) -> None:
    with moto_bucket("lake") as s3:
        store = open_storage("s3://lake/pre")
        _fill(store)
        _expect(store)
        settings = Settings(
            storage="s3://lake/pre",
            catalog_url=f"sqlite:///{tmp_path / 'c.sqlite'}",
            cache=tmp_path / "cache",
        )
        failed = "f" * 32
        with Catalog(settings.catalog_url) as catalog:
            catalog.create_version("a", failed, input_name=None, input_sha256=None, params={})
            catalog.mark_failed("a", failed, "killed in compute")
        store.put(f"datasets/a/{failed}/views/v.zarr/c/0", b"1" * 500)
        wc = Widecube(settings)
        report = wc.gc("a", actor=Actor.cli("test"))
        wc.close()
        assert [(i.kind, i.version, i.bytes) for i in report.removed] == [("leftover", failed, 500)]
        keys = {
            o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="pre/datasets/a/").get("Contents", [])
        }
        assert keys == {"pre/datasets/a/v1/manifest.json", "pre/datasets/a/v1/x/0", "pre/datasets/a/v2/y"}
