"""--obs / --var metadata joins: ids matched, gaps refused or filled, extras reported."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _data import small_adata
from _io_writers import gene_ids, write_10x_h5, write_csv, write_obs
from widecube.config import Settings
from widecube.errors import MetadataMismatch, UnreadableInput
from widecube.io import open_input
from widecube.pipeline import ingest
from widecube.query import Widecube

ADATA = small_adata(seed=3)
X = np.asarray(ADATA.X, dtype=np.float64)
CELLS, GENES = list(ADATA.obs_names), list(ADATA.var_names)
OBS = ADATA.obs[["cell_type", "donor", "score"]].copy()


@pytest.fixture
def matrix(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "counts.csv", X, CELLS, GENES)


@pytest.mark.parametrize("kind", ["obs.csv", "obs.tsv", "obs.parquet"])
def test_obs_join_in_any_order_with_extra_rows(
    kind: str, matrix: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    extra = pd.DataFrame(
        {"cell_type": ["T", "B"], "donor": ["d9", "d9"], "score": [0.1, 0.2]}, index=["ghost1", "ghost2"]
    )
    meta = pd.concat([OBS.astype({"cell_type": str, "donor": str}), extra]).sample(frac=1, random_state=0)
    meta["barcode_like"] = [f"bc{i}" for i in range(len(meta))]  # unique strings: not a category
    path = write_obs(tmp_path / kind, meta, sep="\t" if kind.endswith("tsv") else ",")
    with caplog.at_level(logging.WARNING, logger="widecube.io"), open_input(matrix, obs=path) as src:
        obs = src.obs()
    assert list(obs.index) == CELLS
    assert list(obs["cell_type"].astype(str)) == list(OBS["cell_type"].astype(str))
    assert isinstance(obs["cell_type"].dtype, pd.CategoricalDtype)
    assert "ghost" not in obs["cell_type"].cat.categories
    assert isinstance(obs["donor"].dtype, pd.CategoricalDtype)
    assert not isinstance(obs["barcode_like"].dtype, pd.CategoricalDtype)
    np.testing.assert_allclose(obs["score"].to_numpy(), OBS["score"].to_numpy())
    assert f"{path}: 2 metadata rows name cells that are not in the matrix (first: 'ghost" in caplog.text


def test_missing_cells_are_an_error_listing_the_first_ids(matrix: Path, tmp_path: Path) -> None:
    path = write_obs(tmp_path / "obs.csv", OBS.iloc[7:])
    with pytest.raises(MetadataMismatch) as err:
        open_input(matrix, obs=path)
    assert str(err.value) == (
        f"{path}: 7 of 240 cells in the matrix have no metadata row (first: 'cell0', "
        "'cell1', 'cell2', 'cell3', 'cell4', … (7 in all)); fix the file or pass "
        "--allow-missing-metadata"
    )


def test_lazy_metadata_is_read_when_first_asked_for(matrix: Path, tmp_path: Path) -> None:
    """A cluster's pass-1 task opens the input with ``lazy_metadata``: nothing of the cells'
    or genes' metadata is read until asked for; then the frames equal an eager open's, and a
    fault in a metadata file is raised there, with the same message."""
    good = write_obs(tmp_path / "obs.csv", OBS.sample(frac=1, random_state=1))
    with open_input(matrix, obs=good) as eager:
        obs, var = eager.obs(), eager.var()
    with open_input(matrix, obs=good, lazy_metadata=True) as lazy:
        assert callable(lazy._metadata)  # not read yet
        pd.testing.assert_frame_equal(lazy.obs(), obs)
        pd.testing.assert_frame_equal(lazy.var(), var)
        assert not callable(lazy._metadata)  # read once, kept
    bad = write_obs(tmp_path / "short.csv", OBS.iloc[7:])
    with pytest.raises(MetadataMismatch) as eager_err:
        open_input(matrix, obs=bad)
    with open_input(matrix, obs=bad, lazy_metadata=True) as lazy:  # opens: the fault is not read yet
        assert lazy.shape == (240, 60)
        with pytest.raises(MetadataMismatch) as lazy_err:
            lazy.obs()
    assert str(lazy_err.value) == str(eager_err.value)
    assert str(lazy_err.value).startswith(f"{bad}: 7 of 240 cells in the matrix have no metadata row")


@pytest.mark.slow
def test_allow_missing_metadata_fills_unknown(matrix: Path, tmp_path: Path, settings: Settings) -> None:
    path = write_obs(tmp_path / "obs.csv", OBS.iloc[7:])
    record = ingest(matrix, dataset="t", obs=path, allow_missing_metadata=True, settings=settings)
    assert record.info["groupbys"] == ["cell_type", "donor"]
    wc = Widecube(settings)
    got = wc.summary("t", genes=["Gene4"], groupby="donor", stats=["n_cells", "sum"], layer="input")
    wc.close()
    labels = OBS["donor"].astype(str).to_numpy().copy()
    labels[:7] = "unknown"
    assert "unknown" in got["groups"]
    for i, d in enumerate(got["groups"]):
        assert got["values"]["n_cells"][i, 0] == (labels == d).sum()
        assert got["values"]["sum"][i, 0] == X[labels == d, 4].sum()
    with open_input(matrix, obs=path, allow_missing_metadata=True) as src:
        assert np.isnan(src.obs()["score"].iloc[:7]).all()


def test_duplicate_metadata_ids(matrix: Path, tmp_path: Path) -> None:
    path = tmp_path / "obs.csv"
    path.write_text("cell,type\ncell0,T\ncell1,B\ncell0,NK\n")
    with pytest.raises(UnreadableInput, match=r"obs\.csv: duplicate id 'cell0' at line 2 and line 4"):
        open_input(matrix, obs=path)


def test_var_join_by_name_or_by_gene_id(tmp_path: Path) -> None:
    h5 = write_10x_h5(tmp_path / "m.h5", X, CELLS, GENES)
    by_id = pd.DataFrame({"chrom": [f"chr{j % 3}" for j in range(len(GENES))]}, index=gene_ids(GENES))
    by_id.to_csv(tmp_path / "genes.csv", index_label="gene_id")
    with open_input(h5, var=tmp_path / "genes.csv") as src:
        var = src.var()
    assert list(var.index) == GENES and list(var["chrom"].astype(str)) == list(by_id["chrom"])
    by_name = pd.DataFrame({"chrom": ["chrX"] * 5}, index=GENES[:5])
    by_name.to_csv(tmp_path / "some.csv")
    with pytest.raises(MetadataMismatch, match=r"some\.csv: 55 of 60 genes in the matrix have no metadata"):
        open_input(h5, var=tmp_path / "some.csv")


@pytest.mark.slow
@pytest.mark.subprocess
def test_groupby_on_a_metadata_column_through_the_cli(
    matrix: Path, tmp_path: Path, settings: Settings
) -> None:
    meta = OBS.astype({"cell_type": str, "donor": str})
    meta.loc["stray"] = ["T", "d1", 0.5]
    path = write_obs(tmp_path / "cells.csv", meta)
    env = {
        **os.environ,
        "WIDECUBE_STORAGE": str(settings.storage),
        "WIDECUBE_CATALOG_URL": settings.catalog_url,
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "widecube.cli",
            "ingest",
            str(matrix),
            "--dataset",
            "t",
            "--obs",
            str(path),
            "--groupby",
            "cell_type",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    warning = f"{path}: 1 metadata rows name cells that are not in the matrix (first: 'stray'); ignored"
    assert warning in run.stderr
    wc = Widecube(settings)
    got = wc.summary("t", genes=["Gene2"], groupby="cell_type", stats=["sum"], layer="input")
    wc.close()
    for i, g in enumerate(got["groups"]):
        assert got["values"]["sum"][i, 0] == X[(OBS["cell_type"] == g).to_numpy(), 2].sum()
