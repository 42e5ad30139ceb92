"""The on-the-fly analyses over HTTP: ``/compare`` against ``scipy.stats.ttest_ind(equal_var=False)``
and ``scipy.stats.false_discovery_control``, ``/violin`` against ``numpy.histogram`` on the same
cells, ``/dendrogram`` against ``scanpy.tl.dendrogram``, numeric range and lasso filters in
``/aggregate`` against numpy, ``/cells`` and ``/obs/{index}`` against the input's obs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scanpy as sc
from fastapi.testclient import TestClient
from scipy import stats
from scipy.cluster.hierarchy import dendrogram as scipy_dendrogram
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform

from _data import small_adata, write_h5ad
from widecube.api import create_app
from widecube.config import Settings
from widecube.pipeline import ingest

pytestmark = pytest.mark.slow

ARROW = "application/vnd.apache.arrow.stream"


class Data:
    def __init__(self, adata: ad.AnnData, version: str, client: TestClient) -> None:
        self.adata, self.version, self.client = adata, version, client
        self.x = np.asarray(adata.X, dtype=np.float64)
        self.lognorm = np.log1p(self.x / np.maximum(self.x.sum(axis=1, keepdims=True), 1) * 1e4)
        self.umap = np.asarray(adata.obsm["X_umap"], dtype=np.float32).astype(np.float64)

    def post(self, route: str, body: dict[str, Any], status: int = 200, **kw: Any) -> Any:
        r = self.client.post(f"/api/v1/datasets/pbmc/{route}", json={**body, "version": self.version}, **kw)
        assert r.status_code == status, r.text
        return r if kw.get("headers") else r.json()

    def of(self, column: str, *values: str) -> np.ndarray:
        return self.adata.obs[column].astype(str).isin(values).to_numpy()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Data]:
    root = tmp_path_factory.mktemp("onthefly")
    settings = Settings(storage=root / "store")
    adata = small_adata(n_cells=400, n_genes=40, seed=12)
    adata.obsm["X_umap"] = np.random.default_rng(5).normal(size=(adata.n_obs, 2))
    path = write_h5ad(adata, root / "in.h5ad")
    version = ingest(path, dataset="pbmc", groupbys=["cell_type"], settings=settings).version
    with TestClient(create_app(settings, upkeep=False)) as client:
        yield Data(adata, version, client)


def _welch(values: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, p = stats.ttest_ind(values[a], values[b], equal_var=False, axis=0)
    return np.asarray(t), np.asarray(p)


def _lfc(mean_a: np.ndarray, mean_b: np.ndarray, log1p: bool) -> np.ndarray:
    if log1p:
        mean_a, mean_b = np.expm1(mean_a), np.expm1(mean_b)
    return np.log2((mean_a + 1e-9) / (mean_b + 1e-9))


def _check(
    data: Data, got: dict[str, Any], a: np.ndarray, b: np.ndarray, *, layer: str = "normalized"
) -> None:
    """Every returned gene's fields against scipy / numpy on the same cells."""
    values = data.lognorm if layer == "normalized" else data.x
    assert got["a"]["cells"] == a.sum() and got["b"]["cells"] == b.sum()
    genes = [r["gene"] for r in got["results"]]
    assert genes, "no gene compared"
    cols = [data.adata.var_names.get_loc(g) for g in genes]
    t, p = _welch(values[:, cols], a, b)
    defined = ~np.isnan(t)
    assert defined.sum() >= len(genes) // 2
    got_t = np.array([np.nan if r["t"] is None else r["t"] for r in got["results"]])
    got_p = np.array([r["pval"] for r in got["results"]], dtype=float)
    np.testing.assert_allclose(got_t[defined], t[defined], rtol=1e-9)
    np.testing.assert_allclose(got_p[defined], p[defined], rtol=1e-7, atol=1e-300)
    mean_a, mean_b = values[a][:, cols].mean(axis=0), values[b][:, cols].mean(axis=0)
    for field, expected in {
        "mean_a": mean_a,
        "mean_b": mean_b,
        "pct_a": (values[a][:, cols] != 0).mean(axis=0),
        "pct_b": (values[b][:, cols] != 0).mean(axis=0),
        "logfoldchange": _lfc(mean_a, mean_b, layer == "normalized"),
    }.items():
        np.testing.assert_allclose([r[field] for r in got["results"]], expected, rtol=1e-9, atol=1e-12)


def test_a_group_against_the_rest_equals_scipy_welch_and_bh_over_every_gene(data: Data) -> None:
    got = data.post("compare", {"a": {"group": {"groupby": "cell_type", "group": "B"}}, "top": 1000})
    a = data.of("cell_type", "B")
    assert got["b"] == {"rest": True, "cells": int((~a).sum())} and got["genes_tested"] == data.adata.n_vars
    _check(data, got, a, ~a)
    # every gene returned (top ≥ genes): BH over all of them, as scipy's false_discovery_control
    t, p = _welch(data.lognorm, a, ~a)
    p = np.where(np.isnan(p), 1.0, p)  # scanpy's convention, the kernel's: no evidence → p 1
    adjusted = dict(zip(data.adata.var_names, stats.false_discovery_control(p), strict=True))
    assert len(got["results"]) == data.adata.n_vars
    for r in got["results"]:
        assert r["pval_adj"] == pytest.approx(adjusted[r["gene"]], rel=1e-7, abs=1e-300)
    ts = [r["t"] for r in got["results"] if r["t"] is not None]
    assert ts == sorted(ts, reverse=True)  # ranked up: largest t first, NaN last
    assert [r["t"] for r in got["results"][len(ts) :]] == [None] * (len(got["results"]) - len(ts))


def test_a_group_against_a_group_on_the_input_layer_and_given_genes(data: Data) -> None:
    genes = ["Gene7", "Gene3", "Gene20"]
    got = data.post(
        "compare",
        {
            "a": {"group": {"groupby": "cell_type", "group": "T"}},
            "b": {"filter": {"cell_type": ["NK", "Mono"]}},
            "genes": genes,
            "layer": "input",
        },
    )
    assert (
        [r["gene"] for r in got["results"]] == genes and got["rank"] == "given" and got["genes_tested"] == 3
    )
    _check(data, got, data.of("cell_type", "T"), data.of("cell_type", "NK", "Mono"), layer="input")
    t, p = _welch(data.x[:, [7, 3, 20]], data.of("cell_type", "T"), data.of("cell_type", "NK", "Mono"))
    np.testing.assert_allclose([r["pval_adj"] for r in got["results"]], stats.false_discovery_control(p))


def test_indices_ids_lasso_and_overlapping_sets(data: Data) -> None:
    rng = np.random.default_rng(1)
    picked = np.sort(rng.choice(data.adata.n_obs, 90, replace=False))
    a = np.zeros(data.adata.n_obs, dtype=bool)
    a[picked] = True
    within = data.adata.obs["score"].to_numpy() > 0.2
    got = data.post(
        "compare",
        {"a": {"indices": picked.tolist()}, "within": {"filter": {"score": {"min": 0.2000001}}}, "top": 12},
    )
    _check(data, got, a & within, ~a & within)
    assert got["a"]["indices"] == 90 and len(got["results"]) == 12
    ids = data.adata.obs_names[picked].tolist()
    same = data.post(
        "compare", {"a": {"cells": ids}, "within": {"filter": {"score": {"min": 0.2000001}}}, "top": 12}
    )
    assert same["results"] == got["results"]
    # a lasso: a square around the embedding's centre, against numpy's box test
    square = [[-0.5, -0.5], [0.6, -0.5], [0.6, 0.7], [-0.5, 0.7]]
    x, y = data.umap[:, 0], data.umap[:, 1]
    inside = (x > -0.5) & (x < 0.6) & (y > -0.5) & (y < 0.7)
    got = data.post("compare", {"a": {"lasso": {"embedding": "X_umap", "polygon": square}}, "top": 40})
    _check(data, got, inside, ~inside)
    # overlapping sets: a donor against a cell type, cells in both count in both
    got = data.post(
        "compare",
        {
            "a": {"filter": {"donor": ["d1"]}},
            "b": {"group": {"groupby": "cell_type", "group": "T"}},
            "rank": "abs",
        },
    )
    _check(data, got, data.of("donor", "d1"), data.of("cell_type", "T"))
    ts = [abs(r["t"]) for r in got["results"] if r["t"] is not None]
    assert ts == sorted(ts, reverse=True)


def test_compare_refuses_what_it_cannot_answer_by_name(data: Data) -> None:
    solo = data.post("compare", {"a": {"group": {"groupby": "cell_type", "group": "solo"}}}, status=422)
    assert "set a keeps 1 cell" in solo["detail"]
    unknown = data.post("compare", {"a": {"cells": ["cell1", "nocell"]}}, status=422)
    assert "no cell 'nocell'" in unknown["detail"]
    outside = data.post("compare", {"a": {"indices": [1, 400]}}, status=422)
    assert "index 400 is outside" in outside["detail"]
    huge = 4388615912432223724929497906020352  # past int64: numpy overflowed on it (a 500)
    for route, body in (("compare", {"a": {"indices": [1, huge]}}), ("cells", {"indices": [3, huge]})):
        past = data.post(route, body, status=422)
        assert f"index {huge} is outside" in past["detail"], route
    categorical = data.post("compare", {"a": {"filter": {"donor": {"min": 1}}}}, status=422)
    assert "'donor'" in categorical["detail"] and "categorical" in categorical["detail"]
    group = data.post("compare", {"a": {"group": {"groupby": "cell_type", "group": "nope"}}}, status=422)
    assert "no group 'nope'" in group["detail"]
    lasso = data.post(
        "compare", {"a": {"lasso": {"embedding": "X_pca", "polygon": [[0, 0], [1, 0], [0, 1]]}}}, 422
    )
    assert "no embedding 'X_pca'" in lasso["detail"]
    assert data.post("compare", {"a": {}, "rank": "sideways"}, status=422)


def test_numeric_range_and_lasso_filters_in_aggregate(data: Data) -> None:
    square = [[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]
    got = data.post(
        "aggregate",
        {
            "genes": ["Gene5"],
            "groupby": "cell_type",
            "filter": {"score": {"min": 0.25, "max": 0.75}, "donor": ["d2", "d3"]},
            "lasso": {"embedding": "X_umap", "polygon": square},
            "stats": ["mean", "n_cells"],
        },
    )
    score = data.adata.obs["score"].to_numpy()
    x, y = data.umap[:, 0], data.umap[:, 1]
    keep = (score >= 0.25) & (score <= 0.75) & data.of("donor", "d2", "d3") & (abs(x) < 1) & (abs(y) < 1)
    assert got["cells"] == keep.sum() > 0 and got["source"] == "computed"
    assert got["filter"] == {"donor": ["d2", "d3"], "score": {"min": 0.25, "max": 0.75}}
    types = data.adata.obs["cell_type"].astype(str).to_numpy()
    for i, group in enumerate(got["groups"]):
        cells = keep & (types == group)
        assert got["values"]["n_cells"][i][0] == cells.sum()
        if cells.any():
            assert got["values"]["mean"][i][0] == pytest.approx(data.lognorm[cells, 5].mean(), rel=1e-9)
    detail = data.client.get("/api/v1/datasets/pbmc").json()
    assert detail["numeric"]["score"] == {"min": score.min(), "max": score.max()}
    assert "n_genes_by_counts" in detail["numeric"] and "cell_type" not in detail["numeric"]


def test_violins_are_numpy_histograms_of_the_same_cells(data: Data) -> None:
    genes = ["Gene4", "Gene0", "Gene39"]  # Gene0: one cell expresses it; Gene39: none
    keep = data.of("donor", "d1", "d3")
    types = data.adata.obs["cell_type"].astype(str).to_numpy()
    for layer, values in (
        ("input", data.x),
        ("normalized", data.lognorm.astype(np.float32).astype(np.float64)),
    ):
        got = data.post(
            "violin",
            {
                "genes": genes,
                "groupby": "cell_type",
                "filter": {"donor": ["d1", "d3"]},
                "bins": 16,
                "layer": layer,
            },
        )
        assert got["cells"] == keep.sum()
        assert got["n_cells"] == [int((keep & (types == g)).sum()) for g in got["groups"]]
        for gene, violin in zip(genes, got["violins"], strict=True):
            column = values[:, data.adata.var_names.get_loc(gene)]
            expressed = keep & (column != 0)
            if not expressed.any():
                assert violin["edges"] is None and violin["nnz"] == [0] * len(got["groups"])
                continue
            edges = np.histogram_bin_edges(column[expressed], bins=16)
            np.testing.assert_allclose(violin["edges"], edges, rtol=1e-6 if layer != "input" else 0)
            for i, group in enumerate(got["groups"]):
                cells = column[expressed & (types == group)]
                assert violin["nnz"][i] == cells.size
                assert (
                    violin["counts"][i] == np.histogram(cells, bins=np.asarray(violin["edges"]))[0].tolist()
                )
                assert sum(violin["counts"][i]) == cells.size  # every non-zero value in a bin


def test_the_dendrogram_is_scanpys(data: Data) -> None:
    """scanpy's ``tl.dendrogram(var_names=…)`` correlates the groups' means over every gene
    of ``var_names``' AnnData (this scanpy ignores the list itself): compared over all genes."""
    genes = data.adata.var_names.tolist()
    got = data.post("dendrogram", {"genes": genes, "groupby": "cell_type", "layer": "input"})
    adata = data.adata.copy()
    adata.obs["cell_type"] = adata.obs["cell_type"].cat.remove_unused_categories()
    ref = sc.tl.dendrogram(adata, "cell_type", var_names=genes, inplace=False)
    assert got["groups"] == list(adata.obs["cell_type"].cat.categories)  # empty 'ghost' left out
    assert got["ordered"] == ref["categories_ordered"] and got["order"] == ref["categories_idx_ordered"]
    np.testing.assert_allclose(got["linkage"], ref["linkage"], rtol=1e-9)
    # a few genes: pandas' correlation of the groups' means, scipy's complete linkage
    few = ["Gene1", "Gene4", "Gene7", "Gene10", "Gene13"]
    got = data.post("dendrogram", {"genes": few, "groupby": "cell_type", "filter": {"donor": ["d1", "d2"]}})
    keep = data.of("donor", "d1", "d2")
    frame = pd.DataFrame(data.lognorm[keep][:, [1, 4, 7, 10, 13]], index=data.adata.obs["cell_type"][keep])
    means = frame.groupby(level=0, observed=True).mean().loc[got["groups"]]
    z = linkage(squareform(1 - means.T.corr().clip(-1, 1).to_numpy()), method="complete")
    np.testing.assert_allclose(got["linkage"], z, rtol=1e-9)
    assert got["order"] == scipy_dendrogram(z, no_plot=True)["leaves"]
    assert data.post("dendrogram", {"genes": ["Gene1"], "groupby": "cell_type"}, status=422)


def test_cells_of_a_selection_and_one_cells_obs(data: Data) -> None:
    body = {"filter": {"donor": ["d2"], "score": {"max": 0.5}}}
    got = data.post("cells", body)
    keep = data.of("donor", "d2") & (data.adata.obs["score"].to_numpy() <= 0.5)
    assert got["indices"] == np.flatnonzero(keep).tolist() and got["cells"] == keep.sum() > 0
    arrow = data.post("cells", body, headers={"Accept": ARROW})
    table = pa.ipc.open_stream(arrow.content).read_all()
    assert (
        table.column("index").to_pylist() == got["indices"]
        and table.schema.field("index").type == pa.uint32()
    )
    everyone = data.post("cells", {})
    assert everyone["cells"] == everyone["n_cells"] == data.adata.n_obs
    r = data.client.get(f"/api/v1/datasets/pbmc/obs/7?version={data.version}")
    assert r.status_code == 200
    cell = r.json()
    row = data.adata.obs.iloc[7]
    assert (cell["index"], cell["id"]) == (7, "cell7")
    assert cell["obs"]["cell_type"] == row["cell_type"] and cell["obs"]["donor"] == row["donor"]
    assert cell["obs"]["score"] == pytest.approx(row["score"])
    assert isinstance(cell["obs"]["n_genes_by_counts"], int)
    assert cell["obs"]["n_genes_by_counts"] == int((data.x[7] != 0).sum())
    far = data.client.get("/api/v1/datasets/pbmc/obs/400")
    assert far.status_code == 422 and "index 400 is outside" in far.json()["detail"]
    assert pd.notna(row["score"])
