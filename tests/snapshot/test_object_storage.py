"""Snapshots on an object store: a real S3 API (moto's standalone server) on loopback.

The server runs as a subprocess on a port the OS picks; boto3, which shares no code with
widecube's obstore client, lists and reads the objects independently. Answers are compared
with numpy on the input and with the same dataset ingested to a local folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import httpx2 as httpx
import numpy as np
import pytest
import uvicorn

from _data import small_adata, write_h5ad
from _s3 import moto_bucket
from widecube.api import create_app
from widecube.config import Settings
from widecube.errors import VerificationError
from widecube.pipeline import ingest, verify_snapshot
from widecube.query import Widecube
from widecube.snapshot import MANIFEST, Snapshot, open_storage

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]

BUCKET = "widecube-test"
GENES = ["Gene0", "Gene3", "Gene17", "Gene59"]


@dataclass
class S3:
    endpoint: str
    client: Any  # boto3's S3 client

    def keys(self, prefix: str) -> dict[str, int]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}

    def read(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read())


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    """moto's S3 server on 127.0.0.1 (tests/_s3.py), its bucket, and boto3's client of it; the
    AWS_* variables point obstore and boto3 at it until the module's tests are done."""
    with moto_bucket(BUCKET) as client:
        yield S3(os.environ["AWS_ENDPOINT_URL"], client)


@dataclass
class Ingested:
    s3: S3
    settings: Settings
    local: Settings
    adata: ad.AnnData
    version: str
    prefix: str  # the snapshot's key prefix in the bucket


@pytest.fixture(scope="module")
def ingested(s3: S3, tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    """One small dataset ingested into s3://<bucket>/wc (SQLite catalog in tmp) and into a folder."""
    tmp = tmp_path_factory.mktemp("s3")
    adata = small_adata()
    path = write_h5ad(adata, tmp / "small.h5ad")
    settings = Settings(
        storage=f"s3://{BUCKET}/wc",
        catalog_url=f"sqlite:///{tmp / 'catalog.sqlite'}",
        cache=tmp / "cache",
        auth=False,
    )
    job = ingest(path, dataset="t", groupbys=["cell_type", "donor"], settings=settings)
    local = Settings(storage=tmp / "local")
    ingest(path, dataset="t", groupbys=["cell_type", "donor"], settings=local)
    version = str(job.version)
    return Ingested(s3, settings, local, adata, version, f"wc/datasets/t/{version}/")


def _expected(adata: ad.AnnData, groupby: str, groups: list[str], genes: list[str]) -> dict[str, np.ndarray]:
    x = np.asarray(adata.X, dtype=np.float64)[:, [int(g.removeprefix("Gene")) for g in genes]]
    labels = adata.obs[groupby].astype(str).to_numpy()
    sums = np.array([x[labels == g].sum(axis=0) for g in groups])
    n = np.array([(labels == g).sum() for g in groups], dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"sum": sums, "mean": np.where(n > 0, sums / n, np.nan)}


def test_every_file_of_the_snapshot_is_an_object_whose_bytes_match_the_manifest(ingested: Ingested) -> None:
    objects = ingested.s3.keys(ingested.prefix)
    manifest = json.loads(ingested.s3.read(ingested.prefix + MANIFEST))
    assert manifest["version"] == ingested.version
    listed = manifest["files"]
    assert len(listed) > 20  # tables, zarr metadata and chunks
    assert set(objects) == {ingested.prefix + rel for rel in listed} | {ingested.prefix + MANIFEST}
    for rel, entry in listed.items():
        data = ingested.s3.read(ingested.prefix + rel)
        assert len(data) == entry["size"] == objects[ingested.prefix + rel], rel
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], rel
    # nothing of the snapshot was left on local disk, nor outside the version's prefix
    work = ingested.settings.local
    assert not (work / "staging").exists() or not any((work / "staging").iterdir())
    assert not any(p.name == MANIFEST for p in work.rglob("*"))
    assert set(ingested.s3.keys("wc/")) == set(objects)


def test_no_secret_reaches_the_manifest_or_the_catalog(ingested: Ingested) -> None:
    key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    assert (key, secret) == ("widecube-key", "widecube-secret-not-to-be-seen")  # what is looked for
    manifest = ingested.s3.read(ingested.prefix + MANIFEST)
    assert secret.encode() not in manifest and key.encode() not in manifest
    catalog = Path(ingested.settings.catalog_url.removeprefix("sqlite:///")).read_bytes()
    assert secret.encode() not in catalog
    assert "secret" not in repr(open_storage(ingested.settings.storage))


def test_verify_reads_the_objects_and_finds_a_flipped_byte(ingested: Ingested) -> None:
    snap = Snapshot(open_storage(ingested.settings.storage).sub(f"datasets/t/{ingested.version}"))
    assert snap.check() == []
    verify_snapshot(snap)
    rel = next(r for r in snap.manifest["files"] if "/c/" in r and "summary" in r)
    key = ingested.prefix + rel
    original = ingested.s3.read(key)
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    ingested.s3.client.put_object(Bucket=BUCKET, Key=key, Body=bytes(flipped))
    try:
        faults = snap.check()
        assert [f.file for f in faults] == [rel]
        with pytest.raises(VerificationError, match=re.escape(rel)):
            verify_snapshot(snap)
        ingested.s3.client.put_object(Bucket=BUCKET, Key=key + ".extra", Body=b"x")
        assert rel + ".extra" in {f.file for f in snap.check()}  # unlisted objects count too
    finally:
        ingested.s3.client.put_object(Bucket=BUCKET, Key=key, Body=original)
        ingested.s3.client.delete_object(Bucket=BUCKET, Key=key + ".extra")
    assert snap.check() == []


def test_verify_with_a_scratch_folder_reads_each_object_once_and_checks_views_on_the_copies(
    ingested: Ingested, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingest's verify on an object store: every listed object streamed once (hashed and
    copied from the same read, but for the matrix view's values, which no invariant reads), no
    Zarr read of the store, the views' invariants run on the copies, and the copies gone
    afterwards; a flipped byte is still named, in a copied file and in an uncopied one."""
    from widecube.snapshot import _integrity
    from widecube.views.summary import SummaryReader

    snap = Snapshot(open_storage(ingested.settings.storage).sub(f"datasets/t/{ingested.version}"))
    streamed: list[str] = []
    stream, opened = snap.files.stream, []
    monkeypatch.setattr(snap.files, "stream", lambda rel, *a: streamed.append(rel) or stream(rel, *a))
    digest = snap.files.sha256  # the files hashed without a copy are read through here
    monkeypatch.setattr(snap.files, "sha256", lambda rel: streamed.append(rel) or digest(rel))
    monkeypatch.setattr(
        snap.files, "zarr", lambda *a, **k: opened.append(a) or pytest.fail("Zarr read the store")
    )
    checked_in: list[Path | None] = []
    summary_verify = SummaryReader.verify
    monkeypatch.setattr(
        SummaryReader, "verify", lambda self: checked_in.append(self.snap.files.local) or summary_verify(self)
    )
    copied: list[str] = []
    sha256 = _integrity._sha256
    monkeypatch.setattr(
        _integrity,
        "_sha256",
        lambda files, rel, to: (to is not None and copied.append(rel)) or sha256(files, rel, to),
    )
    scratch = tmp_path / "scratch"
    verify_snapshot(snap, scratch=scratch)
    assert sorted(streamed) == sorted(snap.manifest["files"])  # each once
    values = {
        r
        for r in snap.manifest["files"]
        if r.startswith(("views/matrix.zarr/X/data/c/", "views/matrix.zarr/X/indices/c/"))
    }
    assert len(values) >= 2
    assert set(copied) == set(snap.manifest["files"]) - values
    assert opened == []
    assert len(checked_in) == 1 and checked_in[0] is not None and checked_in[0].is_relative_to(scratch)
    assert not any(scratch.iterdir())  # the copies are removed

    for rel in (next(r for r in snap.manifest["files"] if "/c/" in r and "summary" in r), min(values)):
        key = ingested.prefix + rel
        original = ingested.s3.read(key)
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0x01
        ingested.s3.client.put_object(Bucket=BUCKET, Key=key, Body=bytes(flipped))
        try:
            with pytest.raises(VerificationError, match=re.escape(rel)):
                verify_snapshot(snap, scratch=scratch)
            assert not any(scratch.iterdir())
        finally:
            ingested.s3.client.put_object(Bucket=BUCKET, Key=key, Body=original)


def test_summary_from_the_store_equals_the_local_folder_and_numpy(ingested: Ingested) -> None:
    remote, local = Widecube(ingested.settings), Widecube(ingested.local)
    try:
        for groupby in ("cell_type", "donor"):
            a = remote.summary("t", genes=GENES, groupby=groupby, stats=["sum", "mean"], layer="input")
            b = local.summary("t", genes=GENES, groupby=groupby, stats=["sum", "mean"], layer="input")
            assert a.groups == b.groups
            want = _expected(ingested.adata, groupby, a.groups, GENES)
            for stat in ("sum", "mean"):
                np.testing.assert_array_equal(a.values[stat], b.values[stat])
                np.testing.assert_allclose(a.values[stat], want[stat], rtol=1e-6, equal_nan=True)
            c = remote.aggregate(
                "t", genes=GENES, groupby=groupby, stats=["sum"], layer="input", precomputed=False
            )
            np.testing.assert_allclose(c.values["sum"], want["sum"], rtol=1e-6)
    finally:
        remote.close()
        local.close()
    # read through the local decoded cache, not from the store on every request
    cached = list((ingested.settings.cache or Path()).glob(f"{ingested.version}/**/*.npy"))
    assert cached, "nothing was decoded into the local cache"


def test_a_server_serves_the_store_through_the_local_cache(ingested: Ingested, tmp_path: Path) -> None:
    settings = ingested.settings.model_copy(update={"cache": tmp_path / "served-cache"})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        body = {"genes": GENES, "groupby": "cell_type", "stats": ["sum", "mean"], "layer": "input"}
        r = httpx.post(f"http://127.0.0.1:{port}/api/v1/datasets/t/summary", json=body, timeout=60)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["version"] == ingested.version
        want = _expected(ingested.adata, "cell_type", got["groups"], GENES)
        values = np.array([[np.nan if v is None else v for v in row] for row in got["values"]["sum"]])
        np.testing.assert_allclose(values, want["sum"], rtol=1e-6)
        assert list((tmp_path / "served-cache" / ingested.version).rglob("*.npy"))
    finally:
        server.should_exit = True
        thread.join()


def test_an_object_store_needs_an_explicit_catalog() -> None:
    with pytest.raises(ValueError, match="WIDECUBE_CATALOG_URL"):
        Settings(storage=f"s3://{BUCKET}/wc", catalog_url="")


@pytest.mark.parametrize("bound", [1, 6_000])
def test_a_bounded_cache_still_answers_and_stays_under_its_bound(
    ingested: Ingested, tmp_path: Path, bound: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A bound below one array (1 byte) and one of a few arrays: every answer equals numpy,
    and after each query the cache holds at most the bound plus one array."""
    cache = tmp_path / "cache"
    settings = ingested.settings.model_copy(update={"cache": cache, "cache_max_bytes": bound})
    wc = Widecube(settings)
    caplog.set_level(logging.INFO, logger="widecube.cache")
    try:
        for _ in range(2):
            for groupby in ("cell_type", "donor"):
                for stats in (["sum"], ["mean"], ["sum", "mean"]):
                    got = wc.summary("t", genes=GENES, groupby=groupby, stats=stats, layer="input")
                    want = _expected(ingested.adata, groupby, got.groups, GENES)
                    for stat in stats:
                        np.testing.assert_allclose(got.values[stat], want[stat], rtol=1e-6, equal_nan=True)
                    agg = wc.aggregate(
                        "t", genes=GENES, groupby=groupby, stats=["sum"], layer="input", precomputed=False
                    )
                    np.testing.assert_allclose(agg.values["sum"], want["sum"], rtol=1e-6)
                    files = {p: p.stat().st_size for p in cache.rglob("*.npy") if not p.name.startswith(".")}
                    assert sum(files.values()) - max(files.values(), default=0) <= bound
    finally:
        wc.close()
    evicted = [r for r in caplog.records if "evicted" in r.getMessage()]
    assert len(evicted) >= 3  # the bound was reached, and arrays were decoded again after eviction
