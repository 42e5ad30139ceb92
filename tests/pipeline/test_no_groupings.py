"""Inputs without a categorical obs column (issue 9, item 2) ingest and serve.

A plain CSV/TSV, a 10x MTX folder, a Parquet, a Loom and a Cell Ranger 10x h5 carry no cell
metadata to group by. Each is ingested through the CLI (the CSV in a process of its own, the
others through typer's runner in the test's process) without ``--obs`` or ``--groupby``; the
dataset then has one synthetic grouping ``all`` whose one group ``all cells`` holds every cell,
and every statistic served is compared with numpy over the dense input matrix. Markers
(one-vs-rest) need two groups: they are skipped for such a grouping, and asking for them is a
422 saying why. A real grouping with one category is the same case.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from _cli import invoke, process
from _data import write_h5ad
from _io_writers import write_10x_h5, write_csv, write_loom, write_mtx, write_parquet
from widecube.api import create_app
from widecube.compute.groupings import ALL_CELLS, ALL_CELLS_GROUP, all_cells_key
from widecube.config import Settings
from widecube.pipeline import ingest
from widecube.query import Widecube
from widecube.snapshot import Snapshot

pytestmark = pytest.mark.slow

N_CELLS, N_GENES = 41, 12
QUANTILES = {"q10": 0.1, "q25": 0.25, "median": 0.5, "q75": 0.75, "q90": 0.9}
CELLS = [f"AAAC{i:04d}-1" for i in range(N_CELLS)]
GENES = [f"Gene{j}" for j in range(N_GENES)]
ASKED = ["Gene0", "Gene3", "Gene7", "Gene11"]  # Gene11 is never expressed


def counts(seed: int = 5) -> np.ndarray:
    """Small integer counts with an empty cell (row 4) and a gene never expressed (the last)."""
    rng = np.random.default_rng(seed)
    x = np.where(rng.random((N_CELLS, N_GENES)) < 0.4, rng.integers(1, 30, (N_CELLS, N_GENES)), 0)
    x[4, :] = 0
    x[:, -1] = 0
    x[0, 0] = 250  # one large value, so the quantiles are not all small integers
    return x.astype(np.float64)


X = counts()


def _write(fmt: str, folder: Path) -> Path:
    writers: dict[str, Callable[[], Path]] = {
        "csv": lambda: write_csv(folder / "counts.csv", X, CELLS, GENES),
        "tsv": lambda: write_csv(folder / "counts.tsv", X, CELLS, GENES, sep="\t"),
        "mtx": lambda: write_mtx(folder / "filtered_feature_bc_matrix", X, CELLS, GENES, gz=True),
        "parquet": lambda: write_parquet(folder / "counts.parquet", X, CELLS, GENES),
        "loom": lambda: write_loom(folder / "counts.loom", X, CELLS, GENES),
        "h5": lambda: write_10x_h5(folder / "filtered_feature_bc_matrix.h5", X, CELLS, GENES),
    }
    return writers[fmt]()


FORMATS = ["csv", "tsv", "mtx", "parquet", "loom", "h5"]


@dataclass(frozen=True)
class Ran:
    """What a CLI command did: its exit code and its two streams."""

    returncode: int
    stdout: str
    stderr: str


def cli(settings: Settings, *args: str, own_process: bool = False) -> Ran:
    """The ``widecube`` command in a process of its own (``own_process=True``), or in this one;
    either way with no WIDECUBE_ variable but the storage root and the catalog."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("WIDECUBE_")}
    env.update(WIDECUBE_STORAGE=str(settings.storage), WIDECUBE_CATALOG_URL=settings.catalog_url)
    if own_process:
        done = process(env, *args, timeout=600)
        return Ran(done.returncode, done.stdout, done.stderr)
    result = invoke(env, *args)
    return Ran(result.exit_code, result.stdout, result.stderr)


class Ingested:
    """One storage root with every format ingested by the CLI, and an API client over it."""

    def __init__(self, settings: Settings, runs: dict[str, Ran]) -> None:
        self.settings, self.runs = settings, runs
        self.client: TestClient


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingested]:
    root = tmp_path_factory.mktemp("nogroup")
    settings = Settings(storage=root / "store")
    runs = {}
    for fmt in FORMATS:
        folder = root / fmt
        folder.mkdir()
        # one format through a real process, as a user runs it; the others in this process
        path = str(_write(fmt, folder))
        runs[fmt] = cli(settings, "ingest", path, "--dataset", fmt, own_process=fmt == "csv")
    done = Ingested(settings, runs)
    with TestClient(create_app(settings)) as client:
        done.client = client
        yield done


def lognorm(x: np.ndarray) -> np.ndarray:
    """The normalized layer, independently: counts per 10,000 per cell, log1p; empty cells 0."""
    total = x.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, np.log1p(x * 1e4 / total), 0.0)


def _columns(genes: list[str]) -> list[int]:
    return [GENES.index(g) for g in genes]


@pytest.mark.subprocess
@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_ingests_without_groupings_and_publishes(ingested: Ingested, fmt: str) -> None:
    run = ingested.runs[fmt]
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert f"published {fmt} version" in run.stdout
    detail = ingested.client.get(f"/api/v1/datasets/{fmt}").json()
    assert (detail["n_cells"], detail["n_genes"]) == (N_CELLS, N_GENES)
    assert detail["groupbys"] == [ALL_CELLS] and detail["obs"] == {}
    assert detail["views"]["summary"]["groupbys"] == [ALL_CELLS]
    assert detail["views"]["markers"]["skipped"] == {ALL_CELLS: 1}
    listing = {d["name"]: d for d in ingested.client.get("/api/v1/datasets").json()}
    assert listing[fmt]["groupbys"] == [ALL_CELLS]


@pytest.mark.subprocess
@pytest.mark.parametrize("fmt", FORMATS)
def test_summary_over_all_cells_equals_numpy(ingested: Ingested, fmt: str) -> None:
    x = X[:, _columns(ASKED)]
    body = {
        "genes": ASKED,
        "groupby": ALL_CELLS,
        "layer": "input",
        "stats": ["mean", "var", "frac_expressing", "sum", "nnz", "n_cells"],
    }
    r = ingested.client.post(f"/api/v1/datasets/{fmt}/summary", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["groups"] == [ALL_CELLS_GROUP] and got["genes"] == ASKED
    v = {k: np.asarray(got["values"][k], dtype=np.float64)[0] for k in body["stats"]}
    np.testing.assert_allclose(v["mean"], x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(v["var"], x.var(axis=0, ddof=1), rtol=1e-9)
    np.testing.assert_array_equal(v["frac_expressing"], (x != 0).mean(axis=0))
    np.testing.assert_array_equal(v["sum"], x.sum(axis=0))
    np.testing.assert_array_equal(v["nnz"], (x != 0).sum(axis=0))
    np.testing.assert_array_equal(v["n_cells"], np.full(len(ASKED), N_CELLS))
    # the default layer of counts is the normalized one
    params = {"genes": ASKED, "groupby": ALL_CELLS, "stats": ["mean"]}
    norm = ingested.client.get(f"/api/v1/datasets/{fmt}/summary", params=params).json()
    assert norm["layer"] == "normalized"
    np.testing.assert_allclose(
        norm["values"]["mean"][0], lognorm(X)[:, _columns(ASKED)].mean(axis=0), rtol=1e-6
    )


@pytest.mark.subprocess
@pytest.mark.parametrize("fmt", FORMATS)
def test_quantiles_over_all_cells_equal_numpy(ingested: Ingested, fmt: str) -> None:
    body = {"genes": ASKED, "groupby": ALL_CELLS, "layer": "input", "stats": list(QUANTILES)}
    got = ingested.client.post(f"/api/v1/datasets/{fmt}/summary", json=body).json()
    x = X[:, _columns(ASKED)]
    for name, q in QUANTILES.items():  # stored as float32
        np.testing.assert_allclose(
            got["values"][name][0], np.quantile(x, q, axis=0, method="linear"), rtol=1e-6, err_msg=name
        )


@pytest.mark.subprocess
@pytest.mark.parametrize("fmt", FORMATS)
def test_gene_major_matrix_and_cell_stats_equal_the_input(ingested: Ingested, fmt: str) -> None:
    genes = ["Gene3", "Gene0", "Gene11"]
    got = ingested.client.post(f"/api/v1/datasets/{fmt}/expression", json={"genes": genes, "layer": "input"})
    assert got.status_code == 200, got.text
    for g in genes:
        np.testing.assert_array_equal(got.json()["values"][g], X[:, GENES.index(g)], err_msg=g)
    cells = ingested.client.get(f"/api/v1/datasets/{fmt}/cells/stats").json()
    np.testing.assert_array_equal(cells["total_counts"], X.sum(axis=1))
    np.testing.assert_array_equal(cells["n_genes_by_counts"], (X != 0).sum(axis=1))
    stats = ingested.client.get(
        f"/api/v1/datasets/{fmt}/genes/stats", params={"genes": genes, "layer": "input"}
    ).json()["stats"]
    np.testing.assert_allclose(stats["mean"], X[:, _columns(genes)].mean(axis=0), rtol=1e-12)


@pytest.mark.subprocess
@pytest.mark.parametrize("fmt", FORMATS)
def test_markers_of_the_synthetic_grouping_are_a_clear_422(ingested: Ingested, fmt: str) -> None:
    r = ingested.client.get(
        f"/api/v1/datasets/{fmt}/markers", params={"groupby": ALL_CELLS, "group": ALL_CELLS_GROUP}
    )
    assert r.status_code == 422
    assert r.json()["detail"] == (
        f"dataset {fmt!r}: groupby 'all' has 1 group; markers compare a group "
        "with the rest of the cells, so they need at least 2 groups"
    )
    unknown = ingested.client.get(
        f"/api/v1/datasets/{fmt}/markers", params={"groupby": ALL_CELLS, "group": "x", "layer": "nope"}
    )
    assert unknown.status_code == 422 and "no layer 'nope'" in unknown.json()["detail"]


@pytest.mark.subprocess
def test_aggregate_by_the_synthetic_grouping_precomputed_and_computed(ingested: Ingested) -> None:
    body = {"genes": ASKED, "groupby": ALL_CELLS, "layer": "input", "stats": ["mean", "median", "n_cells"]}
    pre = ingested.client.post("/api/v1/datasets/csv/aggregate", json=body).json()
    assert pre["source"] == "precomputed" and pre["groups"] == [ALL_CELLS_GROUP] and pre["cells"] == N_CELLS
    x = X[:, _columns(ASKED)]
    np.testing.assert_allclose(pre["values"]["mean"][0], x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(pre["values"]["median"][0], np.median(x, axis=0), rtol=1e-6)
    # the same answer computed from the gene-major view (as /aggregate does for a filter)
    wc = Widecube(ingested.settings)
    try:
        computed = wc.aggregate(
            "csv", genes=ASKED, groupby=ALL_CELLS, stats=["mean", "median"], layer="input", precomputed=False
        )
        assert computed["source"] == "computed"
        np.testing.assert_allclose(computed["values"]["mean"][0], x.mean(axis=0), rtol=1e-12)
        np.testing.assert_array_equal(computed["values"]["median"][0], np.median(x, axis=0))
        assert wc.warm("csv")  # warming a version aggregates by its first grouping: the synthetic one
    finally:
        wc.close()


def test_aggregate_by_an_obs_column_that_was_not_precomputed(tmp_path: Path) -> None:
    """A Loom whose only cell attributes are numeric (``batch``, an integer with 3 values, and
    ``all``, a float): nothing is categorical, so the synthetic grouping is named ``all_``
    (``all`` is taken), and ``batch`` is aggregated on the fly, equal to numpy per batch."""
    batch = np.arange(N_CELLS) % 3 + 1
    obs = pd.DataFrame({"batch": batch, "all": np.linspace(0, 1, N_CELLS)}, index=CELLS)
    settings = Settings(storage=tmp_path / "store")
    path = write_loom(tmp_path / "b.loom", X, CELLS, GENES, obs)
    run = cli(settings, "ingest", str(path), "--dataset", "b")
    assert run.returncode == 0, run.stderr
    with TestClient(create_app(settings)) as client:
        detail = client.get("/api/v1/datasets/b").json()
        assert detail["groupbys"] == ["all_"] and detail["obs"] == {}
        body = {"genes": ASKED, "groupby": "batch", "layer": "input", "stats": ["mean", "q75", "n_cells"]}
        got = client.post("/api/v1/datasets/b/aggregate", json=body).json()
        assert got["source"] == "computed" and got["groups"] == ["1", "2", "3"]
        for i, b in enumerate((1, 2, 3)):
            x = X[batch == b][:, _columns(ASKED)]
            np.testing.assert_allclose(got["values"]["mean"][i], x.mean(axis=0), rtol=1e-12)
            np.testing.assert_allclose(got["values"]["q75"][i], np.quantile(x, 0.75, axis=0), rtol=1e-12)
            assert got["values"]["n_cells"][i] == [len(x)] * len(ASKED)
        synthetic = client.post(
            "/api/v1/datasets/b/aggregate", json={**body, "groupby": "all_", "stats": ["n_cells"]}
        ).json()
        assert synthetic["groups"] == [ALL_CELLS_GROUP] and synthetic["source"] == "precomputed"
        colours = client.get("/api/v1/datasets/b/embedding").json()["colors"]
        assert colours["batch"] == "numeric" and colours["total_counts"] == "numeric"


def test_embedding_of_an_h5ad_without_obs_columns(tmp_path: Path) -> None:
    """An h5ad with an embedding but no obs columns: the embedding routes serve it, coloured
    by a gene (the gene-major view) or by a per-cell statistic."""
    umap = np.random.default_rng(2).normal(size=(N_CELLS, 2)).astype(np.float32)
    adata = ad.AnnData(X, obs=pd.DataFrame(index=CELLS), var=pd.DataFrame(index=GENES), obsm={"X_umap": umap})
    settings = Settings(storage=tmp_path / "store")
    run = cli(settings, "ingest", str(write_h5ad(adata, tmp_path / "e.h5ad")), "--dataset", "e")
    assert run.returncode == 0, run.stderr
    with TestClient(create_app(settings)) as client:
        listing = client.get("/api/v1/datasets/e/embedding").json()
        assert listing["embeddings"] == {"X_umap": {"shape": [N_CELLS, 2]}}
        by_gene = client.get("/api/v1/datasets/e/embedding/X_umap", params={"color": "Gene3"}).json()
        np.testing.assert_array_equal(np.asarray(by_gene["coordinates"], dtype=np.float32), umap.T)
        assert by_gene["color"]["kind"] == "gene"
        np.testing.assert_allclose(by_gene["color"]["values"], lognorm(X)[:, 3], rtol=1e-6)
        by_total = client.get("/api/v1/datasets/e/embedding/X_umap", params={"color": "total_counts"}).json()
        np.testing.assert_array_equal(by_total["color"]["values"], X.sum(axis=1))


def test_a_grouping_with_one_category_crashes_no_view(tmp_path: Path) -> None:
    """obs ``sample`` has one value (and ``cell_type`` three): every view builds; summary and
    quantiles of ``sample`` are whole-dataset statistics; markers skip ``sample`` only."""
    types = np.array(["T", "B", "NK"])[np.arange(N_CELLS) % 3]
    obs = pd.DataFrame(
        {"sample": pd.Categorical(["s1"] * N_CELLS), "cell_type": pd.Categorical(types)}, index=CELLS
    )
    adata = ad.AnnData(X, obs=obs, var=pd.DataFrame(index=GENES))
    settings = Settings(storage=tmp_path / "store")
    run = cli(settings, "ingest", str(write_h5ad(adata, tmp_path / "one.h5ad")), "--dataset", "one")
    assert run.returncode == 0, run.stderr
    with TestClient(create_app(settings)) as client:
        detail = client.get("/api/v1/datasets/one").json()
        assert detail["groupbys"] == ["sample", "cell_type"]  # no synthetic grouping: there are real ones
        assert detail["views"]["markers"]["skipped"] == {"sample": 1}
        body = {"genes": ASKED, "groupby": "sample", "layer": "input", "stats": ["mean", "var", "median"]}
        got = client.post("/api/v1/datasets/one/summary", json=body).json()
        x = X[:, _columns(ASKED)]
        assert got["groups"] == ["s1"]
        np.testing.assert_allclose(got["values"]["mean"][0], x.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(got["values"]["var"][0], x.var(axis=0, ddof=1), rtol=1e-9)
        np.testing.assert_allclose(got["values"]["median"][0], np.median(x, axis=0), rtol=1e-6)
        r = client.get("/api/v1/datasets/one/markers", params={"groupby": "sample", "group": "s1"})
        assert r.status_code == 422 and "groupby 'sample' has 1 group;" in r.json()["detail"]
        ok = client.get("/api/v1/datasets/one/markers", params={"groupby": "cell_type", "group": "T"})
        assert ok.status_code == 200 and len(ok.json()["markers"]) > 0
        filtered = client.post(
            "/api/v1/datasets/one/aggregate", json={**body, "filter": {"cell_type": ["T"]}}
        ).json()
        t = X[types == "T"][:, _columns(ASKED)]
        np.testing.assert_allclose(filtered["values"]["mean"][0], t.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(filtered["values"]["median"][0], np.median(t, axis=0), rtol=1e-12)


def test_the_synthetic_grouping_never_hides_an_obs_column() -> None:
    assert all_cells_key(["cell_id", "score"]) == "all"
    assert all_cells_key(["all", "all_", "x"]) == "all__"


def test_stored_views_of_the_synthetic_grouping_read_back_with_anndata(tmp_path: Path) -> None:
    """The snapshot layout is the usual one: ``views/summary/all.zarr`` is an AnnData with one
    obs row ``all cells`` (n_cells = every cell); the manifest names the synthetic grouping."""
    settings = Settings(storage=tmp_path / "store")
    path = write_csv(tmp_path / "m.csv", X, CELLS, GENES)
    record = ingest(path, dataset="m", settings=settings)
    folder = settings.storage / "datasets" / "m" / record.version
    snap = Snapshot(folder)
    assert snap.manifest["parameters"]["groupbys"] == [ALL_CELLS]
    assert snap.manifest["parameters"]["all_cells_groupby"] == ALL_CELLS
    assert snap.manifest["views"]["markers"]["skipped"] == {ALL_CELLS: 1}
    summary = ad.read_zarr(snap.file("views/summary/all.zarr"))
    assert list(summary.obs_names) == [ALL_CELLS_GROUP] and summary.obs["n_cells"].tolist() == [N_CELLS]
    np.testing.assert_allclose(summary.layers["mean"][0], X.mean(axis=0), rtol=1e-6)
    quantiles = ad.read_zarr(snap.file("views/quantiles/all.zarr"))
    np.testing.assert_allclose(quantiles.layers["median"][0], np.median(X, axis=0), rtol=1e-6)
    assert not list(folder.glob("views/markers/*"))  # nothing stored for a skipped grouping
