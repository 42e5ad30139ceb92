"""Storage tiers: archive and restore on a folder and on S3 (moto's server on loopback), in a
storage class, streamed in chunks.

References are independent of widecube: numpy means from the input (``_lake.expected_means``),
hashlib over bytes read from disk or by boto3, boto3's ``head_object`` for each object's storage
class, and the HTTP answer given before the version was archived.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest
from fastapi.testclient import TestClient

from _lake import GENE, TYPES, clone_version, expected_means, tiny_input
from _s3 import moto_bucket
from widecube.access import Actor
from widecube.api import create_app
from widecube.catalog import Catalog, VersionRecord, VersionStatus
from widecube.config import Settings
from widecube.errors import ArchiveNotThawed, CatalogError, InvalidQuery, VersionArchived
from widecube.pipeline import Jobs
from widecube.query import Widecube, _tiers
from widecube.snapshot import LocalStorage

pytestmark = pytest.mark.slow
CLI = Actor.cli("test")
MiB = 1 << 20
BUCKET = "tier-lake"


@dataclass
class Lake:
    settings: Settings
    catalog: Catalog
    source: VersionRecord
    means: list[float]  # numpy, from the input
    count: int = 0

    def retired(self, extra: dict[str, dict[str, object]] | None = None) -> tuple[str, str]:
        """A new dataset with two published versions: the first (retired) and its name."""
        self.count += 1
        dataset = f"t{self.count}"
        first = clone_version(self.settings, self.catalog, self.source, dataset=dataset, extra=extra)
        self.catalog.publish(dataset, first)
        self.catalog.publish(
            dataset, clone_version(self.settings, self.catalog, self.source, dataset=dataset)
        )
        return dataset, first

    def service(self, **settings: Any) -> Widecube:
        return Widecube(self.settings.model_copy(update=settings))


def _lake(settings: Settings, root: Path) -> Iterator[Lake]:
    with Catalog(settings.catalog_url) as catalog:
        path, adata = tiny_input(root, 0)
        record = Jobs(settings, catalog).ingest(
            path, dataset="src", groupbys=["cell_type"], views="summary", actor=CLI
        )
        yield Lake(settings, catalog, record, expected_means(adata))


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    root = tmp_path_factory.mktemp("tiers")
    settings = Settings(storage=root / "store", archive_storage=root / "cold", gc_grace=0.0, auth=False)
    yield from _lake(settings, root)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lake, Any]]:
    """A lake whose snapshots are objects under s3://tier-lake/hot, and boto3's client."""
    root = tmp_path_factory.mktemp("tiers-s3")
    with moto_bucket(BUCKET) as client:
        settings = Settings(
            storage=f"s3://{BUCKET}/hot",
            catalog_url=f"sqlite:///{root / 'catalog.sqlite'}",
            cache=root / "cache",
            gc_grace=0.0,
            auth=False,
        )
        for lake in _lake(settings, root):
            yield lake, client


def _random_file(path: Path, size: int) -> dict[str, object]:
    """Write ``size`` random bytes, 1 MiB at a time; their manifest entry (sha256 by hashlib)."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            piece = os.urandom(MiB)
            h.update(piece)
            f.write(piece)
    return {"sha256": h.hexdigest(), "size": size}


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(MiB):
            h.update(piece)
    return h.hexdigest()


def _means(wc: Widecube, dataset: str, version: str) -> list[float]:
    found = wc.summary(
        dataset, genes=[GENE], groupby="cell_type", stats=["mean"], layer="input", version=version, actor=CLI
    )
    values = np.asarray(found["values"]["mean"])[:, 0]
    return [float(values[list(found["groups"]).index(t)]) for t in TYPES]


def _query(version: str) -> dict[str, Any]:
    return {
        "genes": [GENE],
        "groupby": "cell_type",
        "stats": ["mean", "var"],
        "layer": "input",
        "version": version,
    }


# -- on a folder -------------------------------------------------------------------------------


def test_archive_and_restore_stream_a_file_larger_than_the_chunk_in_bounded_memory(
    local: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 64 * MiB
    big = _random_file(tmp_path / "big.bin", size)
    dataset, v = local.retired(extra={"views/big.bin": big})
    assert isinstance(local.settings.storage, Path) and isinstance(local.settings.archive_storage, Path)
    hot = local.settings.storage / "datasets" / dataset / v
    shutil.copyfile(tmp_path / "big.bin", hot / "views" / "big.bin")
    monkeypatch.setattr(_tiers, "COPY_CHUNK", MiB)
    chunks: list[int] = []  # the sizes of big.bin's chunks as the copy reads them
    stream = LocalStorage.stream

    def counted(self: LocalStorage, relpath: str, chunk_size: int = MiB) -> Iterator[bytes]:
        for chunk in stream(self, relpath, chunk_size):
            if relpath == "views/big.bin":
                chunks.append(len(chunk))
            yield chunk

    monkeypatch.setattr(LocalStorage, "stream", counted)

    tracemalloc.start()  # the instrument sees a whole-file read
    whole = (hot / "views" / "big.bin").read_bytes()
    whole_peak = tracemalloc.get_traced_memory()[1]
    del whole
    tracemalloc.stop()
    assert whole_peak >= size

    wc = local.service()
    tracemalloc.start()
    moved = wc.archive(dataset, v, actor=CLI)
    archive_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # streamed: 1 MiB chunks in 4 threads, then the read-back check's 4 MiB reads (about 16 MiB
    # at most, whatever the file's size); a whole-file copy holds the 64 MiB file at least
    assert chunks == [MiB] * (size // MiB)
    assert archive_peak < size / 2, f"{archive_peak / MiB:.1f} MiB traced while archiving a 64 MiB file"
    cold = local.settings.archive_storage / "datasets" / dataset / v
    assert moved.status == "archived" and moved.location == str(cold) and moved.storage_class is None
    assert _sha(cold / "views" / "big.bin") == big["sha256"]
    on_disk = sum(p.stat().st_size for p in hot.rglob("*") if p.is_file())
    assert moved.bytes == on_disk
    with pytest.raises(VersionArchived, match=f"widecube restore {dataset}@{v}"):
        _means(wc, dataset, v)

    chunks.clear()
    tracemalloc.start()
    back = wc.restore(dataset, v, actor=CLI)
    restore_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert chunks == [MiB] * (size // MiB) and restore_peak < size / 2
    path = local.catalog.get_version(dataset, v).path
    assert back.status == "retired" and path is not None and not cold.exists()
    assert _sha(local.settings.storage / path / "views" / "big.bin") == big["sha256"]
    assert _means(wc, dataset, v) == pytest.approx(local.means)
    wc.close()


def test_a_byte_flipped_in_the_hot_copy_is_named_and_nothing_moves(local: Lake) -> None:
    dataset, v = local.retired()
    assert isinstance(local.settings.storage, Path) and isinstance(local.settings.archive_storage, Path)
    hot = local.settings.storage / "datasets" / dataset / v
    manifest = json.loads((hot / "manifest.json").read_text())
    rel = sorted(manifest["files"])[len(manifest["files"]) // 2]
    data = bytearray((hot / rel).read_bytes())
    data[len(data) // 2] ^= 0x01
    (hot / rel).write_bytes(bytes(data))
    wc = local.service()
    with pytest.raises(
        CatalogError, match=re.escape(f"file {rel} does not match its checksum at {hot}; nothing")
    ):
        wc.archive(dataset, v, actor=CLI)
    assert local.catalog.get_version(dataset, v).status == VersionStatus.RETIRED
    assert not (local.settings.archive_storage / "datasets" / dataset / v).exists()
    wc.close()


def test_a_storage_class_needs_an_object_store_and_a_known_name(local: Lake) -> None:
    dataset, v = local.retired()
    wc = local.service(archive_storage_class="GLACIER_IR")
    with pytest.raises(CatalogError, match="storage class GLACIER_IR: .* is a local folder"):
        wc.archive(dataset, v, actor=CLI)
    wc.close()
    wc = local.service(archive_storage=None)
    with pytest.raises(CatalogError, match="no cold storage: set WIDECUBE_ARCHIVE_STORAGE"):
        wc.archive(dataset, v, storage_class="GLACIER_IR", actor=CLI)
    with pytest.raises(InvalidQuery, match="storage class 'FROZEN': one of STANDARD_IA, .*DEEP_ARCHIVE"):
        wc.archive(dataset, v, storage_class="FROZEN", actor=CLI)
    wc.close()
    with pytest.raises(pydantic.ValidationError, match="archive_storage_class"):
        Settings(storage=local.settings.storage, archive_storage_class="FROZEN")
    assert local.catalog.get_version(dataset, v).status == VersionStatus.RETIRED


# -- on S3 -------------------------------------------------------------------------------------


def _keys(client: Any, prefix: str) -> dict[str, str]:
    """``{key relative to prefix: storage class}`` of the objects under ``prefix`` (boto3)."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return {
        k[len(prefix) :]: client.head_object(Bucket=BUCKET, Key=k).get("StorageClass", "STANDARD")
        for k in keys
    }


def _body(client: Any, key: str) -> bytes:
    return bytes(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())


@pytest.mark.subprocess
def test_s3_archive_in_glacier_ir_answers_409_and_restores_to_standard_with_the_same_answers(
    s3: tuple[Lake, Any],
) -> None:
    lake, client = s3
    dataset, v = lake.retired()
    wc = lake.service(archive_storage_class="GLACIER_IR")  # no archive URL: the store's cold/ prefix
    with TestClient(create_app(wc.settings, service=wc, upkeep=False, jobs=False)) as http:
        before = http.post(f"/api/v1/datasets/{dataset}/summary", json=_query(v))
        assert before.status_code == 200
        means = np.asarray(before.json()["values"]["mean"])[:, 0]
        groups = before.json()["groups"]
        assert [float(means[groups.index(t)]) for t in TYPES] == pytest.approx(lake.means)
        files = set(json.loads(_body(client, f"hot/datasets/{dataset}/{v}/manifest.json"))["files"])

        moved = wc.archive(dataset, v, actor=CLI)
        assert moved.storage_class == "GLACIER_IR"
        assert moved.location == f"s3://{BUCKET}/hot/cold/datasets/{dataset}/{v}"
        cold = _keys(client, f"hot/cold/datasets/{dataset}/{v}/")
        assert cold == dict.fromkeys(files | {"manifest.json"}, "GLACIER_IR")
        manifest = json.loads(_body(client, f"hot/cold/datasets/{dataset}/{v}/manifest.json"))
        for rel, entry in manifest["files"].items():  # GLACIER_IR reads at once
            body = _body(client, f"hot/cold/datasets/{dataset}/{v}/{rel}")
            assert hashlib.sha256(body).hexdigest() == entry["sha256"], rel

        archived = http.post(f"/api/v1/datasets/{dataset}/summary", json=_query(v))
        assert archived.status_code == 409
        assert f"restore it with `widecube restore {dataset}@{v}`" in archived.json()["detail"]
        wc.gc(dataset, actor=CLI)  # grace 0: the hot objects go
        assert _keys(client, f"hot/datasets/{dataset}/{v}") == {}

        back = http.post(f"/api/v1/admin/datasets/{dataset}/restore", json={"version": v})
        assert back.status_code == 200 and back.json()["storage_class"] is None
        path = lake.catalog.get_version(dataset, v).path
        assert back.json()["status"] == "retired" and back.json()["location"] == f"s3://{BUCKET}/hot/{path}"
        assert _keys(client, f"hot/{path}/") == dict.fromkeys(files | {"manifest.json"}, "STANDARD")
        assert _keys(client, f"hot/cold/datasets/{dataset}/{v}/") == {}
        after = http.post(f"/api/v1/datasets/{dataset}/summary", json=_query(v))
        assert after.status_code == 200 and after.json() == before.json()
    wc.close()


@pytest.mark.subprocess
def test_s3_deep_archive_must_be_thawed_before_a_restore_409_then_restores(
    s3: tuple[Lake, Any], tmp_path: Path
) -> None:
    lake, client = s3
    big = _random_file(tmp_path / "big.bin", 12 * MiB)  # more than a part: a multipart upload
    dataset, v = lake.retired(extra={"views/big.bin": big})
    client.upload_file(str(tmp_path / "big.bin"), BUCKET, f"hot/datasets/{dataset}/{v}/views/big.bin")
    vault = f"s3://{BUCKET}/vault"
    wc = lake.service(archive_storage=vault)
    with TestClient(create_app(wc.settings, service=wc, upkeep=False, jobs=False)) as http:
        before = http.post(f"/api/v1/datasets/{dataset}/summary", json=_query(v))
        moved = http.post(
            f"/api/v1/admin/datasets/{dataset}/archive", json={"version": v, "storage_class": "DEEP_ARCHIVE"}
        )
        assert moved.status_code == 200 and moved.json()["storage_class"] == "DEEP_ARCHIVE"
        cold = _keys(client, f"vault/datasets/{dataset}/{v}/")
        assert "views/big.bin" in cold and set(cold.values()) == {"DEEP_ARCHIVE"}
        head = client.head_object(Bucket=BUCKET, Key=f"vault/datasets/{dataset}/{v}/views/big.bin")
        assert head["ContentLength"] == 12 * MiB and head["ETag"].endswith('-2"')
        wc.gc(dataset, actor=CLI)

        refused = http.post(f"/api/v1/admin/datasets/{dataset}/restore", json={"version": v})
        assert refused.status_code == 409
        detail = refused.json()["detail"]
        assert f"archived in DEEP_ARCHIVE at {vault}/datasets/{dataset}/{v}" in detail
        assert "aws s3api restore-object" in detail and f"`widecube restore {dataset}@{v}` again" in detail
        assert os.environ["AWS_SECRET_ACCESS_KEY"] not in detail and "127.0.0.1" not in detail
        with pytest.raises(ArchiveNotThawed):
            wc.restore(dataset, v, actor=CLI)
        done = _cli(wc.settings, "restore", f"{dataset}@{v}")
        assert done.returncode == 1 and "S3 must thaw its objects" in done.stderr, done.stderr
        assert lake.catalog.get_version(dataset, v).status == VersionStatus.ARCHIVED
        assert _keys(client, f"hot/datasets/{dataset}/{v}") == {}  # nothing half-restored
        assert len(_keys(client, f"vault/datasets/{dataset}/{v}/")) == len(cold)

        for key in cold:  # S3 thaws them (moto: at once)
            client.restore_object(
                Bucket=BUCKET, Key=f"vault/datasets/{dataset}/{v}/{key}", RestoreRequest={"Days": 1}
            )
        back = wc.restore(dataset, v, actor=CLI)
        path = lake.catalog.get_version(dataset, v).path
        assert back.status == "retired" and _keys(client, f"hot/{path}/") == dict.fromkeys(cold, "STANDARD")
        body = _body(client, f"hot/{path}/views/big.bin")
        assert hashlib.sha256(body).hexdigest() == big["sha256"]
        assert _keys(client, f"vault/datasets/{dataset}/{v}/") == {}
        after = http.post(f"/api/v1/datasets/{dataset}/summary", json=_query(v))
        assert after.status_code == 200 and after.json() == before.json()
    assert _means(wc, dataset, v) == pytest.approx(lake.means)
    wc.close()


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "WIDECUBE_STORAGE": str(settings.storage),
        "WIDECUBE_CATALOG_URL": settings.catalog_url,
        "WIDECUBE_CACHE": str(settings.cache),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    return subprocess.run(
        [sys.executable, "-m", "widecube.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )
