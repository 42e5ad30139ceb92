"""The data-lake routes over HTTP with authentication on: metadata and search (hidden datasets
neither found nor counted), genes across datasets against numpy (per dataset and pooled over
the concatenated cells), download links (files read back against the manifest's sha256).

Datasets: ``a`` and ``b`` (human, public; ``b`` lacks Gene25..), ``c`` (mouse, public), ``h``
(human, restricted: only its owner olga sees it). ``a`` and ``b`` have var ``gene_ids``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import anndata as ad
import numpy as np
import pytest
from fastapi.testclient import TestClient

from _data import small_adata, write_h5ad
from widecube.access import Actor, Governance
from widecube.api import create_app
from widecube.catalog import Catalog
from widecube.config import Settings
from widecube.pipeline import Jobs

pytestmark = pytest.mark.slow
CLI = Actor.cli("test")


def _adata(seed: int, n_genes: int) -> ad.AnnData:
    adata = small_adata(n_cells=150, n_genes=n_genes, seed=seed)
    adata.var["gene_ids"] = [f"ENSG{j:011d}" for j in range(n_genes)]
    return adata


DATASETS: dict[str, tuple[ad.AnnData, dict[str, Any], str]] = {
    "a": (
        _adata(1, 30),
        {"title": "Blood atlas", "organism": "human", "tissue": "blood", "tags": ["x"]},
        "public",
    ),
    "b": (_adata(2, 20), {"title": "Lung cells", "organism": "human", "tissue": "lung"}, "public"),
    "c": (_adata(3, 30), {"title": "Mouse blood", "organism": "mouse", "tissue": "blood"}, "public"),
    "h": (_adata(4, 30), {"title": "Hidden blood", "organism": "human", "tissue": "secret"}, "restricted"),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    root = tmp_path_factory.mktemp("lake")
    settings = Settings(storage=root / "store", auth=True, rate_limit="100000/minute")
    with Catalog(settings.catalog_url) as catalog:
        jobs = Jobs(settings, catalog)
        for name, (adata, meta, visibility) in DATASETS.items():
            path = write_h5ad(adata, root / f"{name}.h5ad")
            jobs.ingest(
                path, dataset=name, groupbys=["cell_type"], visibility=visibility, metadata=meta, actor=CLI
            )
        gov = Governance(catalog, auth=True)
        gov.grant("h", "olga", "owner", actor=CLI)
        gov.grant("a", "olga", "owner", actor=CLI)
        gov.grant("a", "rita", "reader", actor=CLI)
        tokens = {u: gov.create_token(user=u, scope="admin", actor=CLI).text for u in ("olga", "rita")}
    with TestClient(create_app(settings, upkeep=False, jobs=False)) as client:
        yield client, tokens


def _bearer(tokens: dict[str, str], user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[user]}"}


def test_search_finds_and_counts_only_what_the_caller_may_read(
    world: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = world
    anonymous = client.get("/api/v1/search", params={"q": "blood"}).json()
    assert [d["name"] for d in anonymous["datasets"]] == ["a", "c"]
    assert anonymous["datasets"][0]["metadata"]["title"] == "Blood atlas"
    assert anonymous["facets"]["organism"] == {"human": 1, "mouse": 1}
    everything = client.get("/api/v1/search").json()
    assert everything["total"] == 3 and "secret" not in everything["facets"]["tissue"]
    assert everything["facets"]["tissue"] == {"blood": 2, "lung": 1}
    owner = client.get("/api/v1/search", params={"q": "blood"}, headers=_bearer(tokens, "olga")).json()
    assert [d["name"] for d in owner["datasets"]] == ["a", "c", "h"]
    assert owner["facets"]["tissue"] == {"blood": 2, "secret": 1}
    human = client.get("/api/v1/search", params={"organism": "human", "tissue": ["blood", "lung"]}).json()
    assert [d["name"] for d in human["datasets"]] == ["a", "b"]
    assert human["facets"]["organism"] == {"human": 2, "mouse": 1}  # the alternatives stay counted
    listed = client.get("/api/v1/datasets", params={"q": "lung"}).json()
    assert [d["name"] for d in listed] == ["b"] and "metadata" not in listed[0]
    assert [d["name"] for d in client.get("/api/v1/datasets").json()] == ["a", "b", "c"]
    bad = client.get("/api/v1/search", params={"q": " ".join(["w"] * 40)})
    assert bad.status_code == 422 and "40 words" in bad.json()["detail"]


def test_metadata_is_read_by_readers_and_changed_by_owners(world: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = world
    assert client.get("/api/v1/datasets/a/metadata").json() == {
        "dataset": "a",
        "metadata": {"title": "Blood atlas", "organism": ["human"], "tissue": ["blood"], "tags": ["x"]},
    }
    assert client.get("/api/v1/datasets/h/metadata").status_code == 404  # hidden: as missing
    patch = {"description": "Peripheral blood, 3 donors", "tags": ["x", "pbmc"], "extra": {"donors": "3"}}
    assert client.patch("/api/v1/admin/datasets/a/metadata", json=patch).status_code == 401
    reader = client.patch("/api/v1/admin/datasets/a/metadata", json=patch, headers=_bearer(tokens, "rita"))
    assert reader.status_code == 403 and "describe" in reader.json()["detail"]
    done = client.patch("/api/v1/admin/datasets/a/metadata", json=patch, headers=_bearer(tokens, "olga"))
    assert done.status_code == 200, done.text
    assert done.json()["metadata"]["extra"] == {"donors": "3"}
    assert [
        d["name"]
        for d in client.get("/api/v1/search", params={"q": "peripheral donors 3"}).json()["datasets"]
    ] == ["a"]
    removed = client.patch(
        "/api/v1/admin/datasets/a/metadata",
        json={"description": None, "tags": ["x"]},
        headers=_bearer(tokens, "olga"),
    ).json()["metadata"]
    assert "description" not in removed and removed["tags"] == ["x"] and removed["extra"] == {"donors": "3"}
    bad = client.patch(
        "/api/v1/admin/datasets/a/metadata", json={"titel": "x"}, headers=_bearer(tokens, "olga")
    )
    assert bad.status_code == 422


def _reference(adata: ad.AnnData, genes: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{group: (n_cells, X of the group's cells × genes)} from the h5ad's own counts (observed
    groups: the empty category 'ghost' is no group)."""
    x = np.asarray(adata[:, genes].X, dtype=np.float64)
    types = adata.obs["cell_type"]
    return {
        str(g): (np.count_nonzero(types == g), x[(types == g).to_numpy()])
        for g in types.cat.categories
        if (types == g).any()
    }


def test_genes_across_datasets_against_numpy(world: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = world
    asked = ["Gene3", "ensg00000000005", "Gene25", "NOPE"]  # a symbol, an ID (any case), absent in b, nowhere
    body = {
        "genes": asked,
        "by": "cell_type",
        "filter": {"organism": "human"},
        "stats": ["mean", "frac_expressing", "var"],
        "layer": "input",
    }
    answer = client.post("/api/v1/atlas/expression", json=body)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert [d["dataset"] for d in found["datasets"]] == ["a", "b"]  # c is mouse, h hidden
    a, b = found["datasets"]
    assert a["genes"] == ["Gene3", "Gene5", "Gene25", None] and a["absent"] == ["NOPE"]
    assert b["genes"] == ["Gene3", "Gene5", None, None] and b["absent"] == ["Gene25", "NOPE"]
    pooled: dict[str, list[np.ndarray]] = {}
    for part in (a, b):
        adata = DATASETS[part["dataset"]][0]
        present = [g for g in part["genes"] if g is not None]
        ref = _reference(adata, present)
        assert len(part["groups"]) == len(ref) > 3
        for i, group in enumerate(part["groups"]):
            n, x = ref[group]
            assert part["n_cells"][i] == n
            for j, gene in enumerate(part["genes"]):
                mean = part["values"]["mean"][i][j]
                if gene is None or n == 0:
                    assert mean is None
                    continue
                col = x[:, present.index(gene)]
                assert mean == pytest.approx(col.mean(), rel=1e-12)
                assert part["values"]["frac_expressing"][i][j] == pytest.approx(np.mean(col > 0), rel=1e-12)
                var = part["values"]["var"][i][j]
                assert (var is None) if n < 2 else var == pytest.approx(col.var(ddof=1), rel=1e-9)
            full = np.full((n, len(asked)), np.nan)
            for j, gene in enumerate(part["genes"]):
                if gene is not None:
                    full[:, j] = x[:, present.index(gene)]
            pooled.setdefault(group, []).append(full)
    p = found["pooled"]
    assert p["groups"] == sorted(pooled)
    for i, group in enumerate(p["groups"]):
        cells = np.vstack(pooled[group])  # NaN where the dataset lacks the gene
        assert p["datasets"][i] == 2
        for j in range(len(asked)):
            col = cells[:, j][~np.isnan(cells[:, j])]
            assert p["n_cells"][i][j] == len(col)
            mean, frac, var = (p["values"][s][i][j] for s in ("mean", "frac_expressing", "var"))
            if len(col) == 0:
                assert mean is None and frac is None
                continue
            assert mean == pytest.approx(col.mean(), rel=1e-12)  # pooled from moments, not averaged means
            assert frac == pytest.approx(np.mean(col > 0), rel=1e-12)
            assert (var is None) if len(col) < 2 else var == pytest.approx(col.var(ddof=1), rel=1e-9)
    assert found["skipped"] == []


def test_genes_across_datasets_skips_what_cannot_answer(world: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = world
    body = {"genes": ["Gene3"], "by": "donor", "filter": {"datasets": ["a", "h"]}}
    anonymous = client.post("/api/v1/atlas/expression", json=body).json()
    assert anonymous["datasets"] == [] and [s["dataset"] for s in anonymous["skipped"]] == ["a"]
    assert "has no grouping 'donor'" in anonymous["skipped"][0]["reason"]
    owner = client.post("/api/v1/atlas/expression", json=body, headers=_bearer(tokens, "olga")).json()
    assert [s["dataset"] for s in owner["skipped"]] == ["a", "h"]
    bad = client.post("/api/v1/atlas/expression", json={"genes": ["Gene3"], "stats": ["median"]})
    assert bad.status_code == 422


def test_download_links_serve_the_snapshot_until_they_expire(
    world: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = world
    assert client.get("/api/v1/datasets/h/download").status_code == 404
    links = client.get("/api/v1/datasets/a/download", params={"expires_in": 600}).json()
    files = {f["path"]: f for f in links["files"]}
    assert "manifest.json" in files and "dataset/obs.parquet" in files and len(files) > 10
    manifest = client.get(files["manifest.json"]["url"])
    assert manifest.status_code == 200
    listed = manifest.json()["files"]
    assert set(listed) == set(files) - {"manifest.json"}
    for path in ("dataset/obs.parquet", next(p for p in files if "/c/" in p)):
        got = client.get(files[path]["url"])
        assert got.status_code == 200
        assert hashlib.sha256(got.content).hexdigest() == listed[path]["sha256"] == files[path]["sha256"]
    url = files["dataset/obs.parquet"]["url"]
    token = url.split("/files/")[1].split("/")[0]
    assert client.get(url.replace(token, token[:-2] + "xx")).status_code == 404
    assert client.get(url.replace("dataset/obs.parquet", "../catalog.sqlite")).status_code == 404
    short = client.get("/api/v1/datasets/a/download", params={"expires_in": 1}).json()
    time.sleep(2.1)
    expired = client.get(short["files"][0]["url"])
    assert expired.status_code == 403 and "expired" in expired.json()["detail"]
