"""``release=NAME`` on every dataset route: each answers the version the release names, not
the live one, and a ``version`` that disagrees with the release is a 422.

Dataset ``d`` has two versions with different numbers (other counts in each); release ``r1``
names the first, the second is live. ``ROUTES`` holds one request for each read route of a
dataset; ``test_every_dataset_route_is_in_the_table`` fails on a new route that is missing
from it, so a new route cannot skip the release.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pytest
from fastapi.testclient import TestClient

from _lake import GENE, TYPES, expected_means, tiny_input
from widecube.access import Actor
from widecube.api import create_app
from widecube.catalog import Catalog
from widecube.config import Settings
from widecube.pipeline import Jobs
from widecube.query import Widecube

pytestmark = pytest.mark.slow
CLI = Actor.cli("test")
D = "/api/v1/datasets/d"

# one request per dataset read route: (method, path, httpx keywords)
ROUTES: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/api/v1/datasets/{name}"): {},
    ("GET", "/api/v1/datasets/{name}/genes"): {"params": {"prefix": "gene"}},
    ("GET", "/api/v1/datasets/{name}/summary"): {
        "params": {"genes": GENE, "groupby": "cell_type", "stats": "mean", "layer": "input"}
    },
    ("POST", "/api/v1/datasets/{name}/summary"): {
        "json": {"genes": [GENE], "groupby": "cell_type", "stats": ["mean"], "layer": "input"}
    },
    ("POST", "/api/v1/datasets/{name}/aggregate"): {
        "json": {"genes": [GENE], "groupby": "cell_type", "stats": ["mean"], "layer": "input"}
    },
    ("POST", "/api/v1/datasets/{name}/expression"): {"json": {"genes": [GENE], "layer": "input"}},
    ("GET", "/api/v1/datasets/{name}/embedding"): {},
    ("GET", "/api/v1/datasets/{name}/embedding/{key}"): {"path": f"{D}/embedding/X_umap"},
    ("GET", "/api/v1/datasets/{name}/markers"): {"params": {"groupby": "cell_type", "group": "B"}},
    ("GET", "/api/v1/datasets/{name}/genes/stats"): {"params": {"genes": GENE}},
    ("POST", "/api/v1/datasets/{name}/genes/stats"): {"json": {"genes": [GENE]}},
    ("GET", "/api/v1/datasets/{name}/cells/stats"): {},
    ("POST", "/api/v1/datasets/{name}/genes/resolve"): {"json": {"query": [GENE.lower()]}},
    ("POST", "/api/v1/datasets/{name}/compare"): {
        "json": {"a": {"group": {"groupby": "cell_type", "group": "B"}}, "genes": [GENE], "layer": "input"}
    },
    ("POST", "/api/v1/datasets/{name}/violin"): {
        "json": {"genes": [GENE], "groupby": "cell_type", "layer": "input"}
    },
    ("POST", "/api/v1/datasets/{name}/dendrogram"): {
        "json": {"genes": [GENE, "Gene4"], "groupby": "cell_type", "layer": "input"}
    },
    ("POST", "/api/v1/datasets/{name}/cells"): {"json": {"filter": {"donor": ["d1"]}}},
    ("GET", "/api/v1/datasets/{name}/obs/{index}"): {"path": f"{D}/obs/3"},
    ("GET", "/api/v1/datasets/{name}/download"): {},
}
UNVERSIONED = {
    ("GET", "/api/v1/datasets/{name}/versions"),  # lists every version
    ("GET", "/api/v1/datasets/{name}/metadata"),  # the dataset's, not a version's
}


@dataclass
class World:
    client: TestClient
    old: str  # the version release r1 names
    live: str
    inputs: dict[str, ad.AnnData]  # by version


def _input(root: Path, seed: int) -> tuple[Path, ad.AnnData]:
    path, adata = tiny_input(root, seed)
    adata.obsm["X_umap"] = np.random.default_rng(seed).random((adata.n_obs, 2))
    adata.write_h5ad(path)
    return path, adata


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("released")
    settings = Settings(storage=root / "store", auth=False)
    with Catalog(settings.catalog_url) as catalog:
        jobs = Jobs(settings, catalog)
        inputs = {}
        versions = []
        for seed in (0, 1):
            path, adata = _input(root, seed)
            record = jobs.ingest(path, dataset="d", groupbys=["cell_type"], actor=CLI)
            inputs[record.version] = adata
            versions.append(record.version)
            if seed == 0:
                wc = Widecube(settings)
                wc.create_release("r1", ["d"], actor=CLI)
                wc.close()
    with TestClient(create_app(settings, upkeep=False, jobs=False)) as client:
        yield World(client, versions[0], versions[1], inputs)


def _send(world: World, route: tuple[str, str], **params: str) -> Any:
    spec = ROUTES[route]
    method, _ = route
    query = {**spec.get("params", {}), **params}
    path = spec.get("path", route[1].replace("{name}", "d"))
    return world.client.request(method, path, params=query, json=spec.get("json"))


def _served(answer: Any) -> str:
    body = answer.json()
    return (
        str(body["version"])
        if isinstance(body, dict) and "version" in body
        else answer.headers["x-widecube-version"]
    )


def test_every_dataset_route_is_in_the_table(world: World) -> None:
    spec = world.client.get("/openapi.json").json()
    found = {
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        if path.startswith("/api/v1/datasets/{name}")
        for method in ops
    }
    assert ("POST", "/api/v1/datasets/{name}/compare") in found
    assert found - UNVERSIONED == set(ROUTES), "a dataset route is missing from ROUTES (or gone)"
    for method, path in ROUTES:
        names = {p["name"] for p in spec["paths"][path][method.lower()].get("parameters", [])}
        assert "release" in names, f"{method} {path} does not take release="


@pytest.mark.parametrize(
    "route", list(ROUTES), ids=lambda r: f"{r[0]} {r[1].removeprefix('/api/v1/datasets/{name}')}"
)
def test_a_release_pins_every_route_to_its_version(world: World, route: tuple[str, str]) -> None:
    assert world.old != world.live
    live = _send(world, route)
    assert live.status_code == 200, live.text
    assert _served(live) == world.live
    pinned = _send(world, route, release="r1")
    assert pinned.status_code == 200, pinned.text
    assert _served(pinned) == world.old
    assert "immutable" in pinned.headers.get("cache-control", "immutable") or route[1].endswith("download")
    agreeing = _send(world, route, release="r1", version=world.old)
    assert agreeing.status_code == 200 and _served(agreeing) == world.old
    if route[0] == "GET":  # a POST's version is in its body
        refused = _send(world, route, release="r1", version=world.live)
        assert refused.status_code == 422 and world.old in refused.json()["detail"]
    unknown = _send(world, route, release="nope")
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]


def test_a_post_whose_body_pins_another_version_than_the_release_is_refused(world: World) -> None:
    route = ("POST", "/api/v1/datasets/{name}/violin")
    body = {**ROUTES[route]["json"], "version": world.live}
    refused = world.client.post(f"{D}/violin", params={"release": "r1"}, json=body)
    assert refused.status_code == 422 and world.old in refused.json()["detail"]


def test_released_numbers_are_the_released_inputs(world: World) -> None:
    """The numbers, not only the version label: the released version's means by numpy."""
    got = _send(world, ("POST", "/api/v1/datasets/{name}/summary"), release="r1").json()
    means = dict(zip(got["groups"], (row[0] for row in got["values"]["mean"]), strict=True))
    assert [means[t] for t in TYPES] == pytest.approx(expected_means(world.inputs[world.old]))
    assert [means[t] for t in TYPES] != pytest.approx(expected_means(world.inputs[world.live]))
    # on the fly: the compare of group B against the rest reads the released cells too
    cmp = _send(world, ("POST", "/api/v1/datasets/{name}/compare"), release="r1").json()
    adata = world.inputs[world.old]
    x = np.asarray(adata.X)[:, list(adata.var_names).index(GENE)]
    in_b = adata.obs["cell_type"].astype(str).to_numpy() == "B"
    row = next(r for r in cmp["results"] if r["gene"] == GENE)
    assert row["mean_a"] == pytest.approx(x[in_b].mean())
    assert row["mean_b"] == pytest.approx(x[~in_b].mean())
    cell = _send(world, ("GET", "/api/v1/datasets/{name}/obs/{index}"), release="r1").json()
    assert cell["version"] == world.old
