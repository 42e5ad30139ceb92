"""Integrity after publish: flipped bytes in snapshot chunks and in the decoded cache are
named by ``widecube verify``, answered 503 naming the file, refused by publish and rollback,
and never served as wrong values (every 200 is compared with numpy on the test input)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anndata as ad
import httpx2 as httpx
import numpy as np
import pytest
import uvicorn
import zarr
from typer.testing import Result
from zarr.codecs import ZstdCodec

from _cli import invoke, process
from _data import MakeH5ad, small_adata, without_progress, write_h5ad
from widecube.api import create_app
from widecube.catalog import Catalog
from widecube.config import Settings
from widecube.errors import SnapshotCorrupt
from widecube.pipeline import ingest
from widecube.query import Widecube
from widecube.snapshot import Snapshot, SnapshotWriter, _writer, is_checksum_error

pytestmark = pytest.mark.slow

GENES = ["Gene3", "Gene0", "Gene17", "Gene59"]
SUM_CHUNK = "views/summary/cell_type.zarr/layers/sum/c/0/0"
MEAN_CHUNK = "views/summary/cell_type.zarr/layers/mean/c/0/0"
DATA_CHUNK = "views/matrix.zarr/X/data/c/0"


class Two:
    """Two ingested versions of ``pbmc``: v1 (retired), v2 (live), and their inputs."""

    def __init__(self, settings: Settings, a1: ad.AnnData, v1: str, a2: ad.AnnData, v2: str) -> None:
        self.settings, self.a1, self.v1, self.a2, self.v2 = settings, a1, v1, a2, v2

    def root(self, version: str) -> Path:
        return self.settings.storage / "datasets" / "pbmc" / version


@pytest.fixture(scope="module")
def two_ingested(tmp_path_factory: pytest.TempPathFactory) -> Two:
    """The two versions, ingested once for the module into a storage root no test touches."""
    root = tmp_path_factory.mktemp("integrity")
    settings = Settings(storage=root / "store")
    a1, a2 = small_adata(seed=11), small_adata(seed=12)
    v1 = ingest(write_h5ad(a1, root / "v1.h5ad"), dataset="pbmc", groupbys=["cell_type"], settings=settings)
    v2 = ingest(write_h5ad(a2, root / "v2.h5ad"), dataset="pbmc", groupbys=["cell_type"], settings=settings)
    return Two(settings, a1, v1.version, a2, v2.version)


@pytest.fixture
def two(two_ingested: Two, settings: Settings) -> Two:
    """A copy of the module's two versions for each test: tests flip bytes, publish and roll
    back, and a copy costs far less than two ingests."""
    shutil.copytree(two_ingested.settings.storage, settings.storage)
    return Two(settings, two_ingested.a1, two_ingested.v1, two_ingested.a2, two_ingested.v2)


def _flip(path: Path, offset: int | None = None) -> bytes:
    """Flip one bit of ``path`` (the middle byte by default); returns the original bytes."""
    original = path.read_bytes()
    data = bytearray(original)
    data[len(data) // 2 if offset is None else offset] ^= 0x01
    path.write_bytes(bytes(data))
    return original


def _cli_process(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``widecube`` command in a process of its own."""
    return process({"WIDECUBE_STORAGE": str(settings.storage)}, *args, timeout=120)


def _cli(settings: Settings, *args: str) -> Result:
    """The command in this process; :func:`test_a_clean_snapshot_verifies_with_exit_0` runs
    the real process."""
    return invoke({"WIDECUBE_STORAGE": str(settings.storage)}, *args)


def _expected_summary(adata: ad.AnnData, groups: list[str], genes: list[str]) -> dict[str, np.ndarray]:
    x = np.asarray(adata.X, dtype=np.float64)[:, [int(g.removeprefix("Gene")) for g in genes]]
    types = adata.obs["cell_type"].astype(str).to_numpy()
    sums = np.array([x[types == g].sum(axis=0) for g in groups])
    n = np.array([(types == g).sum() for g in groups], dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"sum": sums, "mean": np.where(n > 0, sums / n, np.nan)}


def _as_float(values: Any) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in values], dtype=np.float64)


def _check_answer(
    r: httpx.Response,
    kind: str,
    inputs: dict[str, ad.AnnData],
    bad_file: str | None,
    answers: list[tuple[str, int]],
) -> None:
    """A 200 must equal numpy on the input of the version it names; otherwise it must be a
    503 naming the corrupt file (relative, no server path)."""
    answers.append((kind, r.status_code))
    if r.status_code == 503:
        detail = r.json()["detail"]
        assert bad_file is not None and bad_file in detail, detail
        assert "/tmp" not in detail and "datasets/pbmc" not in detail, detail
        return
    assert r.status_code == 200, r.text
    body = r.json()
    adata = inputs[body["version"]]
    if kind == "summary":
        want = _expected_summary(adata, body["groups"], body["genes"])
        for stat in ("sum", "mean"):
            np.testing.assert_allclose(_as_float(body["values"][stat]), want[stat], rtol=1e-9, equal_nan=True)
    elif kind == "expression":
        x = np.asarray(adata.X, dtype=np.float32)
        for g, values in body["values"].items():
            np.testing.assert_array_equal(np.asarray(values, np.float32), x[:, int(g.removeprefix("Gene"))])
    elif kind == "aggregate":
        keep = (adata.obs["donor"] == "d1").to_numpy()
        want = _expected_summary(adata[keep], body["groups"], body["genes"])
        np.testing.assert_allclose(_as_float(body["values"]["sum"]), want["sum"], rtol=1e-9, equal_nan=True)


QUERIES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "summary",
        "/api/v1/datasets/pbmc/summary",
        {"genes": GENES, "groupby": "cell_type", "stats": ["sum", "mean"], "layer": "input"},
    ),
    ("expression", "/api/v1/datasets/pbmc/expression", {"genes": ["Gene3", "Gene17"], "layer": "input"}),
    (
        "aggregate",
        "/api/v1/datasets/pbmc/aggregate",
        {
            "genes": GENES,
            "groupby": "cell_type",
            "stats": ["sum"],
            "layer": "input",
            "filter": {"donor": ["d1"]},
        },
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(two: Two) -> Iterator[str]:
    """A real uvicorn server over the two versions (no upkeep: requests decide what is read)."""
    app = create_app(two.settings, upkeep=False, jobs=False)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{srv.config.port}"
    srv.should_exit = True
    thread.join(10)


@pytest.mark.subprocess
def test_a_clean_snapshot_verifies_with_exit_0(two: Two) -> None:
    for target in ("pbmc", f"pbmc@{two.v1}"):
        done = _cli_process(two.settings, "verify", target)
        assert done.returncode == 0, done.stderr
        assert "every file matches its checksum" in done.stdout


def test_every_array_chunk_carries_a_crc32c(two: Two) -> None:
    root = two.root(two.v2)
    arrays = [json.loads(p.read_text()) for p in root.rglob("zarr.json")]
    arrays = [a for a in arrays if a["node_type"] == "array" and a["shape"]]  # scalars are not chunked
    assert len(arrays) > 30
    assert all(a["codecs"][-1] == {"name": "crc32c"} for a in arrays), [a["codecs"] for a in arrays]


def test_a_flipped_byte_in_a_snapshot_chunk_is_named_503_and_never_served(two: Two, server: str) -> None:
    original = _flip(two.root(two.v2) / SUM_CHUNK)

    done = _cli(two.settings, "verify", "pbmc")
    assert done.exit_code == 1
    lines = without_progress(done.stderr)
    assert lines == [f"pbmc@{two.v2}: file {SUM_CHUNK} does not match its checksum"], done.stderr
    assert _cli(two.settings, "verify", f"pbmc@{two.v1}").exit_code == 0

    inputs = {two.v1: two.a1, two.v2: two.a2}
    answers: list[tuple[str, int]] = []
    with httpx.Client(base_url=server, timeout=60) as http:
        for _ in range(3):
            for kind, path, body in QUERIES:
                _check_answer(http.post(path, json=body), kind, inputs, SUM_CHUNK, answers)
                # the intact older version still answers right when pinned
                _check_answer(http.post(path, json={**body, "version": two.v1}), kind, inputs, None, answers)
        assert ("summary", 503) in answers
        # once found, every request for the version is 503 at once, whatever it reads
        after = http.post(QUERIES[1][1], json=QUERIES[1][2])
        assert after.status_code == 503 and SUM_CHUNK in after.json()["detail"]
        assert http.get("/api/v1/datasets/pbmc/genes").status_code == 503

        # the admin verify names the file; once the file is restored it puts the version back
        report = http.post("/api/v1/admin/datasets/pbmc/verify").json()
        assert report["ok"] is False and report["version"] == two.v2
        assert report["files"] == [{"file": SUM_CHUNK, "problem": "does not match its checksum"}]
        (two.root(two.v2) / SUM_CHUNK).write_bytes(original)
        assert http.post("/api/v1/admin/datasets/pbmc/verify", json={"version": two.v2}).json()["ok"] is True
        for kind, path, body in QUERIES:
            r = http.post(path, json=body)
            assert r.status_code == 200
            _check_answer(r, kind, inputs, None, answers)


def test_publish_and_rollback_to_a_corrupt_version_are_refused(two: Two, server: str) -> None:
    _flip(two.root(two.v1) / DATA_CHUNK)
    with httpx.Client(base_url=server, timeout=60) as http:
        r = http.post("/api/v1/admin/datasets/pbmc/publish", json={"version": two.v1})
        assert r.status_code == 409 and DATA_CHUNK in r.json()["detail"], r.text
        r = http.post("/api/v1/admin/datasets/pbmc/rollback", json={})
        assert r.status_code == 409 and DATA_CHUNK in r.json()["detail"], r.text
        # the corrupt version is out of service when pinned too
        r = http.post(QUERIES[1][1], json={**QUERIES[1][2], "version": two.v1})
        assert r.status_code == 503 and DATA_CHUNK in r.json()["detail"]
    for args in (["rollback", "pbmc"], ["rollback", "pbmc", "--to", two.v1]):
        done = _cli(two.settings, *args)
        assert done.exit_code == 1 and DATA_CHUNK in done.stderr, done.stderr
        said = "\n".join(without_progress(done.stderr))  # the error, past the storage line
        assert "Traceback" not in done.stderr and str(two.settings.storage) not in said
    with Catalog(two.settings.catalog_url) as catalog:
        assert catalog.current("pbmc").version == two.v2


def test_a_rollback_to_an_intact_version_goes_through_the_check(two: Two) -> None:
    done = _cli(two.settings, "rollback", "pbmc")
    assert done.exit_code == 0, done.stderr
    with Catalog(two.settings.catalog_url) as catalog:
        assert catalog.current("pbmc").version == two.v1


def test_random_bit_flips_in_a_zstd_chunk_are_always_an_error(two: Two) -> None:
    """Without the codec most flips decode silently to wrong numbers; with it, none does."""
    root = two.root(two.v2)
    chunk = root / MEAN_CHUNK
    original = chunk.read_bytes()
    rng = np.random.default_rng(0)
    try:
        for offset, bit in zip(rng.integers(0, len(original), 200), rng.integers(0, 8, 200), strict=True):
            data = bytearray(original)
            data[offset] ^= 1 << int(bit)
            chunk.write_bytes(bytes(data))
            with pytest.raises(ValueError) as refused:  # Zarr itself, through the crc32c codec
                zarr.open_array(root / "views/summary/cell_type.zarr/layers/mean", mode="r")[...]
            assert is_checksum_error(refused.value)
            with pytest.raises(SnapshotCorrupt) as caught:
                Snapshot(root).array("views/summary/cell_type.zarr/layers/mean")
            assert caught.value.files == [MEAN_CHUNK] and caught.value.version == two.v2
    finally:
        chunk.write_bytes(original)


def _serve(settings: Settings) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "WIDECUBE_STORAGE": str(settings.storage)}
    cli = [sys.executable, "-m", "widecube.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    return out.decode(errors="replace")


@pytest.mark.subprocess
def test_a_flipped_byte_in_a_decoded_cache_file_is_rebuilt_not_served(two: Two) -> None:
    settings = two.settings
    assert settings.cache is not None
    wc = Widecube(settings)
    wc.warm("pbmc")  # decodes every summary array and the matrix into the cache
    wc.close()
    cached = settings.cache / two.v2 / "views/summary/cell_type.zarr/layers/sum.npy"
    x_data = settings.cache / two.v2 / "views/matrix.zarr/X/data.npy"
    _flip(cached, offset=cached.stat().st_size - 3)  # inside the values, past the .npy header
    _flip(x_data, offset=x_data.stat().st_size - 3)

    proc, url = _serve(settings)  # a fresh process checks each cache file when it maps it
    answers: list[tuple[str, int]] = []
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            for kind, path, body in QUERIES:
                r = http.post(path, json=body)
                assert r.status_code == 200, r.text  # the cache was rebuilt from the intact snapshot
                _check_answer(r, kind, {two.v2: two.a2}, None, answers)
    finally:
        log = _stop(proc)
    assert "sum.npy failed its checksum" in log and "data.npy failed its checksum" in log, log

    _flip(cached, offset=cached.stat().st_size - 3)  # corrupt it again, at rest
    done = _cli(settings, "verify", "pbmc")
    assert done.exit_code == 1
    assert without_progress(done.stderr) == [
        f"pbmc@{two.v2}: decoded cache file views/summary/cell_type.zarr/layers/sum.npy does not match "
        "its checksum (removed; it is decoded again from the snapshot on the next read)"
    ], done.stderr
    assert not cached.exists()
    assert _cli(settings, "verify", "pbmc").exit_code == 0
    wc = Widecube(settings)
    got = wc.summary("pbmc", genes=GENES, groupby="cell_type", stats=["sum"], layer="input")
    want = _expected_summary(two.a2, got["groups"], GENES)["sum"]
    np.testing.assert_allclose(got["values"]["sum"], want, rtol=1e-9)
    wc.close()


def test_snapshots_written_without_the_codec_still_read(tmp_path: Path) -> None:
    """An array as snapshots before the crc32c codec stored it reads back through the reader,
    from the cache and without; a flipped byte in it is still never a wrong value."""
    values = np.random.default_rng(1).random((50, 7)).astype(np.float32)
    writer = SnapshotWriter(tmp_path / "snap", dataset="old", version="0" * 32)
    group = zarr.open_group(writer.path("views/old.zarr"), mode="a", zarr_format=3)
    arr = group.create_array(
        "x", shape=values.shape, dtype=values.dtype, chunks=(10, 7), compressors=[ZstdCodec(level=1)]
    )
    arr[...] = values
    writer.finish(n_cells=50, n_genes=7)
    codecs = json.loads((tmp_path / "snap/views/old.zarr/x/zarr.json").read_text())["codecs"]
    assert [c["name"] for c in codecs] == ["bytes", "zstd"]
    for cache in (None, tmp_path / "cache"):
        got = Snapshot(tmp_path / "snap", cache=cache).array("views/old.zarr/x")
        np.testing.assert_array_equal(got, values)
    _flip(tmp_path / "snap/views/old.zarr/x/c/2/0")
    for cache in (None, tmp_path / "cache2"):
        with pytest.raises(SnapshotCorrupt, match="views/old.zarr/x/c/2/0 does not match its checksum"):
            Snapshot(tmp_path / "snap", cache=cache).array("views/old.zarr/x")


def test_a_dataset_ingested_without_the_codec_serves_right_values(
    make_h5ad: MakeH5ad, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from widecube.views import matrix

    monkeypatch.setattr(_writer, "checked", lambda *codecs: list(codecs))  # as before the codec
    monkeypatch.setattr(matrix, "checked", lambda *codecs: list(codecs))
    adata = small_adata(seed=5)
    version = ingest(make_h5ad(adata), dataset="pbmc", groupbys=["cell_type"], settings=settings).version
    monkeypatch.undo()
    root = settings.storage / "datasets" / "pbmc" / version
    codecs = [
        c["name"]
        for p in root.rglob("zarr.json")
        if json.loads(p.read_text())["node_type"] == "array"
        for c in json.loads(p.read_text())["codecs"]
    ]
    assert "crc32c" not in codecs
    app = create_app(settings, upkeep=False, jobs=False)
    from fastapi.testclient import TestClient

    answers: list[tuple[str, int]] = []
    with TestClient(app) as client:
        for kind, path, body in QUERIES:
            r = client.post(path, json=body)
            assert r.status_code == 200
            _check_answer(r, kind, {version: adata}, None, answers)  # type: ignore[arg-type]


def test_missing_truncated_and_unlisted_files_are_named(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path / "snap", dataset="d", version="1" * 32)
    for name in ("a.bin", "b.bin", "c.bin"):
        writer.path(f"t/{name}").write_bytes(b"x" * 100)
    writer.finish()
    (tmp_path / "snap/t/a.bin").unlink()
    (tmp_path / "snap/t/b.bin").write_bytes(b"x" * 99)
    (tmp_path / "snap/t/extra.bin").write_bytes(b"")
    faults = [str(f) for f in Snapshot(tmp_path / "snap").check()]
    assert faults == [
        "t/a.bin: is missing",
        "t/b.bin: does not match its checksum",
        "t/extra.bin: is not in the manifest",
    ]
    assert [str(f) for f in Snapshot(tmp_path / "snap").check("t/c.bin")] == []
