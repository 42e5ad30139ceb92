"""``release=NAME`` in the Python client, over real HTTP (widecube.Client) and in process
(widecube.open): every query answers the version the release names, with that version's
numbers (numpy on its input), after a newer version went live.

Dataset ``d`` has two versions (other counts in each); release ``r1``
names the first, the second is live.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import uvicorn

import widecube
import widecube.client
from _lake import GENE, TYPES, expected_means, tiny_input
from widecube.access import Actor
from widecube.api import create_app
from widecube.catalog import Catalog
from widecube.client import Reader
from widecube.config import Settings
from widecube.errors import InvalidQuery, NotFound
from widecube.pipeline import Jobs
from widecube.query import Widecube

pytestmark = pytest.mark.slow
CLI = Actor.cli("test")


@dataclass
class World:
    faces: dict[str, Reader]
    old: str
    live: str
    inputs: dict[str, ad.AnnData]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root: Path = tmp_path_factory.mktemp("client-releases")
    settings = Settings(storage=root / "store", auth=False)
    inputs, versions = {}, []
    with Catalog(settings.catalog_url) as catalog:
        jobs = Jobs(settings, catalog)
        for seed in (0, 1):
            path, adata = tiny_input(root, seed)
            record = jobs.ingest(path, dataset="d", groupbys=["cell_type"], actor=CLI)
            inputs[record.version] = adata
            versions.append(record.version)
            if seed == 0:
                wc = Widecube(settings)
                wc.create_release("r1", ["d"], note="first cut", actor=CLI)
                wc.close()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, upkeep=False, jobs=False),
            host="127.0.0.1",
            port=_free_port(),
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        with (
            widecube.Client(f"http://127.0.0.1:{server.config.port}") as client,
            widecube.open(settings.storage) as local,
        ):
            yield World({"client": client, "local": local}, versions[0], versions[1], inputs)
    finally:
        server.should_exit = True
        thread.join()


FACES = ["client", "local"]


@pytest.mark.parametrize("face", FACES)
def test_releases_lists_each_release_with_its_versions(world: World, face: str) -> None:
    found = world.faces[face].releases()
    assert list(found.index) == ["r1"]
    assert found.loc["r1", "datasets"] == {"d": world.old}
    assert found.loc["r1", "note"] == "first cut"
    assert (
        isinstance(found.loc["r1", "created"], pd.Timestamp) and found.loc["r1", "created"].tzname() == "UTC"
    )


@pytest.mark.parametrize("face", FACES)
def test_every_query_reads_the_released_version(world: World, face: str) -> None:
    wc, old = world.faces[face], world.old
    adata = world.inputs[old]
    x = np.asarray(adata.X)[:, list(adata.var_names).index(GENE)]
    types = adata.obs["cell_type"].astype(str).to_numpy()

    pb = wc.summary("d", [GENE], "cell_type", stats=["mean"], layer="input", release="r1")
    assert pb.uns["version"] == old
    means = pb.to_df(layer="mean")[GENE]
    assert [means[t] for t in TYPES] == pytest.approx(expected_means(adata))
    live = wc.summary("d", [GENE], "cell_type", stats=["mean"], layer="input")
    assert live.uns["version"] == world.live
    assert [live.to_df(layer="mean")[GENE][t] for t in TYPES] == pytest.approx(
        expected_means(world.inputs[world.live])
    )

    agg = wc.aggregate(
        "d", [GENE], "cell_type", stats=["sum"], filter={"donor": ["d1"]}, layer="input", release="r1"
    )
    keep = adata.obs["donor"].astype(str).to_numpy() == "d1"
    assert agg.uns["version"] == old
    assert agg.to_df(layer="sum")[GENE]["B"] == pytest.approx(x[keep & (types == "B")].sum())

    expr = wc.expression("d", [GENE], layer="input", release="r1")
    np.testing.assert_allclose(expr[GENE].to_numpy(), x.astype(np.float32))

    markers = wc.markers("d", "cell_type", "B", limit=3, release="r1")
    assert markers.attrs["version"] == old
    assert wc.genes("d", "gene", limit=3, release="r1") == ["Gene0", "Gene1", "Gene2"]


@pytest.mark.parametrize("face", FACES)
def test_a_release_and_a_version_must_agree_and_an_unknown_release_is_not_found(
    world: World, face: str
) -> None:
    wc = world.faces[face]
    same = wc.summary("d", [GENE], "cell_type", release="r1", version=world.old)
    assert same.uns["version"] == world.old
    with pytest.raises(InvalidQuery, match=f"not the version the release names \\({world.old}\\)"):
        wc.summary("d", [GENE], "cell_type", release="r1", version=world.live)
    with pytest.raises(NotFound, match="nope"):
        wc.genes("d", release="nope")


def test_local_pseudobulk_reads_the_released_version(world: World) -> None:
    local = world.faces["local"]
    assert isinstance(local, widecube.client.Local)
    pb = local.pseudobulk("d", "cell_type", layer="input", release="r1")
    assert pb.uns["version"] == world.old
    adata = world.inputs[world.old]
    x = np.asarray(adata.X)[:, list(adata.var_names).index(GENE)]
    in_t = adata.obs["cell_type"].astype(str).to_numpy() == "T"
    assert pb[pb.obs_names == "T", GENE].layers["sum"][0, 0] == pytest.approx(x[in_t].sum())
