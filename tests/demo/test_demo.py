"""Tests of `widecube.demo.make_demo`: the file is a valid .h5ad, and the data look like UMI
counts (sparsity, overdispersion, markers, skewed types, embedding), checked with numpy/scipy."""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from widecube.demo import make_demo

N_CELLS, N_GENES = 3_000, 2_000


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo(tmp_path_factory.mktemp("demo") / "pbmc.h5ad", n_cells=N_CELLS, n_genes=N_GENES)


@pytest.fixture(scope="module")
def adata(demo_path: Path) -> anndata.AnnData:
    return anndata.read_h5ad(demo_path)


def _type_means(x: sp.csr_matrix, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean expression per type (types × genes) and cells per type."""
    n_types = codes.max() + 1
    onehot = sp.csr_matrix((np.ones(codes.size), (codes, np.arange(codes.size))))
    sizes = np.bincount(codes, minlength=n_types)
    return np.asarray((onehot @ x).todense()) / sizes[:, None], sizes


def test_file_is_an_h5ad_that_anndata_reads(demo_path: Path, adata: anndata.AnnData) -> None:
    assert adata.shape == (N_CELLS, N_GENES)
    assert isinstance(adata.X, sp.csr_matrix)
    assert adata.X.dtype == np.float32
    with h5py.File(demo_path) as f:
        assert f.attrs["encoding-type"] == "anndata"
        assert f["X"].attrs["encoding-type"] == "csr_matrix"
        assert tuple(f["X"].attrs["shape"]) == (N_CELLS, N_GENES)
        assert f["X/data"].dtype == np.float32 and f["X/indices"].dtype == np.int32
        assert f["X/indptr"].dtype == np.int64 and f["X/data"].maxshape == (None,)
        assert {"obs", "var", "obsm", "uns", "layers", "varm", "obsp", "varp"} <= set(f)
    assert not demo_path.with_name(demo_path.name + ".partial").exists()
    backed = anndata.read_h5ad(demo_path, backed="r")
    try:
        rows = backed.X[100:110]
        np.testing.assert_array_equal(sp.csr_matrix(rows).toarray(), adata.X[100:110].toarray())
    finally:
        backed.file.close()


def test_counts_are_positive_integers_with_sorted_unique_indices(adata: anndata.AnnData) -> None:
    x = adata.X
    assert x.data.min() >= 1
    np.testing.assert_array_equal(x.data, np.round(x.data))
    row_of = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    same_row = row_of[1:] == row_of[:-1]
    assert np.all(np.diff(x.indices.astype(np.int64))[same_row] > 0)
    assert x.indices.min() >= 0 and x.indices.max() < N_GENES


def test_default_sparsity_is_single_cell_like(adata: anndata.AnnData) -> None:
    assert 0.03 <= adata.X.nnz / (N_CELLS * N_GENES) <= 0.08


@pytest.mark.parametrize(
    ("n_genes", "n_types", "nnz"), [(3_000, 24, 600), (1_500, 100, 250), (4_000, 30, 80)]
)
def test_nnz_per_cell_is_honoured(tmp_path: Path, n_genes: int, n_types: int, nnz: int) -> None:
    path = make_demo(tmp_path / "d.h5ad", n_cells=1_500, n_genes=n_genes, n_types=n_types, nnz_per_cell=nnz)
    with h5py.File(path) as f:
        mean_nnz = f["X/indptr"][-1] / 1_500
    assert abs(mean_nnz / nnz - 1) < 0.15


def test_cell_types_are_many_named_and_skewed(adata: anndata.AnnData) -> None:
    counts = adata.obs["cell_type"].value_counts()
    assert len(counts) >= 20
    assert counts.max() / counts.min() > 5
    assert counts.index.is_unique and not any(re.fullmatch(r"C\d+", str(n)) for n in counts.index)
    for column in ("cell_type", "donor", "sex", "condition"):
        assert isinstance(adata.obs[column].dtype, pd.CategoricalDtype), column
    assert list(adata.obs["donor"].cat.categories) == [f"D{i}" for i in range(1, 7)]


def test_many_types_get_cluster_names_under_type_key(tmp_path: Path) -> None:
    path = make_demo(tmp_path / "c.h5ad", n_cells=2_000, n_genes=1_000, n_types=100, type_key="cluster")
    obs = anndata.read_h5ad(path).obs
    assert "cluster" in obs and "cell_type" not in obs
    assert obs["cluster"].nunique() == 100
    assert all(re.fullmatch(r"C\d{3}", n) for n in obs["cluster"].cat.categories)


def test_sex_and_condition_are_donor_properties(adata: anndata.AnnData) -> None:
    per_donor = adata.obs.groupby("donor", observed=True)[["sex", "condition"]].nunique()
    assert (per_donor == 1).all().all()
    assert set(adata.obs["condition"]) == {"control", "treated"}
    assert set(adata.obs["sex"]) == {"female", "male"}


def test_barcodes_and_gene_symbols_are_unique_and_plausible(adata: anndata.AnnData) -> None:
    assert adata.obs_names.is_unique and adata.var_names.is_unique
    assert all(re.fullmatch(r"[ACGT]{16}-1", b) for b in adata.obs_names)
    assert {"MALAT1", "ACTB", "GAPDH", "CD3E", "LYZ", "MS4A1", "MT-CO1", "RPL13"} <= set(adata.var_names)
    assert adata.var["gene_ids"].is_unique
    assert all(re.fullmatch(r"ENSG\d{11}", g) for g in adata.var["gene_ids"])
    assert set(adata.var["feature_types"]) == {"Gene Expression"}


def test_umap_has_one_blob_per_type(adata: anndata.AnnData) -> None:
    xy = adata.obsm["X_umap"]
    assert xy.shape == (N_CELLS, 2) and xy.dtype == np.float32
    codes = adata.obs["cell_type"].cat.codes.to_numpy()
    centroids = np.stack([xy[codes == t].mean(0) for t in range(codes.max() + 1)])
    within = np.linalg.norm(xy - centroids[codes], axis=1).mean()
    between = np.linalg.norm(centroids[:, None] - centroids[None], axis=2)
    assert within < 0.25 * between[np.triu_indices(len(centroids), 1)].mean()


def test_counts_are_overdispersed_within_a_type(adata: anndata.AnnData) -> None:
    largest = adata.obs["cell_type"].value_counts().index[0]
    x = adata.X[(adata.obs["cell_type"] == largest).to_numpy()].toarray().astype(np.float64)
    mean, var = x.mean(0), x.var(0, ddof=1)
    expressed = mean > 0.3
    assert expressed.sum() >= 20
    assert (var[expressed] > mean[expressed]).mean() > 0.8


def test_every_type_has_a_strong_marker(adata: anndata.AnnData) -> None:
    codes = adata.obs["cell_type"].cat.codes.to_numpy()
    means, sizes = _type_means(adata.X, codes)
    for t in range(len(sizes)):
        rest = np.delete(means * sizes[:, None], t, 0).sum(0) / (sizes.sum() - sizes[t])
        fold = (means[t] + 0.01) / (rest + 0.01)
        best = int(np.argmax(fold))
        assert fold[best] > 8, (adata.obs["cell_type"].cat.categories[t], fold[best])
        assert means[t, best] > 0.1


def test_library_size_varies(adata: anndata.AnnData) -> None:
    total = np.asarray(adata.X.sum(1)).ravel()
    assert total.std() / total.mean() > 0.2


def test_same_seed_same_bytes_whatever_the_block_size(tmp_path: Path) -> None:
    calls: list[int] = []
    a = make_demo(tmp_path / "a.h5ad", n_cells=1_000, n_genes=800, seed=7)
    b = make_demo(
        tmp_path / "b.h5ad", n_cells=1_000, n_genes=800, seed=7, block_cells=300, progress=calls.append
    )
    c = make_demo(tmp_path / "c.h5ad", n_cells=1_000, n_genes=800, seed=8)
    assert calls == [300, 300, 300, 100]
    with h5py.File(a) as fa, h5py.File(b) as fb, h5py.File(c) as fc:
        for name in ("X/data", "X/indices", "X/indptr", "obsm/X_umap"):
            assert fa[name][:].tobytes() == fb[name][:].tobytes(), name
        assert list(fa["obs/_index"][:]) == list(fb["obs/_index"][:])
        assert fa["X/data"][:].tobytes() != fc["X/data"][:].tobytes()


def test_rows_are_generated_sparse(tmp_path: Path) -> None:
    """One dense block of 4,000 × 20,000 float32 would take 320 MB; the whole run stays far below
    (numpy allocations, as traced by tracemalloc)."""
    make_demo(tmp_path / "warm.h5ad", n_cells=50, n_genes=20_000, nnz_per_cell=200)  # import, compile
    tracemalloc.start()
    try:
        make_demo(tmp_path / "s.h5ad", n_cells=4_000, n_genes=20_000, nnz_per_cell=200, block_cells=4_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40e6


def test_compression_is_passed_to_h5py(tmp_path: Path) -> None:
    path = make_demo(tmp_path / "z.h5ad", n_cells=500, n_genes=500, compression="gzip")
    with h5py.File(path) as f:
        assert f["X/data"].compression == "gzip"
    assert anndata.read_h5ad(path).X.nnz > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_cells": 0}, "n_cells"),
        ({"n_types": 0}, "n_types"),
        ({"n_donors": 0}, "n_donors"),
        ({"n_genes": 100, "nnz_per_cell": 101}, "nnz_per_cell"),
        ({"nnz_per_cell": 0}, "nnz_per_cell"),
        ({"n_cells": 10, "n_types": 11}, "n_types"),
        ({"type_key": "donor"}, "type_key"),
        ({"block_cells": 0}, "block_cells"),
    ],
)
def test_bad_parameters_are_refused(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_demo(tmp_path / "bad.h5ad", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "bad.h5ad").exists()


def test_an_interrupted_run_leaves_no_file(tmp_path: Path) -> None:
    def stop(n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_demo(tmp_path / "i.h5ad", n_cells=600, n_genes=300, block_cells=200, progress=stop)
    assert list(tmp_path.iterdir()) == []
