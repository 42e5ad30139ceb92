"""The REST API, in-process and over real HTTP, against numpy references."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from fastapi.testclient import TestClient

from _data import MakeH5ad, small_adata, write_h5ad
from widecube.api import create_app
from widecube.config import Settings
from widecube.pipeline import ingest

pytestmark = pytest.mark.slow


def _publish(settings: Settings, folder: Path) -> tuple[Settings, ad.AnnData, str]:
    adata = small_adata(seed=11)
    record = ingest(
        write_h5ad(adata, folder / "in.h5ad"),
        dataset="pbmc",
        groupbys=["cell_type", "cell_type,donor"],
        settings=settings,
    )
    return settings, adata, record.version


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, ad.AnnData, str]:
    """One ingest shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("api")
    return _publish(Settings(storage=root / "store"), root)


@pytest.fixture
def own_published(tmp_path: Path, settings: Settings) -> tuple[Settings, ad.AnnData, str]:
    """A dataset of the test's own, for a test that publishes another version."""
    return _publish(settings, tmp_path)


@pytest.fixture
def client(published: tuple[Settings, ad.AnnData, str]) -> Iterator[TestClient]:
    with TestClient(create_app(published[0])) as c:
        yield c


def test_datasets_and_detail(client: TestClient, published: tuple[Settings, ad.AnnData, str]) -> None:
    _, adata, version = published
    listing = client.get("/api/v1/datasets").json()
    assert [(d["name"], d["version"], d["n_cells"], d["n_genes"]) for d in listing] == [
        ("pbmc", version, adata.n_obs, adata.n_vars)
    ]
    assert listing[0]["groupbys"] == ["cell_type", "cell_type,donor"]
    detail = client.get("/api/v1/datasets/pbmc").json()
    assert detail["version"] == version and detail["n_cells"] == 240
    counts = adata.obs["cell_type"].value_counts(sort=False)
    assert detail["obs"]["cell_type"] == {"categories": list(counts.index), "counts": counts.tolist()}
    assert "score" not in detail["obs"]
    assert set(detail["views"]) == {"summary", "genes", "quantiles", "markers", "matrix"}
    assert detail["views"]["summary"]["groupbys"] == ["cell_type", "cell_type,donor"]


def test_gene_search(client: TestClient) -> None:
    names = [f"Gene{j}" for j in range(60)]
    got = client.get("/api/v1/datasets/pbmc/genes", params={"prefix": "gene1", "limit": 5}).json()
    assert got["genes"] == sorted(n for n in names if n.lower().startswith("gene1"))[:5]
    assert len(client.get("/api/v1/datasets/pbmc/genes", params={"limit": 100}).json()["genes"]) == 60
    assert client.get("/api/v1/datasets/pbmc/genes", params={"prefix": "zz"}).json() == {"genes": []}


def test_summary_equals_numpy(client: TestClient, published: tuple[Settings, ad.AnnData, str]) -> None:
    _, adata, version = published
    genes = ["Gene3", "Gene0", "Gene59"]
    body = {
        "genes": genes,
        "groupby": "cell_type,donor",
        "stats": ["mean", "frac_expressing", "var"],
        "layer": "input",
    }
    r = client.post("/api/v1/datasets/pbmc/summary", json=body)
    assert r.status_code == 200
    got = r.json()
    assert got["dataset"] == "pbmc" and got["version"] == version and got["genes"] == genes
    assert version in r.headers["etag"]
    x = pd.DataFrame(np.asarray(adata.X)[:, [3, 0, 59]], columns=genes)
    x["group"] = (adata.obs["cell_type"].astype(str) + "_" + adata.obs["donor"].astype(str)).to_numpy()
    grouped = x.groupby("group")
    assert got["groups"] == sorted(grouped.groups, key=got["groups"].index)
    assert set(got["groups"]) == set(grouped.groups)
    for i, g in enumerate(got["groups"]):
        np.testing.assert_allclose(got["values"]["mean"][i], grouped.get_group(g)[genes].mean(), rtol=1e-12)
        np.testing.assert_allclose(
            got["values"]["frac_expressing"][i], (grouped.get_group(g)[genes] != 0).mean(), rtol=1e-12
        )
        expected_var = grouped.get_group(g)[genes].var(ddof=1).to_numpy()
        got_var = np.array([np.nan if v is None else v for v in got["values"]["var"][i]])
        np.testing.assert_allclose(got_var, expected_var, rtol=1e-9, equal_nan=True)


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("nope", {"genes": ["Gene1"], "groupby": "cell_type"}, 404, "'nope'"),
        ("pbmc", {"genes": ["Gene1", "XIST"], "groupby": "cell_type"}, 422, "no gene 'XIST'"),
        ("pbmc", {"genes": ["Gene1"], "groupby": "tissue"}, 422, "no groupby 'tissue'"),
        ("pbmc", {"genes": ["Gene1"], "groupby": "cell_type", "stats": ["q99"]}, 422, "unknown stat 'q99'"),
        ("pbmc", {"genes": ["Gene1"], "groupby": "cell_type", "version": "0" * 32}, 404, "0" * 32),
        ("pbmc", {"genes": [], "groupby": "cell_type"}, 422, "genes"),
    ],
)
def test_errors_name_what_is_wrong(
    client: TestClient, path: str, body: dict[str, object], status: int, message: str
) -> None:
    r = client.post(f"/api/v1/datasets/{path}/summary", json=body)
    assert r.status_code == status
    assert message in r.json()["detail"]


def test_etag_304_and_version_pinning(
    own_published: tuple[Settings, ad.AnnData, str], make_h5ad: MakeH5ad
) -> None:
    settings, _, v1 = own_published
    with TestClient(create_app(settings)) as client:
        _etag_304_and_version_pinning(client, settings, v1, make_h5ad)


def _etag_304_and_version_pinning(
    client: TestClient, settings: Settings, v1: str, make_h5ad: MakeH5ad
) -> None:
    body = {"genes": ["Gene3"], "groupby": "cell_type", "stats": ["sum"], "layer": "input"}
    first = client.post("/api/v1/datasets/pbmc/summary", json=body)
    again = client.post(
        "/api/v1/datasets/pbmc/summary", json=body, headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""
    newer = small_adata(seed=12)
    v2 = ingest(
        make_h5ad(newer, name="v2.h5ad"), dataset="pbmc", groupbys=["cell_type"], settings=settings
    ).version
    live = client.post("/api/v1/datasets/pbmc/summary", json=body)
    assert live.json()["version"] == v2 and live.headers["etag"] != first.headers["etag"]
    pinned = client.post("/api/v1/datasets/pbmc/summary", json={**body, "version": v1})
    assert pinned.json()["values"] == first.json()["values"]
    x2 = np.asarray(newer.X)
    assert live.json()["values"]["sum"][0][0] == x2[(newer.obs["cell_type"] == "T").to_numpy(), 3].sum()
    versions = client.get("/api/v1/datasets/pbmc/versions").json()
    assert [(v["version"], v["status"], v["current"]) for v in versions] == [
        (v2, "published", True),
        (v1, "retired", False),
    ]
    assert client.get("/openapi.json").json()["paths"]["/api/v1/datasets/{name}/summary"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _versioned_input(k: int, path: Path) -> Path:
    """Gene K is k in every cell and K2 is 2k, so any answer tells which version made it."""
    adata = small_adata(n_cells=90, n_genes=8, seed=k)
    x = np.asarray(adata.X, dtype=np.float64)
    x[:, 1], x[:, 2] = k, 2 * k
    adata.X = x
    adata.var_names = ["Gene0", "K", "K2", *[f"Gene{j}" for j in range(3, 8)]]
    return write_h5ad(adata, path)


def test_reader_never_sees_a_mixed_or_missing_version_during_20_publishes(
    tmp_path: Path, settings: Settings
) -> None:
    ingest(
        _versioned_input(1, tmp_path / "v1.h5ad"), dataset="live", groupbys=["cell_type"], settings=settings
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=_free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.config.port}/api/v1/datasets/live/summary"
    seen: list[tuple[str, float]] = []
    problems: list[str] = []
    done = threading.Event()

    def read() -> None:
        with httpx.Client(timeout=30) as http:
            while not done.is_set():
                r = http.post(
                    url,
                    json={"genes": ["K", "K2"], "groupby": "cell_type", "stats": ["mean"], "layer": "input"},
                )
                if r.status_code != 200:
                    problems.append(f"HTTP {r.status_code}: {r.text}")
                    continue
                body = r.json()
                mean = np.array(body["values"]["mean"])
                if not (np.all(mean[:, 0] == mean[0, 0]) and np.all(mean[:, 1] == 2 * mean[:, 0])):
                    problems.append(f"mixed values in {body}")
                if body["version"] not in r.headers["etag"]:
                    problems.append("ETag names another version")
                seen.append((body["version"], float(mean[0, 0])))
                done.wait(0.005)  # hundreds of reads per publish, and the ingests keep the GIL

    reader = threading.Thread(target=read)
    reader.start()
    made = {}
    try:
        for k in range(2, 22):
            record = ingest(  # the summary is all the reader asks for: the other views only cost time
                _versioned_input(k, tmp_path / f"v{k}.h5ad"),
                dataset="live",
                groupbys=["cell_type"],
                settings=settings,
                views="summary",
            )
            made[record.version] = float(k)
    finally:
        done.set()
        reader.join()
        server.should_exit = True
        thread.join()
    assert problems == []
    assert len(made) == 20 and len(seen) > 20
    observed = dict(seen)
    assert all(made.get(v, 1.0) == k for v, k in observed.items())
    assert len(observed) > 1  # the reader did see versions change under it
