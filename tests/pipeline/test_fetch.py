"""Inputs on an object store (moto's S3 server on loopback): ``ingest s3://…`` stages the
object into the work folder with its checksum verified, ``watch s3://…/inbox`` takes what is
dropped under a prefix and files it under processed/ or failed/, and an ingest killed with
SIGKILL leaves no published version and no object outside its own version's prefix.

boto3 (which shares no code with widecube's obstore client) writes the inputs and lists the
bucket; answers are compared with numpy on the input, digests with hashlib on its bytes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _data import small_adata, write_h5ad
from _s3 import moto_bucket
from widecube.catalog import Catalog, JobState, VersionStatus
from widecube.config import Settings
from widecube.errors import InputError, InputNotFound, NotFound
from widecube.pipeline import JobRunner, Watcher, ingest, reclaim_orphans
from widecube.pipeline._cleanup import collect_garbage
from widecube.pipeline._digest import IdleDigest
from widecube.query import Widecube
from widecube.snapshot import MANIFEST, open_storage

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]

BUCKET = "widecube-inputs"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with moto_bucket(BUCKET) as client:
        yield client


def keys(client: Any, prefix: str) -> dict[str, int]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def put_file(client: Any, key: str, path: Path) -> bytes:
    data = path.read_bytes()
    client.put_object(Bucket=BUCKET, Key=key, Body=data)
    return data


def settings_for(tmp: Path, prefix: str, **extra: Any) -> Settings:
    return Settings(
        storage=f"s3://{BUCKET}/{prefix}",
        catalog_url=f"sqlite:///{tmp / 'catalog.sqlite'}",
        cache=tmp / "cache",
        work=tmp / "work",
        auth=False,
        **extra,
    )


def raw_sums(
    settings: Settings, dataset: str, groupby: str, genes: list[str]
) -> tuple[list[str], np.ndarray]:
    wc = Widecube(settings)
    try:
        got = wc.summary(dataset, genes=genes, groupby=groupby, stats=["sum"], layer="input")
        return list(got.groups), np.asarray(got.values["sum"])
    finally:
        wc.close()


def numpy_sums(x: np.ndarray, labels: np.ndarray, groups: list[str], genes: list[int]) -> np.ndarray:
    return np.array([x[labels == g][:, genes].sum(axis=0) for g in groups])


def test_ingest_from_the_store_records_the_objects_sha256_and_matches_numpy(s3: Any, tmp_path: Path) -> None:
    adata = small_adata(seed=11)
    data = put_file(s3, "in/lab/pbmc.h5ad", write_h5ad(adata, tmp_path / "pbmc.h5ad"))
    digest = hashlib.sha256(data).hexdigest()
    s3.put_object(Bucket=BUCKET, Key="in/lab/pbmc.h5ad.sha256", Body=f"{digest}  pbmc.h5ad\n".encode())
    settings = settings_for(tmp_path, "one")
    record = ingest(f"s3://{BUCKET}/in/lab/pbmc.h5ad", dataset="p", groupbys=["cell_type"], settings=settings)
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"one/{record.path}/{MANIFEST}")["Body"].read())
    assert manifest["input"]["name"] == "pbmc.h5ad"
    assert manifest["input"]["sha256"] == digest and manifest["input"]["size"] == len(data)
    groups, got = raw_sums(settings, "p", "cell_type", ["Gene1", "Gene7", "Gene30"])
    want = numpy_sums(np.asarray(adata.X), adata.obs["cell_type"].astype(str).to_numpy(), groups, [1, 7, 30])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert not list((tmp_path / "work" / "work").glob("*/input"))  # the staged copy went with the job
    assert keys(s3, "in/lab/") == {"in/lab/pbmc.h5ad": len(data), "in/lab/pbmc.h5ad.sha256": 76}


@pytest.mark.parametrize("spill", ["work folder", "store"])
def test_the_inputs_digest_waits_out_pass_1_unless_the_spill_goes_to_the_store(
    spill: str, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pass 1 keeps both cores busy with its spill in the work folder: the staged input's
    digest is paused through it; with the spill on the store pass 1 waits for its uploads,
    and the idle-priority digest hashes in those gaps (not paused)."""
    pauses: list[str] = []
    real = IdleDigest.paused

    @contextlib.contextmanager
    def paused(self: IdleDigest) -> Iterator[None]:
        pauses.append(self.path.name)
        with real(self):
            yield

    monkeypatch.setattr(IdleDigest, "paused", paused)
    adata = small_adata(seed=12)
    put_file(s3, "in/pause/pbmc.h5ad", write_h5ad(adata, tmp_path / "pbmc.h5ad"))
    extra = {"spill": f"s3://{BUCKET}/pause-spill"} if spill == "store" else {}
    settings = settings_for(tmp_path, f"pause-{spill.split()[0]}", **extra)
    ingest(f"s3://{BUCKET}/in/pause/pbmc.h5ad", dataset="p", groupbys=["cell_type"], settings=settings)
    assert pauses == ([] if spill == "store" else ["pbmc.h5ad"])
    groups, got = raw_sums(settings, "p", "cell_type", ["Gene3"])
    want = numpy_sums(np.asarray(adata.X), adata.obs["cell_type"].astype(str).to_numpy(), groups, [3])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_the_staged_copy_is_removed_by_the_verify_step_before_publishing(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compute step reads the staged copy; once verified, the copy is gone (its removal
    runs beside the verify step), so publishing does not wait for it."""
    from widecube.pipeline import _ingest

    put_file(s3, "in/gone/x.h5ad", write_h5ad(small_adata(seed=13), tmp_path / "x.h5ad"))
    seen: dict[str, bool] = {}

    def looking(step: str) -> Any:
        run = _ingest.STEPS[step]

        def wrapped(work: Any) -> Any:
            seen[step] = (work.folder / "input" / "x.h5ad").is_file()
            return run(work)

        return wrapped

    for step in ("compute", "verify", "publish"):
        monkeypatch.setitem(_ingest.STEPS, step, looking(step))
    record = ingest(f"s3://{BUCKET}/in/gone/x.h5ad", dataset="g", settings=settings_for(tmp_path, "gone"))
    assert seen == {"compute": True, "verify": True, "publish": False}
    assert record.version and keys(s3, f"gone/{record.path}/")  # published all the same


def test_a_companion_sha256_that_disagrees_fails_the_job_naming_both(s3: Any, tmp_path: Path) -> None:
    data = put_file(s3, "in/bad/x.h5ad", write_h5ad(small_adata(seed=12), tmp_path / "x.h5ad"))
    s3.put_object(Bucket=BUCKET, Key="in/bad/x.h5ad.sha256", Body=b"0" * 64 + b"  x.h5ad\n")
    settings = settings_for(tmp_path, "bad")
    with pytest.raises(InputError, match=r"x\.h5ad: sha256 of the copy is [0-9a-f]{64}, but x\.h5ad\.sha256"):
        ingest(f"s3://{BUCKET}/in/bad/x.h5ad", dataset="x", settings=settings)
    with pytest.raises(InputNotFound, match=rf"s3://{BUCKET}/in/bad/missing\.h5ad: no such object"):
        ingest(f"s3://{BUCKET}/in/bad/missing.h5ad", dataset="x", settings=settings)
    assert hashlib.sha256(data).hexdigest() != "0" * 64
    assert keys(s3, "bad/") == {}  # nothing was written for either


def test_fetch_refuses_an_object_that_changed_or_arrived_short(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GET carries If-Match with the ETag read first: the real server refuses it when the
    object is not the one described (a stale ETag stands in for a replaced object)."""
    import obstore

    s3.put_object(Bucket=BUCKET, Key="in/f/a.bin", Body=b"abc" * 1000)
    files = open_storage(f"s3://{BUCKET}/in/f")
    got = files.fetch("a.bin", tmp_path / "a.bin")
    assert got.sha256 == hashlib.sha256(b"abc" * 1000).hexdigest() and got.size == 3000
    assert (tmp_path / "a.bin").read_bytes() == b"abc" * 1000
    head = obstore.head
    monkeypatch.setattr(obstore, "head", lambda store, path: {**head(store, path), "e_tag": '"0123"'})
    with pytest.raises(OSError, match="changed while it was read") as changed:
        files.fetch("a.bin", tmp_path / "b.bin")
    assert changed.value.errno == errno.EAGAIN  # transient: the job's step tries again
    monkeypatch.setattr(obstore, "head", lambda store, path: {**head(store, path), "size": 3001})
    with pytest.raises(OSError, match="3000 bytes arrived of 3001") as short:
        files.fetch("a.bin", tmp_path / "c.bin")
    assert short.value.errno == errno.EIO
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]  # no partial copy left


def test_an_etag_checks_the_copy_unless_a_kms_key_encrypts_the_object(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A single-part upload's ETag is the MD5 of its bytes, and the copy is checked against it,
    but S3 gives an object encrypted with a KMS key (or a customer's) an ETag that is not, so
    there the check would refuse every copy: the server's own headers (a signed HEAD) decide.
    An MD5 that comes out wrong stands in for an ETag that is not an MD5."""
    data = b"kms" * 1000
    s3.put_object(Bucket=BUCKET, Key="in/k/plain.bin", Body=data)
    s3.put_object(
        Bucket=BUCKET, Key="in/k/kms.bin", Body=data, ServerSideEncryption="aws:kms", SSEKMSKeyId="alias/lab"
    )
    files = open_storage(f"s3://{BUCKET}/in/k")

    class WrongMD5:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(self)

        def update(self, chunk: Any) -> None:
            pass

        def hexdigest(self) -> str:
            return "0" * 32

    made: list[WrongMD5] = []
    monkeypatch.setattr(hashlib, "md5", WrongMD5)
    with pytest.raises(OSError, match="MD5 differs"):
        files.fetch("plain.bin", tmp_path / "plain.bin")
    assert len(made) == 1  # the plain object's copy was checked against its ETag
    got = files.fetch("kms.bin", tmp_path / "kms.bin")
    assert len(made) == 1  # the KMS object's was not
    assert got.sha256 == hashlib.sha256(data).hexdigest() and (tmp_path / "kms.bin").read_bytes() == data

    import obstore

    def cannot_sign(*args: Any, **kwargs: Any) -> str:
        raise ValueError("no credentials to sign with")  # a store read anonymously

    monkeypatch.setattr(obstore, "sign", cannot_sign)
    with pytest.raises(OSError, match="MD5 differs"):  # checked against the ETag, as before
        files.fetch("plain.bin", tmp_path / "again.bin")


def test_an_unhashed_fetch_leaves_the_md5_to_its_caller(s3: Any, tmp_path: Path) -> None:
    data = b"unhashed" * 5000
    s3.put_object(Bucket=BUCKET, Key="in/u/a.bin", Body=data)
    got = open_storage(f"s3://{BUCKET}/in/u").fetch("a.bin", tmp_path / "a.bin", hashed=False)
    assert got.sha256 is None and got.size == len(data)
    assert got.md5 == hashlib.md5(data).hexdigest()  # the ETag's, for the caller to check
    assert (tmp_path / "a.bin").read_bytes() == data


def test_a_large_unhashed_fetch_copies_in_parallel_ranges_each_conditional(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object of at least two ranges is copied by ranged GETs, several at a time, each
    written at its own offset and each carrying If-Match (moto refuses a stale one); the copy
    equals the bytes boto3 put, and a stale ETag or a short range leaves no partial file."""
    import obstore

    from widecube.snapshot import _store

    data = np.random.default_rng(5).integers(0, 256, 100_003, dtype=np.uint8).tobytes()
    s3.put_object(Bucket=BUCKET, Key="in/r/big.bin", Body=data)
    monkeypatch.setattr(_store, "_RANGE", 4096)
    get, asked = obstore.get, []

    def recording_get(store: Any, path: str, options: Any = None) -> Any:
        asked.append(dict(options or {}))
        return get(store, path, options=options)

    monkeypatch.setattr(obstore, "get", recording_get)
    files = open_storage(f"s3://{BUCKET}/in/r")
    got = files.fetch("big.bin", tmp_path / "big.bin", hashed=False)
    fd, direct = _store.open_direct(tmp_path / "probe", os.O_WRONLY | os.O_CREAT)
    os.close(fd)
    if direct:  # written around the page cache: not one of its pages is there
        assert not _cached(tmp_path / "big.bin", [0, 4096 * 12, len(data) - 1])
    assert (tmp_path / "big.bin").read_bytes() == data and got.size == len(data)
    assert got.md5 == hashlib.md5(data).hexdigest()
    want = [(a, min(a + 4096, len(data))) for a in range(0, len(data), 4096)]  # 25 ranges
    assert sorted(tuple(o["range"]) for o in asked) == want
    assert all(o["if_match"] == '"' + hashlib.md5(data).hexdigest() + '"' for o in asked)

    head = obstore.head
    monkeypatch.setattr(obstore, "head", lambda store, path: {**head(store, path), "e_tag": '"0123"'})
    with pytest.raises(OSError, match="changed while it was read") as changed:
        files.fetch("big.bin", tmp_path / "stale.bin", hashed=False)
    assert changed.value.errno == errno.EAGAIN
    monkeypatch.setattr(obstore, "head", head)

    def short_get(store: Any, path: str, options: Any = None) -> Any:
        start, end = options["range"]
        return get(store, path, options={**options, "range": (start, end - (start == 8192))})

    monkeypatch.setattr(obstore, "get", short_get)
    with pytest.raises(OSError, match=f"{len(data) - 1} bytes arrived of {len(data)}") as short:
        files.fetch("big.bin", tmp_path / "short.bin", hashed=False)
    assert short.value.errno == errno.EIO
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin", "probe"]  # no partial copy left


def _cached(path: Path, offsets: list[int]) -> bool:
    """Whether the page cache holds the page at any of ``offsets`` of ``path`` (a read that
    must not wait for the disk, ``RWF_NOWAIT``, succeeds only then)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        for at in offsets:
            try:
                os.preadv(fd, [bytearray(1)], at, os.RWF_NOWAIT)
                return True
            except BlockingIOError:
                continue
        return False
    finally:
        os.close(fd)


@pytest.mark.parametrize("where", ["values", "signature"])
def test_a_staged_copy_damaged_on_the_way_is_fetched_again_and_the_right_data_published(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The input is copied unhashed and hashed while the job reads it; a copy whose MD5 is not
    the object's ETag is caught before anything is published: one byte flipped among the
    values (read without complaint: caught when the manifest asks for the sha256) or in the
    HDF5 signature (validate finds no h5ad: the copy is blamed first). Either way the input is
    fetched again, the step runs again, and the version published holds the object's data."""
    import h5py

    from widecube.pipeline import _ingest

    adata = small_adata(seed=41)
    data = put_file(s3, f"in/dmg/{where}.h5ad", write_h5ad(adata, tmp_path / "x.h5ad"))
    with h5py.File(tmp_path / "x.h5ad", "r") as f:
        values = f["X/data"].id  # chunked, not compressed: the 101st value's low byte
        start = values.get_offset() if f["X/data"].chunks is None else values.get_chunk_info(0).byte_offset
        assert f["X/data"].compression is None
        at = {"values": start + 4 * 100, "signature": 1}[where]
    real, hashed = _ingest.stage_input, []

    def damaging(url: str, dest: Path, **kwargs: Any) -> Any:
        staged = real(url, dest, **kwargs)
        hashed.append(kwargs.get("hashed", True))
        if len(hashed) == 1:
            with open(staged.path, "r+b") as f:
                f.seek(at)
                byte = f.read(1)[0]
                f.seek(at)
                f.write(bytes([byte ^ 0x01]))
        return staged

    monkeypatch.setattr(_ingest, "stage_input", damaging)
    settings = settings_for(tmp_path, f"dmg-{where}", job_backoff=0.01)
    record = ingest(
        f"s3://{BUCKET}/in/dmg/{where}.h5ad", dataset="d", groupbys=["cell_type"], settings=settings
    )
    assert hashed == [False, True]  # copied unhashed, then again hashed, once the copy was caught
    manifest = json.loads(
        s3.get_object(Bucket=BUCKET, Key=f"dmg-{where}/{record.path}/{MANIFEST}")["Body"].read()
    )
    assert manifest["input"]["sha256"] == hashlib.sha256(data).hexdigest()
    groups, got = raw_sums(settings, "d", "cell_type", ["Gene1", "Gene25"])
    want = numpy_sums(np.asarray(adata.X), adata.obs["cell_type"].astype(str).to_numpy(), groups, [1, 25])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    with Catalog(settings.catalog_url) as catalog:
        (job,) = catalog.jobs.list()
        retries = [e for e in job.log if e["event"] == "retry"]
    step = {"values": "compute", "signature": "validate"}[where]
    assert [e["step"] for e in retries] == [step], job.log
    assert "does not match the store's checksum (MD5" in retries[0]["error"]


def test_a_fetch_again_that_fails_half_way_is_tried_again(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staged copy is damaged; fetching it again fails once, the half-written copy gone
    with it (a lost connection): the next try of the step finds no copy and fetches it
    first, and the version published holds the object's data."""
    from widecube.pipeline import _ingest

    adata = small_adata(seed=43)
    data = put_file(s3, "in/dmg/again.h5ad", write_h5ad(adata, tmp_path / "x.h5ad"))
    real, calls = _ingest.stage_input, []

    def flaky(url: str, dest: Path, **kwargs: Any) -> Any:
        calls.append(kwargs.get("hashed", True))
        if len(calls) == 2:  # the fetch again: the copy removed, then the connection lost
            shutil.rmtree(dest, ignore_errors=True)
            raise OSError(errno.ECONNRESET, f"{url}: connection reset")
        staged = real(url, dest, **kwargs)
        if len(calls) == 1:
            with open(staged.path, "r+b") as f:
                f.seek(1)
                f.write(b"X")  # the HDF5 signature: validate finds no h5ad
        return staged

    monkeypatch.setattr(_ingest, "stage_input", flaky)
    settings = settings_for(tmp_path, "dmg-again", job_backoff=0.01)
    record = ingest(
        f"s3://{BUCKET}/in/dmg/again.h5ad", dataset="a", groupbys=["cell_type"], settings=settings
    )
    assert calls == [False, True, True]
    manifest = json.loads(
        s3.get_object(Bucket=BUCKET, Key=f"dmg-again/{record.path}/{MANIFEST}")["Body"].read()
    )
    assert manifest["input"]["sha256"] == hashlib.sha256(data).hexdigest()
    groups, got = raw_sums(settings, "a", "cell_type", ["Gene2"])
    want = numpy_sums(np.asarray(adata.X), adata.obs["cell_type"].astype(str).to_numpy(), groups, [2])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_watching_a_prefix_ingests_and_files_entries_away(s3: Any, tmp_path: Path) -> None:
    inbox = "inbox"
    lab = small_adata(seed=22)
    put_file(s3, f"{inbox}/drop/matrix.h5ad", write_h5ad(small_adata(seed=23), tmp_path / "m.h5ad"))
    s3.put_object(Bucket=BUCKET, Key=f"{inbox}/drop/_SUCCESS", Body=b"")
    put_file(s3, f"{inbox}/lab-export.h5ad", write_h5ad(lab, tmp_path / "lab.h5ad"))
    sidecar = b'{"name": "lab", "groupbys": ["donor"]}'
    s3.put_object(Bucket=BUCKET, Key=f"{inbox}/lab-export.json", Body=sidecar)
    s3.put_object(Bucket=BUCKET, Key=f"{inbox}/notes.h5ad", Body=b"not a matrix")
    s3.put_object(Bucket=BUCKET, Key=f"{inbox}/.hidden.h5ad", Body=b"x")
    settings = settings_for(tmp_path, "watched")
    with Catalog(settings.catalog_url) as catalog:
        watcher = Watcher(f"s3://{BUCKET}/{inbox}/", settings, catalog, quiet=0.2)
        assert sorted(watcher.entries()) == ["drop", "lab-export.h5ad", "notes.h5ad"]
        assert watcher.entries()["drop"].marked
        ran = watcher.run_once()
    assert sorted((j.dataset, j.state) for j in ran) == [
        ("drop", JobState.PUBLISHED),
        ("lab", JobState.PUBLISHED),
        ("notes", JobState.FAILED),
    ]
    assert sorted(keys(s3, f"{inbox}/")) == [
        f"{inbox}/.hidden.h5ad",
        f"{inbox}/failed/notes.h5ad",
        f"{inbox}/failed/notes.h5ad.error.json",
        f"{inbox}/processed/drop/_SUCCESS",
        f"{inbox}/processed/drop/matrix.h5ad",
        f"{inbox}/processed/lab-export.h5ad",
        f"{inbox}/processed/lab-export.json",
    ]
    body = s3.get_object(Bucket=BUCKET, Key=f"{inbox}/failed/notes.h5ad.error.json")["Body"].read()
    report = json.loads(body)
    assert report["input"] == "notes.h5ad" and report["step"] == "validate"
    assert "notes.h5ad" in report["error"]
    groups, got = raw_sums(settings, "lab", "donor", ["Gene2", "Gene9"])
    want = numpy_sums(np.asarray(lab.X), lab.obs["donor"].astype(str).to_numpy(), groups, [2, 9])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def _bucket_objects(client: Any, prefix: str) -> set[str]:
    return set(keys(client, prefix))


def test_a_killed_ingest_publishes_nothing_and_leaves_objects_only_under_its_version(
    s3: Any, tmp_path: Path
) -> None:
    """``widecube ingest s3://…`` with the snapshot and the spill on the store, SIGKILLed
    during compute (once the first objects of its version are in the bucket): no version is
    live, every object written is under ``datasets/<name>/<version>/`` or the spill's
    ``<job id>/``, cleanup removes them all, and the job resumed afterwards publishes a
    version whose objects are exactly its manifest's."""
    adata = small_adata(n_cells=1000, n_genes=200, seed=31)
    put_file(s3, "in/kill/big.h5ad", write_h5ad(adata, tmp_path / "big.h5ad"))
    spill = f"s3://{BUCKET}/killed-spill"
    settings = settings_for(tmp_path, "killed", memory=200 * 16 * 12, job_lease=1.0, spill=spill)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "WIDECUBE_STORAGE": str(settings.storage),
        "WIDECUBE_CATALOG_URL": settings.catalog_url,
        "WIDECUBE_CACHE": str(settings.cache),
        "WIDECUBE_WORK": str(settings.work),
        "WIDECUBE_MEMORY": str(settings.memory),  # ~200 values per slab: many small pass-2 writes
        "WIDECUBE_JOB_LEASE": "1",
        "WIDECUBE_AUTH": "false",
        "WIDECUBE_SPILL": spill,
    }
    cmd = [sys.executable, "-m", "widecube.cli", "ingest", f"s3://{BUCKET}/in/kill/big.h5ad", "-d", "k"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while len(_bucket_objects(s3, "killed/")) < 20:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "the ingest wrote nothing to the store"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    written = _bucket_objects(s3, "killed/")
    spilled = _bucket_objects(s3, "killed-spill/")
    with Catalog(settings.catalog_url) as catalog:
        (job,) = catalog.jobs.list()
        assert job.state == JobState.VALIDATED, "killed outside compute: the test proves nothing"
        with pytest.raises(NotFound):
            catalog.current("k")
        assert catalog.get_version("k", str(job.version)).status == VersionStatus.BUILDING
        prefix = f"killed/datasets/k/{job.version}/"
        assert written and all(key.startswith(prefix) for key in written), sorted(written)[:5]
        assert f"{prefix}{MANIFEST}" not in written
        # pass 1 ran before the first snapshot write: its ranges of rows, one object each
        assert len(spilled) == 4 and all(k.startswith(f"killed-spill/{job.id}/") for k in spilled), spilled
        time.sleep(1.2)  # the dead process's lease runs out
        reclaim_orphans(settings, catalog)
        assert _bucket_objects(s3, "killed/") == set()
        assert _bucket_objects(s3, "killed-spill/") == set()
        assert catalog.jobs.get(job.id).state == JobState.VALIDATED  # it may still resume
        resumed = settings.model_copy(update={"memory": 2 * 1024**3})  # a few slabs: quick on moto
        done = JobRunner(resumed, catalog).run_pending()
        assert [j.state for j in done] == [JobState.PUBLISHED]
        assert catalog.current("k").version == job.version
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}{MANIFEST}")["Body"].read())
    assert _bucket_objects(s3, "killed/") == {prefix + rel for rel in manifest["files"]} | {prefix + MANIFEST}
    assert _bucket_objects(s3, "killed-spill/") == set()  # the resumed run's spill, removed with it
    groups, got = raw_sums(settings, "k", "cell_type", ["Gene5", "Gene199"])
    want = numpy_sums(np.asarray(adata.X), adata.obs["cell_type"].astype(str).to_numpy(), groups, [5, 199])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_reclaim_removes_the_spill_of_jobs_not_running_and_spares_the_rest(s3: Any, tmp_path: Path) -> None:
    """Spill prefixes (``<spill>/<job id>/``) of a failed, a killed (lease run out) and an
    unknown job go; a running job's, and what is not named like a job, stay; a dry-run
    garbage collection lists the ended and unknown ones with their bytes."""
    spill = f"s3://{BUCKET}/gc-spill"
    settings = settings_for(tmp_path, "gc", spill=spill)
    with Catalog(settings.catalog_url) as catalog:
        jobs = catalog.jobs

        def job(steps: list[JobState], *, running: bool = False) -> str:
            made = jobs.create(dataset="d", source="cli", input="/in/x.h5ad", params={})
            jobs.claim("w", lease_s=60, job=made.id)
            for target in steps:
                jobs.advance(made.id, "w", target, error="bad" if target == JobState.FAILED else None)
            if not running and not steps[-1].final:
                jobs.renew(made.id, "w", lease_s=-1)  # its worker died: the lease ran out
            return made.id

        validated = [JobState.UNPACKED, JobState.VALIDATED]
        failed, running = job([*validated, JobState.FAILED]), job(validated, running=True)
        killed, unknown = job(validated), "f" * 32
        for name, size in ((failed, 5), (running, 7), (killed, 11), (unknown, 13), ("notes", 17)):
            s3.put_object(Bucket=BUCKET, Key=f"gc-spill/{name}/run1/p00000.spill", Body=b"x" * size)
        report = collect_garbage(settings, catalog, dry_run=True)
        why = "left by a job that ended or was killed"
        assert sorted(report) == sorted([(f"{spill}/{failed}", 5, why), (f"{spill}/{unknown}", 13, why)])
        removed = reclaim_orphans(settings, catalog)
        assert sorted(map(str, removed)) == sorted(f"{spill}/{j}" for j in (failed, killed, unknown))
        assert sorted(keys(s3, "gc-spill/")) == [
            f"gc-spill/{running}/run1/p00000.spill",
            "gc-spill/notes/run1/p00000.spill",
        ]
        assert jobs.get(running).worker == "w" and jobs.get(killed).worker is None
