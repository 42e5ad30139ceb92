"""Serving: embeddings, Arrow and gzip responses, caching headers, admin moves, the hot cache.

Every figure is checked against numpy on the input (obsm, obs codes, the matrix), and every
Arrow answer against the JSON one.
"""

from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anndata as ad
import httpx2 as httpx
import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from _data import MakeH5ad, small_adata, write_h5ad
from widecube.api import create_app
from widecube.api._upkeep import stale_versions
from widecube.config import Settings
from widecube.pipeline import ingest
from widecube.query import Widecube

ARROW = "application/vnd.apache.arrow.stream"
IMMUTABLE = "public, max-age=31536000, immutable"


def _with_embedding(seed: int) -> ad.AnnData:
    adata = small_adata(seed=seed)
    rng = np.random.default_rng(seed)
    adata.obsm["X_umap"] = rng.normal(size=(adata.n_obs, 2)).astype(np.float32)
    adata.obsm["X_pca"] = rng.normal(size=(adata.n_obs, 5)).astype(np.float32)
    donor = adata.obs["donor"].astype(object)
    donor.iloc[7] = np.nan  # a cell with no donor: code -1
    adata.obs["donor"] = donor.astype("category")
    return adata


def _publish(settings: Settings, folder: Path) -> tuple[Settings, ad.AnnData, str]:
    adata = _with_embedding(21)
    record = ingest(
        write_h5ad(adata, folder / "in.h5ad"), dataset="pbmc", groupbys=["cell_type"], settings=settings
    )
    return settings, adata, record.version


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, ad.AnnData, str]:
    """One ingest shared by the tests that only read it (in-memory changes to a service's
    own snapshot objects and the decoded cache are fine)."""
    root = tmp_path_factory.mktemp("serving")
    return _publish(Settings(storage=root / "store"), root)


@pytest.fixture
def own_published(tmp_path: Path, settings: Settings) -> tuple[Settings, ad.AnnData, str]:
    """A dataset of the test's own, for tests that publish, roll back or evict versions."""
    return _publish(settings, tmp_path)


@pytest.fixture
def client(published: tuple[Settings, ad.AnnData, str]) -> Iterator[TestClient]:
    with TestClient(create_app(published[0], upkeep=False)) as c:
        yield c


def _arrow(response: Any) -> pa.Table:
    assert response.headers["content-type"] == ARROW
    return pa.ipc.open_stream(response.content).read_all()


@pytest.mark.slow
def test_embedding_coordinates_and_category_codes_equal_obsm_and_obs(
    client: TestClient, published: tuple[Settings, ad.AnnData, str]
) -> None:
    _, adata, version = published
    r = client.get("/api/v1/datasets/pbmc/embedding/X_umap", params={"color": "donor"})
    assert r.status_code == 200
    body = r.json()
    assert (body["version"], body["key"], body["n_cells"]) == (version, "X_umap", adata.n_obs)
    coords = np.array(body["coordinates"], dtype=np.float32).T
    np.testing.assert_array_equal(coords, adata.obsm["X_umap"])
    donor = adata.obs["donor"]
    assert body["color"]["kind"] == "category"
    assert body["color"]["categories"] == list(donor.cat.categories)
    np.testing.assert_array_equal(body["color"]["codes"], donor.cat.codes.to_numpy())
    assert body["color"]["codes"][7] == -1
    five = client.get("/api/v1/datasets/pbmc/embedding/X_pca", params={"color": "score"}).json()
    np.testing.assert_array_equal(np.array(five["coordinates"], np.float32).T, adata.obsm["X_pca"])
    assert five["color"]["kind"] == "numeric"
    np.testing.assert_array_equal(
        np.float32(five["color"]["values"]), adata.obs["score"].to_numpy(np.float32)
    )
    assert client.get("/api/v1/datasets/pbmc/embedding/X_umap").json()["color"] is None


@pytest.mark.slow
def test_embedding_listing_and_errors(client: TestClient) -> None:
    listing = client.get("/api/v1/datasets/pbmc/embedding").json()
    assert listing["embeddings"] == {"X_pca": {"shape": [240, 5]}, "X_umap": {"shape": [240, 2]}}
    colors = {"cell_type": "category", "donor": "category", "score": "numeric", "total_counts": "numeric"}
    assert colors.items() <= listing["colors"].items()
    assert listing["gene_colors"] is True
    by_gene = client.get("/api/v1/datasets/pbmc/embedding/X_umap", params={"color": "Gene3"}).json()
    assert by_gene["color"]["kind"] == "gene" and len(by_gene["color"]["values"]) == 240
    for params, status, message in [
        ({"color": "tissue"}, 422, "no obs column or gene 'tissue'"),
        ({"version": "0" * 32}, 404, "0" * 32),
    ]:
        r = client.get("/api/v1/datasets/pbmc/embedding/X_umap", params=params)
        assert (r.status_code, message in r.json()["detail"]) == (status, True), r.text
    r = client.get("/api/v1/datasets/pbmc/embedding/X_tsne")
    assert r.status_code == 422 and "no embedding 'X_tsne'; available: X_pca, X_umap" in r.json()["detail"]


class _GeneMajor(Widecube):
    """A service with the lead's future ``gene_values``, answered from a numpy matrix."""

    matrix: np.ndarray

    def gene_values(self, dataset: str, gene: str, version: str | None = None) -> tuple[str, np.ndarray]:
        record, snap = self.resolve(dataset, version)
        return record.version, self.matrix[:, snap.var_names.get_loc(gene)].astype(np.float32)


@pytest.mark.slow
def test_gene_colouring_lights_up_with_the_gene_major_view(
    published: tuple[Settings, ad.AnnData, str],
) -> None:
    settings, adata, version = published
    service = _GeneMajor(settings)
    service.matrix = np.asarray(adata.X)
    _, snap = service.resolve("pbmc")
    snap.manifest["views"]["matrix"] = {"encoding": "widecube-gene-major", "encoding_version": "0.1.0"}
    with TestClient(create_app(service=service, upkeep=False)) as client:
        assert client.get("/api/v1/datasets/pbmc/embedding").json()["gene_colors"] is True
        body = client.get("/api/v1/datasets/pbmc/embedding/X_umap", params={"color": "Gene3"}).json()
        assert body["color"]["kind"] == "gene"
        np.testing.assert_array_equal(np.float32(body["color"]["values"]), np.asarray(adata.X)[:, 3])
        table = _arrow(
            client.get(
                "/api/v1/datasets/pbmc/embedding/X_umap", params={"color": "Gene3"}, headers={"Accept": ARROW}
            )
        )
        np.testing.assert_array_equal(table["color"].to_numpy(), np.asarray(adata.X, np.float32)[:, 3])
        assert (
            table.schema.metadata[b"color_kind"] == b"gene"
            and version.encode() in table.schema.metadata.values()
        )


@pytest.mark.slow
def test_arrow_answers_equal_the_json_ones(
    client: TestClient, published: tuple[Settings, ad.AnnData, str]
) -> None:
    _, adata, version = published
    body = {
        "genes": ["Gene3", "Gene0", "Gene59"],
        "groupby": "cell_type",
        "stats": ["mean", "var", "nnz"],
        "layer": "input",
    }
    as_json = client.post("/api/v1/datasets/pbmc/summary", json=body).json()
    table = _arrow(client.post("/api/v1/datasets/pbmc/summary", json=body, headers={"Accept": ARROW}))
    assert table.column_names == ["group", "gene", "mean", "var", "nnz"]
    assert table.schema.metadata[b"version"] == version.encode()
    n_genes = len(body["genes"])
    assert table["group"].to_pylist() == [g for g in as_json["groups"] for _ in range(n_genes)]
    assert table["gene"].to_pylist() == body["genes"] * len(as_json["groups"])
    for stat in body["stats"]:
        expected = [v for row in as_json["values"][stat] for v in row]
        assert table[stat].to_pylist() == expected  # None (JSON null) ↔ Arrow null, e.g. var of 'solo'
    assert None in table["var"].to_pylist()
    emb = client.get(
        "/api/v1/datasets/pbmc/embedding/X_umap", params={"color": "donor"}, headers={"Accept": ARROW}
    )
    t = _arrow(emb)
    assert t.column_names == ["x", "y", "color"]
    np.testing.assert_array_equal(
        np.stack([t["x"].to_numpy(), t["y"].to_numpy()], axis=1), adata.obsm["X_umap"]
    )
    expected_donor = adata.obs["donor"].astype(object).where(adata.obs["donor"].notna(), None).tolist()
    assert t["color"].to_pylist() == expected_donor
    genes = _arrow(
        client.get("/api/v1/datasets/pbmc/genes", params={"prefix": "gene5"}, headers={"Accept": ARROW})
    )
    assert (
        genes["gene"].to_pylist()
        == client.get("/api/v1/datasets/pbmc/genes", params={"prefix": "gene5"}).json()["genes"]
    )
    versions = _arrow(client.get("/api/v1/datasets/pbmc/versions", headers={"Accept": ARROW}))
    assert versions["version"].to_pylist() == [version]
    r = client.get("/api/v1/datasets/pbmc", headers={"Accept": ARROW})
    assert r.status_code == 406 and "JSON only" in r.json()["detail"]


@pytest.mark.slow
def test_get_summary_equals_post_and_numpy(
    client: TestClient, published: tuple[Settings, ad.AnnData, str]
) -> None:
    _, adata, _ = published
    params = [("genes", "Gene3"), ("genes", "Gene7"), ("groupby", "cell_type"), ("layer", "input")]
    got = client.get("/api/v1/datasets/pbmc/summary", params=params).json()
    body = {"genes": ["Gene3", "Gene7"], "groupby": "cell_type", "layer": "input"}
    assert got == client.post("/api/v1/datasets/pbmc/summary", json=body).json()
    x = np.asarray(adata.X)
    lognorm = np.log1p(x / np.maximum(x.sum(axis=1, keepdims=True), 1) * 1e4)  # CP10k + log1p
    default = client.get("/api/v1/datasets/pbmc/summary", params=params[:-1]).json()
    assert default["layer"] == "normalized" and got["layer"] == "input"
    for i, group in enumerate(got["groups"]):
        rows = (adata.obs["cell_type"] == group).to_numpy()
        cells = x[rows][:, [3, 7]]
        np.testing.assert_allclose(got["values"]["mean"][i], cells.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(got["values"]["frac_expressing"][i], (cells != 0).mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(
            default["values"]["mean"][i], lognorm[rows][:, [3, 7]].mean(axis=0), rtol=1e-6
        )
        assert default["values"]["frac_expressing"][i] == got["values"]["frac_expressing"][i]


@pytest.mark.slow
def test_json_is_gzipped_when_accepted_and_arrow_is_not(client: TestClient) -> None:
    url = "/api/v1/datasets/pbmc/embedding/X_umap?color=cell_type"
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    zipped = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip" and "Accept-Encoding" in zipped.headers["vary"]
    assert zipped.json() == plain.json()  # the client inflated it
    raw = httpx.Client(transport=client._transport, base_url="http://testserver")  # type: ignore[attr-defined]
    with raw.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as r:
        compressed = b"".join(r.iter_raw())
    assert len(compressed) < 0.8 * len(plain.content) and gzip.decompress(compressed) == plain.content
    arrow = client.get(url, headers={"Accept-Encoding": "gzip", "Accept": ARROW})
    assert "content-encoding" not in arrow.headers


@pytest.mark.slow
def test_etag_304_and_cache_control(client: TestClient, published: tuple[Settings, ad.AnnData, str]) -> None:
    _, _, version = published
    url = "/api/v1/datasets/pbmc/embedding/X_umap"
    live = client.get(url, params={"color": "cell_type"})
    assert live.headers["cache-control"] == "no-cache"  # follows the pointer: must revalidate
    pinned = client.get(url, params={"color": "cell_type", "version": version})
    assert pinned.headers["cache-control"] == IMMUTABLE
    assert version in pinned.headers["etag"] and pinned.headers["etag"].startswith('W/"')
    again = client.get(
        url,
        params={"color": "cell_type", "version": version},
        headers={"If-None-Match": f'"other", {pinned.headers["etag"]}'},
    )
    assert again.status_code == 304 and again.content == b"" and again.headers["cache-control"] == IMMUTABLE
    strong = pinned.headers["etag"].removeprefix("W/")
    assert (
        client.get(
            url, params={"color": "cell_type", "version": version}, headers={"If-None-Match": strong}
        ).status_code
        == 304
    )  # weak comparison
    arrow = client.get(url, params={"color": "cell_type", "version": version}, headers={"Accept": ARROW})
    assert arrow.headers["etag"] != pinned.headers["etag"] and arrow.headers["vary"] == "Accept"
    body = {"genes": ["Gene1"], "groupby": "cell_type", "version": version}
    first = client.post("/api/v1/datasets/pbmc/summary", json=body)
    assert first.headers["cache-control"] == IMMUTABLE
    assert (
        client.post(
            "/api/v1/datasets/pbmc/summary", json=body, headers={"If-None-Match": first.headers["etag"]}
        ).status_code
        == 304
    )
    genes = client.get("/api/v1/datasets/pbmc/genes", params={"version": version})
    assert genes.headers["cache-control"] == IMMUTABLE


@pytest.mark.slow
def test_admin_publish_and_rollback_move_the_pointer(
    own_published: tuple[Settings, ad.AnnData, str], make_h5ad: MakeH5ad
) -> None:
    settings, adata, v1 = own_published
    with TestClient(create_app(settings, upkeep=False)) as client:
        _admin_publish_and_rollback(client, settings, adata, v1, make_h5ad)


def _admin_publish_and_rollback(
    client: TestClient, settings: Settings, adata: ad.AnnData, v1: str, make_h5ad: MakeH5ad
) -> None:
    newer = _with_embedding(22)
    v2 = ingest(
        make_h5ad(newer, name="v2.h5ad"), dataset="pbmc", groupbys=["cell_type"], settings=settings
    ).version
    body = {"genes": ["Gene3"], "groupby": "cell_type", "stats": ["sum"], "layer": "input"}

    def live_sum() -> tuple[str, float]:
        got = client.post("/api/v1/datasets/pbmc/summary", json=body).json()
        return got["version"], got["values"]["sum"][got["groups"].index("T")][0]

    t_sum = {
        v: float(np.asarray(a.X)[(a.obs["cell_type"] == "T").to_numpy(), 3].sum())
        for v, a in ((v1, adata), (v2, newer))
    }
    assert live_sum() == (v2, t_sum[v2])
    r = client.post("/api/v1/admin/datasets/pbmc/rollback")
    assert r.status_code == 200 and r.json()["version"] == v1 and r.json()["status"] == "published"
    assert r.headers["cache-control"] == "no-store"
    assert live_sum() == (v1, t_sum[v1])
    r = client.post("/api/v1/admin/datasets/pbmc/publish", json={"version": v2})
    assert r.status_code == 200 and r.json()["current"] is True
    assert live_sum() == (v2, t_sum[v2])
    r = client.post("/api/v1/admin/datasets/pbmc/rollback", json={"to": v1})
    assert r.json()["version"] == v1 and live_sum() == (v1, t_sum[v1])
    statuses = {
        v["version"]: (v["status"], v["current"]) for v in client.get("/api/v1/datasets/pbmc/versions").json()
    }
    assert statuses == {v1: ("published", True), v2: ("retired", False)}
    refused = client.post("/api/v1/admin/datasets/pbmc/publish", json={"version": v1})
    assert refused.status_code == 409 and "published" in refused.json()["detail"]
    missing = client.post("/api/v1/admin/datasets/pbmc/publish", json={"version": "f" * 32})
    assert missing.status_code == 404 and "f" * 32 in missing.json()["detail"]
    assert client.post("/api/v1/admin/datasets/nope/rollback").status_code == 404


def test_stale_versions_spares_live_and_recently_used_ones() -> None:
    opened = ["old", "pinned", "live", "fresh"]
    last = {"pinned": 990.0, "old": 100.0}
    assert stale_versions(opened, ["live"], last, now=1000.0, grace=60) == ["old", "fresh"]
    assert stale_versions(opened, ["live", "old", "fresh"], last, now=1000.0, grace=5) == ["pinned"]
    assert stale_versions(opened, [], {}, now=0.0, grace=0) == opened


@pytest.mark.slow
def test_retired_versions_are_evicted_and_pinned_readers_still_answered(
    own_published: tuple[Settings, ad.AnnData, str], make_h5ad: MakeH5ad
) -> None:
    settings, adata, v1 = own_published
    assert settings.cache is not None
    app = create_app(settings, upkeep=False, evict_after=3600)
    wc: Widecube = app.state.widecube
    body = {"genes": ["Gene3"], "groupby": "cell_type", "stats": ["sum"], "layer": "input"}
    with TestClient(app) as client:
        before = client.post("/api/v1/datasets/pbmc/summary", json=body).json()
        assert (settings.cache / v1).is_dir() and wc.opened_versions() == [v1]
        v2 = ingest(
            make_h5ad(_with_embedding(23), name="v2.h5ad"),
            dataset="pbmc",
            groupbys=["cell_type"],
            settings=settings,
        ).version
        assert client.post("/api/v1/datasets/pbmc/summary", json=body).json()["version"] == v2
        done = app.state.upkeep.run_once()
        assert done["warmed"] == [v2] and done["evicted"] == []  # v1 served a request just now
        app.state.upkeep.grace = 0.0
        done = app.state.upkeep.run_once()
        assert done["evicted"] == [v1] and wc.opened_versions() == [v2]
        assert not (settings.cache / v1).exists() and (settings.cache / v2).is_dir()
        assert not [p for p in settings.cache.iterdir() if p.name.startswith(".evicted")]
        pinned = client.post("/api/v1/datasets/pbmc/summary", json={**body, "version": v1}).json()
        assert pinned["version"] == v1 and pinned["values"] == before["values"]  # re-opened on demand
        x = np.asarray(adata.X)
        assert (
            pinned["values"]["sum"][pinned["groups"].index("T")][0]
            == x[(adata.obs["cell_type"] == "T").to_numpy(), 3].sum()
        )
        (settings.cache / "0123456789abcdef0123456789abcdef").mkdir()  # left by another process
        wc.evict(v1)
        swept = app.state.upkeep.run_once()["swept"]
        assert swept == ["0123456789abcdef0123456789abcdef"] and (settings.cache / v2).is_dir()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.subprocess
def test_serve_with_two_workers_sharing_the_cache(published: tuple[Settings, ad.AnnData, str]) -> None:
    settings, adata, version = published
    port = _free_port()
    env = {**os.environ, "WIDECUBE_STORAGE": str(settings.storage)}
    cli = [sys.executable, "-m", "widecube.cli", "serve", "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(
        cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
            time.sleep(0.2)
        x = np.asarray(adata.X)
        expected = x[(adata.obs["cell_type"] == "B").to_numpy(), 5].mean()
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(40):  # new connections: both workers answer some
                query = {"genes": ["Gene5"], "groupby": "cell_type", "layer": "input"}
                r = http.post("/api/v1/datasets/pbmc/summary", json=query, headers={"Connection": "close"})
                got = r.json()
                assert r.status_code == 200 and got["version"] == version
                assert got["values"]["mean"][got["groups"].index("B")][0] == pytest.approx(
                    expected, rel=1e-12
                )
        assert (settings.cache / version).is_dir()
        assert httpx.get(f"{url}/", timeout=5).text.startswith("<!doctype html>")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    log = out.decode(errors="replace")
    assert f"Started parent process [{proc.pid}]" in log, log[-2000:]  # uvicorn's supervisor: the CLI
    started = [line for line in log.splitlines() if "Started server process [" in line]
    workers = {line.rsplit("[", 1)[1].rstrip("]") for line in started}
    assert len(workers) == 2 and str(proc.pid) not in workers, log[-2000:]  # two worker processes
