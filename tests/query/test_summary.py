"""The summary view against scanpy.get.aggregate and a numpy reference."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

from _data import MakeH5ad, small_adata
from widecube.config import Settings
from widecube.pipeline import COMPUTE_PHASES, ingest
from widecube.query import Widecube

pytestmark = pytest.mark.slow

SCANPY = {"sum": "sum", "mean": "mean", "var": "var", "nnz": "count_nonzero"}


def numpy_reference(x: np.ndarray, labels: pd.Series) -> dict[str, dict[str, np.ndarray]]:
    """Per-group statistics of a dense matrix, the obvious way."""
    out = {}
    for group in labels.unique():
        rows = x[(labels == group).to_numpy()]
        n = rows.shape[0]
        out[str(group)] = {
            "n_cells": np.full(x.shape[1], n),
            "sum": rows.sum(0),
            "sumsq": (rows**2).sum(0),
            "nnz": (rows != 0).sum(0),
            "mean": rows.mean(0),
            "var": rows.var(0, ddof=1) if n > 1 else np.full(x.shape[1], np.nan),
            "frac_expressing": (rows != 0).mean(0),
            "mean_expressing": np.array([c[c != 0].mean() if (c != 0).any() else np.nan for c in rows.T]),
        }
    return out


def snapshot_path(settings: Settings, dataset: str) -> Path:
    wc = Widecube(settings)
    record, snap = wc.resolve(dataset)
    wc.close()
    return snap.root


@pytest.mark.parametrize("layout", ["csr", "csc", "dense"])
@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_summary_equals_scanpy_and_numpy(
    make_h5ad: MakeH5ad, settings: Settings, layout: str, dtype: str
) -> None:
    adata = small_adata()
    path = make_h5ad(adata, layout=layout, dtype=dtype)
    # tiny blocks so that the stream really has many blocks (and gene-major CSC many slabs)
    settings = settings.model_copy(update={"block_nnz": 97})
    ingest(path, dataset="t", groupbys=["cell_type", "cell_type,donor"], settings=settings)
    root = snapshot_path(settings, "t")
    x = np.asarray(adata.X, dtype=np.float64)
    for key, by in [("cell_type", "cell_type"), ("cell_type,donor", ["cell_type", "donor"])]:
        view = ad.read_zarr(root / "views" / "summary" / f"{key}.zarr")
        with np.errstate(divide="ignore", invalid="ignore"):  # scanpy: var of a 1-cell group
            ref = sc.get.aggregate(ad.read_h5ad(path), by=by, func=list(SCANPY.values()))
        assert list(view.obs_names) == list(ref.obs_names)
        assert "ghost" not in view.obs_names  # empty categories have no group, as in scanpy
        for ours, theirs in SCANPY.items():
            got = np.asarray(view.layers[ours], dtype=np.float64)
            want = np.asarray(ref.layers[theirs], dtype=np.float64)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12, equal_nan=True)
        labels = adata.obs[list(by) if isinstance(by, list) else [by]].astype(str).agg("_".join, axis=1)
        expected = numpy_reference(x, labels)
        assert sorted(view.obs_names) == sorted(expected)  # every non-empty group, no other
        for i, group in enumerate(view.obs_names):
            assert view.obs["n_cells"].iloc[i] == expected[group]["n_cells"][0]
            for stat in ("sum", "sumsq", "nnz", "mean", "var", "frac_expressing", "mean_expressing"):
                np.testing.assert_allclose(
                    np.asarray(view.layers[stat][i], dtype=np.float64),
                    expected[group][stat],
                    rtol=1e-6,
                    atol=1e-12,
                    equal_nan=True,
                    err_msg=f"{key} {group} {stat}",
                )


def test_service_values_equal_numpy(make_h5ad: MakeH5ad, settings: Settings) -> None:
    adata = small_adata(seed=3)
    ingest(make_h5ad(adata), dataset="t", groupbys=["cell_type"], settings=settings)
    wc = Widecube(settings)
    genes = ["Gene0", "Gene7", "Gene59"]  # one expressing cell; ordinary; never expressed
    stats = ["mean", "var", "frac_expressing", "mean_expressing", "sum", "nnz", "n_cells"]
    result = wc.summary("t", genes=genes, groupby="cell_type", stats=stats, layer="input")
    wc.close()
    x = np.asarray(adata.X, dtype=np.float64)[:, [0, 7, 59]]
    expected = numpy_reference(x, adata.obs["cell_type"].astype(str))
    assert sorted(result["groups"]) == sorted(expected) == ["B", "Mono", "NK", "T", "solo"]
    for i, group in enumerate(result["groups"]):
        for stat in stats:
            np.testing.assert_allclose(
                result["values"][stat][i],
                expected[group][stat],
                rtol=1e-12,
                equal_nan=True,
                err_msg=f"{group} {stat}",
            )
    solo = result["groups"].index("solo")
    assert np.isnan(result["values"]["var"][solo]).all()  # ddof=1 over one cell
    assert (result["values"]["sum"][:, 2] == 0).all()


def test_layer_and_raw(make_h5ad: MakeH5ad, settings: Settings) -> None:
    adata = small_adata(seed=5)
    x = np.asarray(adata.X, dtype=np.float64)
    for where in ("counts", "raw"):
        path = make_h5ad(adata, name=f"{where}.h5ad", where=where)
        ingest(path, dataset=where, groupbys=["donor"], layer=where, settings=settings)
        wc = Widecube(settings)
        got = wc.summary(where, genes=["Gene3"], groupby="donor", stats=["sum"], layer="input")
        wc.close()
        assert sorted(got["groups"]) == ["d1", "d2", "d3"]
        for i, d in enumerate(got["groups"]):
            assert got["values"]["sum"][i, 0] == x[(adata.obs["donor"] == d).to_numpy(), 3].sum()


def test_default_groupbys_are_categorical_columns(make_h5ad: MakeH5ad, settings: Settings) -> None:
    record = ingest(make_h5ad(), dataset="t", settings=settings)
    assert record.info["groupbys"] == ["cell_type", "donor"]  # 'score' is a float column


def test_gene_windows_under_a_small_memory_budget(make_h5ad: MakeH5ad, settings: Settings) -> None:
    """A budget too small for all accumulators at once splits genes into several passes.

    Pass 2 reports its progress once per gene slab (the fraction of genes done so far), in
    its share of the ``compute`` step (``COMPUTE_PHASES["pass 2"]``), so those reports count
    the slabs: one under the default budget, many here."""
    adata = small_adata(seed=9)
    path = make_h5ad(adata)

    def compute_reports(budget: Settings, dataset: str) -> list[float]:
        seen: list[tuple[str, float]] = []
        ingest(
            path,
            dataset=dataset,
            groupbys=["cell_type", "donor"],
            settings=budget,
            progress=lambda step, done: seen.append((step, done)),
        )
        lo, hi = COMPUTE_PHASES["pass 2"]
        fractions = [(done - lo) / (hi - lo) for step, done in seen if step == "compute" and lo < done <= hi]
        assert [done for step, done in seen if step == "compute"][-1] == 1.0  # the step ends
        return fractions

    assert compute_reports(settings, "roomy") == [pytest.approx(1.0)]  # one slab holds every gene
    tight = settings.model_copy(update={"memory": 5 * 12 * 24 * 2, "block_nnz": 500})
    slabs = compute_reports(tight, "t")
    # 180 bytes per slab is 15 values: the ~2,000 non-zeros of 60 genes need dozens of slabs
    assert len(slabs) > 10, slabs
    assert slabs == sorted(slabs) and slabs[-1] == pytest.approx(1.0)  # every gene, once
    view = ad.read_zarr(snapshot_path(tight, "t") / "views/summary/donor.zarr")
    x = np.asarray(adata.X, dtype=np.float64)
    assert sorted(view.obs_names) == ["d1", "d2", "d3"]
    for i, d in enumerate(view.obs_names):
        np.testing.assert_allclose(view.layers["sum"][i], x[(adata.obs["donor"] == d).to_numpy()].sum(0))
