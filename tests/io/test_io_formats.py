"""Every input format, ingested end to end, serves the same summary as a numpy reference.

Each file is written by the format's own tools (tests/_io_writers.py); formats that carry no
cell metadata get theirs from ``--obs``. Blocks are tiny (``block_nnz=97``) so every reader
really streams many blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _data import small_adata, write_h5ad
from _io_writers import (
    gene_ids,
    write_10x_h5,
    write_csv,
    write_loom,
    write_mtx,
    write_obs,
    write_parquet,
)
from widecube.config import Settings
from widecube.errors import UnreadableInput
from widecube.io import open_input
from widecube.pipeline import ingest
from widecube.query import Widecube

ADATA = small_adata(seed=11)
X = np.asarray(ADATA.X, dtype=np.float64)
CELLS, GENES = list(ADATA.obs_names), list(ADATA.var_names)
OBS = ADATA.obs[["cell_type", "donor", "score"]]

Writer = Callable[[Path], Path]
FORMATS: dict[str, tuple[str, Writer]] = {
    "csv": ("csv", lambda d: write_csv(d / "counts.csv", X, CELLS, GENES)),
    "tsv.gz": ("tsv", lambda d: write_csv(d / "counts.tsv.gz", X, CELLS, GENES, sep="\t")),
    "parquet": ("parquet", lambda d: write_parquet(d / "cells.parquet", X, CELLS, GENES)),
    "mtx": ("mtx", lambda d: write_mtx(d / "filtered", X, CELLS, GENES)),
    "10x h5": ("10x-h5", lambda d: write_10x_h5(d / "filtered_feature_bc_matrix.h5", X, CELLS, GENES)),
    "loom": ("loom", lambda d: write_loom(d / "cells.loom", X, CELLS, GENES, OBS)),
}
"""Ingested end to end."""

VARIANTS: dict[str, Writer] = {
    "parquet, id in the first column": lambda d: write_parquet(d / "c.parquet", X, CELLS, GENES, index=False),
    "mtx.gz, GEO prefix, genes.tsv": lambda d: write_mtx(
        d / "geo", X, CELLS, GENES, gz=True, prefix="GSM1_", legacy=True
    ),
    "mtx file path": lambda d: write_mtx(d / "m", X, CELLS, GENES) / "matrix.mtx",
    "mtx sorted by gene": lambda d: write_mtx(d / "bygene", X, CELLS, GENES, order="gene"),
    "mtx shuffled": lambda d: write_mtx(d / "shuffled", X, CELLS, GENES, order="random"),
    "csv.gz": lambda d: write_csv(d / "counts.csv.gz", X, CELLS, GENES),
}
"""Read through the block stream only (same readers, other layouts)."""


def dense(path: Path, work: Path, block_nnz: int = 97) -> tuple[np.ndarray, list[str], list[str]]:
    """The matrix a source streams, assembled from its blocks, and its cell and gene names."""
    with open_input(path, workdir=work) as src:
        out = np.zeros(src.shape)
        n_blocks = 0
        for block in src.iter_blocks(block_nnz=block_nnz):
            m = block.matrix.toarray()
            r, c = block.row_start, block.col_start
            out[r : r + m.shape[0], c : c + m.shape[1]] += m
            n_blocks += 1
        assert n_blocks > 10
        return out, list(src.obs().index), list(src.var().index)


@pytest.mark.parametrize("case", list(VARIANTS))
def test_layout_variants_stream_the_same_matrix(case: str, tmp_path: Path) -> None:
    got, cells, genes = dense(VARIANTS[case](tmp_path), tmp_path / "work")
    np.testing.assert_array_equal(got, X)
    assert (cells, genes) == (CELLS, GENES)
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


def numpy_summary(x: np.ndarray, labels: pd.Series) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for group in labels.unique():
        rows = x[(labels == group).to_numpy()]
        out[str(group)] = {
            "n_cells": np.full(x.shape[1], rows.shape[0]),
            "sum": rows.sum(0),
            "nnz": (rows != 0).sum(0),
            "mean": rows.mean(0),
            "var": rows.var(0, ddof=1) if rows.shape[0] > 1 else np.full(x.shape[1], np.nan),
        }
    return out


@pytest.mark.slow
@pytest.mark.parametrize("case", list(FORMATS))
def test_each_format_serves_the_numpy_summary(case: str, tmp_path: Path, settings: Settings) -> None:
    fmt, write = FORMATS[case]
    path = write(tmp_path)
    obs = None if fmt == "loom" else write_obs(tmp_path / "obs.csv", OBS)
    tiny = settings.model_copy(update={"block_nnz": 97})
    record = ingest(path, dataset="t", groupbys=["cell_type", "cell_type,donor"], obs=obs, settings=tiny)
    assert record.info["input"]["format"] == fmt
    assert (record.n_cells, record.n_genes) == X.shape
    wc = Widecube(tiny)
    stats = ["n_cells", "sum", "nnz", "mean", "var"]
    types, donors = OBS["cell_type"].astype(str), OBS["donor"].astype(str)
    for groupby, labels in [("cell_type", types), ("cell_type,donor", types + "_" + donors)]:
        got = wc.summary("t", genes=GENES, groupby=groupby, stats=stats, layer="input")
        want = numpy_summary(X, labels)
        assert sorted(got["groups"]) == sorted(want)
        for i, group in enumerate(got["groups"]):
            for stat in stats:
                np.testing.assert_allclose(
                    got["values"][stat][i],
                    want[group][stat],
                    rtol=1e-6,
                    equal_nan=True,
                    err_msg=f"{case} {groupby} {group} {stat}",
                )
    wc.close()
    assert not any((settings.storage / "work").iterdir())  # unpacked and spilled files are gone


def test_gene_ids_and_feature_types_are_kept(tmp_path: Path) -> None:
    h5, mtx = write_10x_h5(tmp_path / "m.h5", X, CELLS, GENES), write_mtx(tmp_path / "mtx", X, CELLS, GENES)
    for path in (h5, mtx):
        with open_input(path, workdir=tmp_path / "work") as src:
            var = src.var()
            assert list(var.index) == GENES and list(var["gene_ids"]) == gene_ids(GENES)
            assert (var["feature_types"] == "Gene Expression").all()
            assert list(src.obs().index) == CELLS


@pytest.mark.slow
def test_loom_attributes_become_obs_and_default_groupings(tmp_path: Path, settings: Settings) -> None:
    path = write_loom(tmp_path / "a.loom", X, CELLS, GENES, OBS)
    with open_input(path) as src:
        obs = src.obs()
        assert isinstance(obs["cell_type"].dtype, pd.CategoricalDtype)  # strings → categories
        assert obs["score"].dtype.kind == "f"
        assert list(src.var()["gene_ids"]) == gene_ids(GENES)
    record = ingest(path, dataset="loom", settings=settings)
    assert record.info["groupbys"] == ["cell_type", "donor"]


@pytest.mark.slow
def test_loom_layer(tmp_path: Path, settings: Settings) -> None:
    doubled = 2 * X
    path = write_loom(tmp_path / "a.loom", X, CELLS, GENES, OBS, layers={"spliced": doubled})
    ingest(path, dataset="l", groupbys=["donor"], layer="spliced", settings=settings)
    wc = Widecube(settings)
    got = wc.summary("l", genes=["Gene3"], groupby="donor", stats=["sum"], layer="input")
    wc.close()
    for i, d in enumerate(got["groups"]):
        assert got["values"]["sum"][i, 0] == doubled[(OBS["donor"] == d).to_numpy(), 3].sum()
    with pytest.raises(UnreadableInput, match=r"a\.loom: no layer 'unspliced' \(layers: spliced\)"):
        open_input(path, layer="unspliced")


def test_detection_is_by_content_not_name(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "looks_like.h5ad", X, CELLS, GENES)
    h5 = write_10x_h5(tmp_path / "matrix.csv", X, CELLS, GENES)
    with open_input(csv) as a, open_input(h5) as b:
        assert (a.format, b.format) == ("csv", "10x-h5")


def test_format_option_overrides_detection(tmp_path: Path) -> None:
    """A single-gene TSV is not detected (two columns are a list), but --format reads it."""
    path = tmp_path / "one_gene.txt"
    pd.DataFrame({"g": [1, 0, 3]}, index=pd.Index(["a", "b", "c"], name="cell")).to_csv(path, sep="\t")
    with pytest.raises(UnreadableInput, match="one_gene.txt: not a recognised matrix file"):
        open_input(path)
    with open_input(path, format="tsv") as src:
        assert src.shape == (3, 1)
        block = next(src.iter_blocks(block_nnz=100))
        assert block.matrix.toarray().ravel().tolist() == [1, 0, 3]


def test_duplicate_10x_symbols_are_made_unique(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    names = list(GENES)
    names[7] = names[3]
    path = write_10x_h5(tmp_path / "dup.h5", X, CELLS, GENES, names=names)
    with caplog.at_level(logging.WARNING, logger="widecube.io"), open_input(path) as src:
        var = src.var()
    assert var.index[3] == "Gene3" and var.index[7] == "Gene3-1"
    assert var["gene_ids"].is_unique and "duplicate gene names made unique" in caplog.text


def test_text_values_quoting_and_line_endings(tmp_path: Path) -> None:
    """R's write.csv style (quoted header and ids, CRLF), decimals, exponents, no final newline."""
    rng = np.random.default_rng(4)
    values = np.round(rng.lognormal(0, 3, (50, 7)) * (rng.random((50, 7)) < 0.5), 4)
    tokens = [[repr(float(v)) if j % 3 else f"{v:.3e}" for j, v in enumerate(row)] for row in values]
    tokens[0][:5] = ["-0", ".5", "5.", "1E3", "+2"]
    lines = ['"","' + '","'.join(f"g{j}" for j in range(7)) + '"']
    lines += [f'"cell ""{i}"", x",' + ",".join(row) for i, row in enumerate(tokens)]
    path = tmp_path / "r_style.csv"
    path.write_bytes("\r\n".join(lines).encode())
    want = np.array([[float(t) for t in row] for row in tokens], dtype=np.float32)
    got, cells, genes = dense(path, tmp_path / "work", block_nnz=10)
    np.testing.assert_array_equal(got.astype(np.float32), want)
    assert cells[3] == 'cell "3", x' and genes == [f"g{j}" for j in range(7)]


@pytest.mark.parametrize("layout", ["csr", "csc", "dense"])
@pytest.mark.parametrize("window", [None, (7, 41)])
def test_h5ad_layouts_stream_the_same_matrix(
    layout: str, window: tuple[int, int] | None, tmp_path: Path
) -> None:
    """CSR, CSC and dense X, whole or a gene window (gene-major files read only that window)."""
    path = write_h5ad(ADATA, tmp_path / f"{layout}.h5ad", layout=layout)
    lo, hi = window or (0, len(GENES))
    with open_input(path) as src:
        out = np.zeros(src.shape)
        blocks = list(src.iter_blocks(block_nnz=97, columns=window))
    for block in blocks:
        m, r, c = block.matrix.toarray(), block.row_start, block.col_start
        out[r : r + m.shape[0], c : c + m.shape[1]] += m
    assert len(blocks) > 10
    np.testing.assert_array_equal(out[:, lo:hi], X[:, lo:hi].astype(np.float32))
