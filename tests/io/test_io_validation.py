"""Bad input is refused with an InputError naming the file and the place at fault.

Each case writes a small, deliberately broken file in a real format and checks the whole
message (file, line or row, column, the value or id). The last tests run ingest and the CLI:
the catalog records the failure, nothing is published, no traceback reaches the user.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from _data import small_adata, without_progress, write_h5ad
from _io_writers import write_10x_h5, write_loom, write_mtx, write_parquet
from widecube.catalog import Catalog, VersionStatus
from widecube.config import Settings
from widecube.errors import DatasetNotFound, InputError, InvalidValue, UnreadableInput
from widecube.io import open_input
from widecube.pipeline import ingest

X = np.arange(12, dtype=np.float64).reshape(4, 3) % 5
CELLS, GENES = ["c1", "c2", "c3", "c4"], ["Gene0", "Gene1", "Gene2"]


def text(tmp: Path, name: str, body: str) -> Path:
    path = tmp / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(body.encode()))
    else:
        path.write_text(body)
    return path


HEADER = "cell,Gene0,Gene1,Gene2\n"
CSV_CASES: dict[str, tuple[str, str]] = {
    "null": (HEADER + "c1,1,2,3\nc2,4,,6\n", "Null value found at cell c2, gene Gene1 (line 3, field 3)"),
    "NaN": (
        HEADER + "c1,1,2,3\nc2,NaN,5,6\n",
        "NaN found at row 2 (cell 'c2'), column 1 (gene 'Gene0') (line 3, field 2)",
    ),
    "inf": (
        HEADER + "c1,1,2,3\nc2,4,5,6\nc3,0,0,-inf\n",
        "infinite value found at row 3 (cell 'c3'), column 3 (gene 'Gene2') (line 4, field 4)",
    ),
    "non-numeric": (
        HEADER + "c1,1,2,3\nc2,4,5,6\nc3,7,abc,9\n",
        "non-numeric value 'abc' at line 4, field 3 (cell 'c3', gene 'Gene1')",
    ),
    "ragged": (HEADER + "c1,1,2,3\nc2,4,5\n", "ragged row at line 3: 3 fields where the header has 4"),
    "too many fields": (HEADER + "c1,1,2,3,4\n", "ragged row at line 2: 5 fields where the header has 4"),
    "duplicate cell": (
        HEADER + "c1,1,2,3\nc2,4,5,6\nc1,7,8,9\n",
        "duplicate cell id 'c1' at line 2 and line 4",
    ),
    "empty cell id": (HEADER + "c1,1,2,3\n,4,5,6\n", "empty cell id at line 3"),
    "duplicate gene": (
        "cell,Gene0,Gene1,Gene0\nc1,1,2,3\n",
        "duplicate gene name 'Gene0' at line 1, field 2 and line 1, field 4",
    ),
    "no cells": (HEADER, "empty matrix (0 cells × 3 genes)"),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_csv_cases(case: str, suffix: str, tmp_path: Path) -> None:
    body, message = CSV_CASES[case]
    path = text(tmp_path, f"bad{suffix}", body)
    with pytest.raises(InputError) as err:
        open_input(path, workdir=tmp_path / "work")
    assert str(err.value) == f"{path}: {message}"
    assert not any((tmp_path / "work").glob("*"))  # the spill is removed on failure


def test_tsv_names_its_fields_too(tmp_path: Path) -> None:
    path = text(tmp_path, "bad.tsv", "cell\tGene0\tGene1\nc1\t1\t2\nc2\t3\t\n")
    with pytest.raises(InvalidValue, match=r"bad\.tsv: Null value found at cell c2, gene Gene1 \(line 3"):
        open_input(path)


def test_truncated_gzip(tmp_path: Path) -> None:
    body = HEADER + "".join(f"c{i},{i % 3},{i % 5},{i % 7}\n" for i in range(20_000))
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(gzip.compress(body.encode())[:-5_000])
    with pytest.raises(UnreadableInput, match=r"cut\.csv\.gz: cannot read, file truncated or corrupt"):
        open_input(path)


def test_unknown_format_names_the_formats_tried(tmp_path: Path) -> None:
    path = tmp_path / "noise.bin"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(UnreadableInput) as err:
        open_input(path)
    assert str(err.value) == (
        f"{path}: not a recognised matrix file (formats tried: h5ad, 10x-h5, loom, parquet, mtx, csv, tsv)"
    )


def test_truncated_hdf5(tmp_path: Path) -> None:
    path = write_10x_h5(tmp_path / "cut.h5", X, CELLS, GENES)
    path.write_bytes(path.read_bytes()[:2_000])
    with pytest.raises(UnreadableInput, match=r"cut\.h5: an HDF5 file that cannot be read .* truncated"):
        open_input(path)


def test_10x_corrupt_indices(tmp_path: Path) -> None:
    path = write_10x_h5(tmp_path / "bad.h5", X, CELLS, GENES)
    with h5py.File(path, "r+") as f:
        f["matrix/indices"][4] = 99
    with open_input(path) as src, pytest.raises(UnreadableInput) as err:
        list(src.iter_blocks(block_nnz=100))
    assert str(err.value) == (
        f"{path}: matrix/indices[4] = 99: column 100 at row 3 is outside the matrix (columns 1–3)"
    )


def mtx_folder(tmp: Path, x: np.ndarray = X) -> Path:
    return write_mtx(tmp / "mtx", x, CELLS, GENES)


def edit(path: Path, line: int, new: str) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = new
    path.write_text("\n".join(lines) + "\n")


def drop_last_lines(path: Path, n: int) -> None:
    path.write_text("\n".join(path.read_text().splitlines()[:-n]) + "\n")


MTX_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "index out of range": (
        lambda m: edit(m / "matrix.mtx", 5, "9 1 3"),
        "matrix.mtx: line 5: index (9, 1) is outside the 3 × 4 matrix",
    ),
    "non-numeric": (
        lambda m: edit(m / "matrix.mtx", 4, "2 1 x"),
        "matrix.mtx: non-numeric value 'x' at line 4, value",
    ),
    "ragged": (lambda m: edit(m / "matrix.mtx", 6, "2 1"), "matrix.mtx: ragged row at line 6: 2 fields"),
    "truncated": (
        lambda m: drop_last_lines(m / "matrix.mtx", 2),
        "matrix.mtx: file truncated: the header declares 9 entries, found 7",
    ),
    "not coordinate": (
        lambda m: edit(m / "matrix.mtx", 1, "%%MatrixMarket matrix array real general"),
        "matrix.mtx: line 1: not a MatrixMarket coordinate matrix banner",
    ),
    "symmetric": (
        lambda m: edit(m / "matrix.mtx", 1, "%%MatrixMarket matrix coordinate real symmetric"),
        "matrix.mtx: line 1: real symmetric matrices are not supported",
    ),
    "wrong size": (
        lambda m: edit(m / "features.tsv", 3, ""),
        "matrix.mtx: matrix is 3 × 4 but features.tsv lists 2 genes and barcodes.tsv 4 barcodes",
    ),
    "duplicate barcode": (
        lambda m: edit(m / "barcodes.tsv", 3, "c1"),
        "barcodes.tsv: duplicate barcode 'c1' at line 1 and line 3",
    ),
}


@pytest.mark.parametrize("case", list(MTX_CASES))
def test_mtx_cases(case: str, tmp_path: Path) -> None:
    folder = mtx_folder(tmp_path)
    change, message = MTX_CASES[case]
    change(folder)
    with pytest.raises(InputError) as err:
        open_input(folder)
    assert message in str(err.value) and str(folder) in str(err.value)


def test_mtx_nan_names_line_cell_and_gene(tmp_path: Path) -> None:
    folder = mtx_folder(tmp_path)
    path = folder / "matrix.mtx"
    edit(path, 1, "%%MatrixMarket matrix coordinate real general")
    gene, cell = (int(v) - 1 for v in path.read_text().splitlines()[4].split()[:2])
    edit(path, 5, f"{gene + 1} {cell + 1} nan")
    with pytest.raises(InvalidValue) as err:
        open_input(folder)
    assert str(err.value) == f"{path}: NaN found at line 5 (cell {CELLS[cell]!r}, gene {GENES[gene]!r})"


def test_parquet_cases(tmp_path: Path) -> None:
    index = pd.Index(["c1", "c2"], name="cell")
    nulls = pd.DataFrame({"Gene0": [1.0, 2.0], "Gene1": [3.0, None]}, index=index)
    nulls.to_parquet(tmp_path / "null.parquet")
    with open_input(tmp_path / "null.parquet") as src, pytest.raises(InvalidValue) as err:
        list(src.iter_blocks(block_nnz=100))
    want = "Null value found at cell c2, gene Gene1 (row 2, column 2)"
    assert str(err.value) == f"{tmp_path / 'null.parquet'}: {want}"
    nulls.assign(Gene1=["a", "b"]).to_parquet(tmp_path / "text.parquet")
    with pytest.raises(UnreadableInput, match=r"text\.parquet: column 'Gene1' holds string, not numbers"):
        open_input(tmp_path / "text.parquet")
    path = write_parquet(tmp_path / "cut.parquet", X, CELLS, GENES)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(UnreadableInput, match=r"cut\.parquet: not a readable Parquet file"):
        open_input(path)


def test_loom_nan(tmp_path: Path) -> None:
    x = X.copy()
    x[2, 1] = np.nan
    path = write_loom(tmp_path / "nan.loom", x, CELLS, GENES)
    with open_input(path) as src, pytest.raises(InvalidValue) as err:
        list(src.iter_blocks(block_nnz=3))
    assert str(err.value) == f"{path}: NaN found at row 3 (cell 'c3'), column 2 (gene 'Gene1')"


def test_empty_matrices(tmp_path: Path) -> None:
    zero_genes = write_loom(tmp_path / "nogenes.loom", np.zeros((4, 0)), CELLS, [])
    with pytest.raises(UnreadableInput, match=r"nogenes\.loom: empty matrix \(4 cells × 0 genes\)"):
        open_input(zero_genes)
    zero_cells = write_10x_h5(tmp_path / "nocells.h5", np.zeros((0, 3)), [], GENES)
    with pytest.raises(UnreadableInput, match=r"nocells\.h5: empty matrix \(0 cells × 3 genes\)"):
        open_input(zero_cells)
    header_only = text(tmp_path, "nogenes.csv", "cell\nc1\n")
    with pytest.raises(UnreadableInput, match="nogenes.csv: empty matrix: the header .* no gene columns"):
        open_input(header_only, format="csv")


def test_negative_values_in_a_declared_counts_layer(tmp_path: Path) -> None:
    csv = text(tmp_path, "neg.csv", HEADER + "c1,1,2,3\nc2,4,-3,6\n")
    with open_input(csv) as src:  # not declared: negative values are fine
        list(src.iter_blocks(block_nnz=100))
    with open_input(csv, layer="counts") as src, pytest.raises(InvalidValue) as err:
        list(src.iter_blocks(block_nnz=100))
    assert str(err.value) == (
        f"{csv}: negative value -3 found at row 2 (cell 'c2'), column 2 (gene 'Gene1') in a counts matrix"
    )
    adata = small_adata()
    adata.X[7, 2] = -1
    h5ad = write_h5ad(adata, tmp_path / "neg.h5ad", where="counts")
    with open_input(h5ad, layer="counts") as src, pytest.raises(InvalidValue, match="row 8 .*column 3"):
        list(src.iter_blocks(block_nnz=1000))


@pytest.mark.slow
def test_a_bad_input_fails_the_version_and_publishes_nothing(tmp_path: Path, settings: Settings) -> None:
    path = text(tmp_path, "bad.csv", HEADER + "c1,1,2,3\nc2,4,,6\n")
    with pytest.raises(InvalidValue, match="Null value found at cell c2, gene Gene1"):
        ingest(path, dataset="t", settings=settings)
    catalog = Catalog(settings.catalog_url)
    failed = catalog.versions("t")[0]
    assert failed.status == VersionStatus.FAILED
    assert failed.reason == f"{path}: Null value found at cell c2, gene Gene1 (line 3, field 3)"
    with pytest.raises(DatasetNotFound):
        catalog.current("t")
    catalog.close()
    assert not any((settings.storage / "work").iterdir())


@pytest.mark.slow
@pytest.mark.subprocess
def test_cli_prints_one_line_without_traceback(tmp_path: Path, settings: Settings) -> None:
    env = {
        **os.environ,
        "WIDECUBE_STORAGE": str(settings.storage),
        "WIDECUBE_CATALOG_URL": settings.catalog_url,
    }
    bad = text(tmp_path, "bad.tsv.gz", "cell\tGene0\tGene1\tGene2\nc1\t1\t2\t3\nc2\t1\tx\t3\n")
    run = subprocess.run(
        [sys.executable, "-m", "widecube.cli", "ingest", str(bad), "--dataset", "t"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert without_progress(run.stderr) == [
        f"error: {bad}: non-numeric value 'x' at line 3, field 3 (cell 'c2', gene 'Gene1')"
    ]


def test_blank_lines_are_skipped_and_lines_still_counted(tmp_path: Path) -> None:
    body = HEADER + "c1,1,2,3\n\r\n\nc2,4,5,6\nc3,7,x,9\n\n\n"
    path = text(tmp_path, "blank.csv", body)
    with pytest.raises(InvalidValue, match=r"non-numeric value 'x' at line 6, field 3 \(cell 'c3'"):
        open_input(path)
    path = text(tmp_path, "trailing.csv", HEADER + "c1,1,2,3\n\nc2,4,nan,6\n\n")
    nan_at = r"NaN found at row 2 \(cell 'c2'\), column 2 .* \(line 4, field 3\)"
    with pytest.raises(InvalidValue, match=nan_at):
        open_input(path)
    with open_input(text(tmp_path, "ok.csv", HEADER + "c1,1,2,3\nc2,4,5,6\n\n\n")) as src:
        assert src.shape == (2, 3)
