"""``widecube export``: a grouping's summary as the pseudobulk AnnData of
``scanpy.get.aggregate``, checked against scanpy itself on the same counts (raw, and
normalized by scanpy's own ``normalize_total`` + ``log1p``), written as .h5ad, .zarr and
.parquet and read back."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from typer.testing import CliRunner

from _data import small_adata, write_h5ad
from widecube.access import Actor
from widecube.cli import app
from widecube.config import Settings
from widecube.pipeline import Jobs

FUNCS = ["sum", "mean", "var", "count_nonzero"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ad.AnnData]:
    root = tmp_path_factory.mktemp("export")
    adata = small_adata(n_cells=300, n_genes=40, seed=3)
    adata.var["gene_ids"] = [f"ENSG{j:011d}" for j in range(adata.n_vars)]
    path = write_h5ad(adata, root / "in.h5ad")
    settings = Settings(storage=root / "store")
    with Jobs.open(settings) as jobs:
        jobs.ingest(path, dataset="pbmc", groupbys=["cell_type", "cell_type,donor"], actor=Actor.cli())
    return root / "store", adata


def _export(storage: Path, out: Path, *args: str) -> None:
    result = CliRunner().invoke(
        app, ["export", "pbmc", "-o", str(out), *args], env={"WIDECUBE_STORAGE": str(storage)}
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output.replace("\n", "")


def _aggregate(adata: ad.AnnData, by: str | list[str]) -> ad.AnnData:
    """scanpy's pseudobulk; its var of the one-cell group 'solo' divides by zero (NaN, as ours)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return sc.get.aggregate(adata, by, func=FUNCS)


def _same_as_scanpy(got: ad.AnnData, want: ad.AnnData, *, rtol: float) -> None:
    assert list(got.obs_names) == list(want.obs_names)
    assert got.obs.columns.tolist() == want.obs.columns.tolist()
    for column in want.obs.columns:
        assert got.obs[column].astype(str).tolist() == want.obs[column].astype(str).tolist()
        assert list(got.obs[column].cat.categories) == list(want.obs[column].cat.categories)
    assert list(got.var_names) == list(want.var_names)
    pd.testing.assert_frame_equal(got.var, want.var, check_dtype=False)
    assert set(got.layers) == set(want.layers) == set(FUNCS)
    for name in FUNCS:
        assert got.layers[name].dtype == np.float64
        np.testing.assert_allclose(got.layers[name], np.asarray(want.layers[name]), rtol=rtol, atol=1e-9)


@pytest.mark.parametrize("groupby", ["cell_type", "cell_type,donor"])
def test_raw_export_is_scanpys_aggregate(
    store: tuple[Path, ad.AnnData], tmp_path: Path, groupby: str
) -> None:
    storage, adata = store
    out = tmp_path / "pb.h5ad"
    _export(storage, out, "--groupby", groupby, "--layer", "input", "--view", "summary")
    got = ad.read_h5ad(out)
    want = _aggregate(adata, groupby.split(","))
    assert got.n_obs == want.n_obs > 3  # 'ghost', the empty category, is left out as scanpy does
    _same_as_scanpy(got, want, rtol=1e-12)
    assert got.uns["dataset"] == "pbmc" and got.uns["layer"] == "input"


def test_normalized_export_is_scanpys_aggregate_of_scanpys_normalization(
    store: tuple[Path, ad.AnnData], tmp_path: Path
) -> None:
    storage, adata = store
    norm = adata.copy()
    with warnings.catch_warnings():  # "Some cells have zero counts": they stay 0, as in ours
        warnings.simplefilter("ignore", UserWarning)
        sc.pp.normalize_total(norm, target_sum=1e4)
    sc.pp.log1p(norm)
    want = _aggregate(norm, "cell_type")
    out = tmp_path / "pb.zarr"
    _export(storage, out, "--groupby", "cell_type")  # the default layer: normalized
    got = ad.read_zarr(out)
    assert got.uns["layer"] == "normalized"
    _same_as_scanpy(got, want, rtol=1e-5)


def test_parquet_export_is_one_row_per_group_and_gene(store: tuple[Path, ad.AnnData], tmp_path: Path) -> None:
    storage, adata = store
    out = tmp_path / "pb.parquet"
    _export(storage, out, "--groupby", "cell_type", "--layer", "input")
    table = pd.read_parquet(out)
    want = _aggregate(adata, "cell_type")
    assert len(table) == want.n_obs * want.n_vars
    assert list(table.columns[:3]) == ["cell_type", "group", "gene"]
    row = table[(table["group"] == "B") & (table["gene"] == "Gene5")].iloc[0]
    b, g = list(want.obs_names).index("B"), list(want.var_names).index("Gene5")
    for name in FUNCS:
        assert row[name] == pytest.approx(want.layers[name][b, g])


def test_export_refuses_what_it_cannot_do(store: tuple[Path, ad.AnnData], tmp_path: Path) -> None:
    storage, _ = store
    env = {"WIDECUBE_STORAGE": str(storage)}
    runner = CliRunner()
    bad_suffix = runner.invoke(
        app, ["export", "pbmc", "-o", str(tmp_path / "x.csv"), "--groupby", "cell_type"], env=env
    )
    assert bad_suffix.exit_code == 1 and "x.csv: cannot write .csv" in bad_suffix.output
    bad_view = runner.invoke(
        app,
        ["export", "pbmc", "-o", str(tmp_path / "x.h5ad"), "--groupby", "cell_type", "--view", "markers"],
        env=env,
    )
    assert bad_view.exit_code == 2 and "views that export: summary" in bad_view.output
    bad_group = runner.invoke(
        app, ["export", "pbmc", "-o", str(tmp_path / "x.h5ad"), "--groupby", "donor"], env=env
    )
    assert bad_group.exit_code == 1 and "donor" in bad_group.output
    assert not (tmp_path / "x.h5ad").exists()
