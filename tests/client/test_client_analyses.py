"""The client's on-the-fly analyses (compare, violin) and markers of every group, over real
HTTP and in process, against the REST answers, scanpy's ``rank_genes_groups`` (t-test) and
numpy's histograms on the same AnnData."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import stats
from test_client import Served, served  # noqa: F401  (the module's server, reused)

from widecube.client import Reader

pytestmark = pytest.mark.slow

COMPARED = ["t", "pval", "pval_adj", "logfoldchange", "mean_a", "mean_b", "pct_a", "pct_b"]


def _faces(served: Served) -> list[Reader]:  # noqa: F811
    return [served.client, served.local]


def _nan(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def test_compare_group_against_rest_equals_scanpy_rank_genes_groups(served: Served) -> None:  # noqa: F811
    ref = served.lognorm.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # HBB: never expressed, t is NaN
        sc.tl.rank_genes_groups(
            ref, "cell_type", groups=["NK"], method="t-test", n_genes=ref.n_vars, pts=True
        )
    want = sc.get.rank_genes_groups_df(ref, group="NK").set_index("names")
    for wc in _faces(served):
        got = wc.compare("pbmc", "NK", groupby="cell_type", top=len(want), rank="up", layer="normalized")
        assert got.attrs["a"]["cells"] == 47 and got.attrs["b"] == {"rest": True, "cells": 240 - 47}
        assert got.attrs["genes_tested"] == served.adata.n_vars and got.attrs["rank"] == "up"
        tested = got.dropna(subset=["t"]).set_index("gene")
        assert len(tested) == 11  # every gene but HBB, which no cell expresses
        ranked = [g for g in want.index if g in tested.index]  # scanpy ranks HBB's NaN t as 0
        assert list(tested.index) == ranked  # the same order: t, largest first
        np.testing.assert_allclose(tested["t"], want.loc[tested.index, "scores"], rtol=1e-5)
        np.testing.assert_allclose(tested["pval"], want.loc[tested.index, "pvals"], rtol=1e-5, atol=1e-300)
        np.testing.assert_allclose(
            tested["logfoldchange"], want.loc[tested.index, "logfoldchanges"], rtol=1e-5
        )
        np.testing.assert_allclose(tested["pct_a"], want.loc[tested.index, "pct_nz_group"], rtol=1e-12)
        np.testing.assert_allclose(tested["pct_b"], want.loc[tested.index, "pct_nz_reference"], rtol=1e-12)


def test_compare_of_filters_equals_rest_and_scipy_welch(served: Served) -> None:  # noqa: F811
    a = {"filter": {"cell_type": ["B"], "donor": ["d1", "d2"]}}
    b = {"filter": {"cell_type": ["T"]}, "indices": list(range(0, 240, 2))}
    genes = ["MS4A1", "CD3E", "LYZ"]
    body = {"a": a, "b": b, "genes": genes, "layer": "input"}
    rest = served.http.post("/datasets/pbmc/compare", json=body).json()
    obs = served.adata.obs
    in_a = (obs["cell_type"] == "B").to_numpy() & obs["donor"].isin(["d1", "d2"]).to_numpy()
    in_b = (obs["cell_type"] == "T").to_numpy() & (np.arange(240) % 2 == 0)
    x = np.asarray(served.adata[:, genes].X, dtype=np.float64)
    t, p = stats.ttest_ind(x[in_a], x[in_b], equal_var=False)
    for wc in _faces(served):
        got = wc.compare("pbmc", a, b, genes=genes, layer="input")
        assert list(got["gene"]) == genes and list(got.columns) == ["gene", *COMPARED]
        assert got.attrs["a"]["cells"] == rest["a"]["cells"] == int(in_a.sum()) > 10
        assert got.attrs["b"]["cells"] == rest["b"]["cells"] == int(in_b.sum()) > 10
        assert got.attrs["version"] == rest["version"] and got.attrs["rank"] == "given"
        for column in COMPARED:
            np.testing.assert_array_equal(got[column], _nan([r[column] for r in rest["results"]]))
        np.testing.assert_allclose(got["t"], t, rtol=1e-9)
        np.testing.assert_allclose(got["pval"], p, rtol=1e-6)
        np.testing.assert_allclose(got["mean_a"], x[in_a].mean(0), rtol=1e-12)
        np.testing.assert_allclose(got["pct_b"], (x[in_b] > 0).mean(0), rtol=1e-12)
        np.testing.assert_allclose(
            got["logfoldchange"], np.log2((x[in_a].mean(0) + 1e-9) / (x[in_b].mean(0) + 1e-9)), rtol=1e-9
        )
    with pytest.raises(TypeError, match="groupby="):
        served.client.compare("pbmc", "B")


def test_markers_without_a_group_are_every_groups(served: Served) -> None:  # noqa: F811
    rest = served.http.get("/datasets/pbmc/markers", params={"groupby": "cell_type", "limit": 4}).json()
    assert rest["group"] is None and len(rest["markers"]) == 4 * 4  # solo: one cell, no Welch t
    for wc in _faces(served):
        every = wc.markers("pbmc", "cell_type", limit=4)
        assert list(every.columns) == [
            "group",
            "gene",
            "logfoldchange",
            "pct_in",
            "pct_out",
            "t",
            "pval",
            "pval_adj",
        ]
        assert list(every["group"].cat.categories) == ["T", "B", "NK", "Mono"]  # in the grouping order
        expected = pd.DataFrame(rest["markers"])
        pd.testing.assert_frame_equal(
            every.astype({"group": str}), expected.astype({c: float for c in expected.columns[2:]})
        )
        for group in ("T", "Mono"):
            one = wc.markers("pbmc", "cell_type", group, limit=4)
            mine = every[every["group"] == group].drop(columns="group").reset_index(drop=True)
            pd.testing.assert_frame_equal(mine, one)
        assert every.attrs["group"] is None and every.attrs["groupby"] == "cell_type"


def test_violin_equals_rest_and_numpy_histograms(served: Served) -> None:  # noqa: F811
    genes, keep, bins = ["CD3E", "HBB", "PPBP"], {"donor": ["d1", "d3"]}, 6
    body = {"genes": genes, "groupby": "cell_type", "bins": bins, "filter": keep, "layer": "input"}
    rest = served.http.post("/datasets/pbmc/violin", json=body).json()
    mask = served.adata.obs["donor"].isin(keep["donor"]).to_numpy()
    kept = served.adata[mask]
    groups = rest["groups"]
    assert groups == ["T", "B", "NK", "Mono", "solo"]  # the grouping's groups ('ghost' has no cell)
    for wc in _faces(served):
        v = wc.violin("pbmc", genes, "cell_type", bins=bins, filter=keep, layer="input")
        assert list(v.columns) == ["gene", "group", "lo", "hi", "count"] and v["count"].dtype == np.int64
        assert v.attrs["cells"] == rest["cells"] == int(mask.sum()) and v.attrs["filter"] == rest["filter"]
        for gene, answer in zip(genes, rest["violins"], strict=True):
            x = np.asarray(kept[:, gene].X, dtype=np.float64).ravel()
            nonzero = x[x != 0]
            rows = v[v["gene"] == gene]
            for g, group in enumerate(groups):
                mine = rows[rows["group"] == group]
                values = x[(kept.obs["cell_type"] == group).to_numpy()]
                assert mine["count"].iloc[0] == (values == 0).sum() == rest["n_cells"][g] - answer["nnz"][g]
                assert (mine["lo"].iloc[0], mine["hi"].iloc[0]) == (0.0, 0.0)
                if nonzero.size == 0:  # HBB: no kept cell expresses it, zeros only
                    assert len(mine) == 1 and answer["edges"] is None
                    continue
                edges = np.histogram_bin_edges(nonzero, bins=bins)
                np.testing.assert_array_equal(mine["lo"].iloc[1:], edges[:-1])
                np.testing.assert_array_equal(mine["hi"].iloc[1:], edges[1:])
                np.testing.assert_array_equal(
                    mine["count"].iloc[1:], np.histogram(values[values != 0], edges)[0]
                )
                np.testing.assert_array_equal(mine["count"].iloc[1:], answer["counts"][g])
                assert mine["count"].sum() == len(values)
        assert len(v) == sum(len(groups) * (1 if a["edges"] is None else bins + 1) for a in rest["violins"])
