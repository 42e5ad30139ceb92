"""Every message that names a row, column or entry of an input counts from 1 (as a
spreadsheet, a text editor and R do), never from 0 (issue 15's audit): duplicate ids in
Parquet matrices and metadata tables, in 10x barcodes, and the ingest's own check."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from _io_writers import write_10x_h5, write_parquet
from widecube.errors import InputError, UnreadableInput
from widecube.io import open_input
from widecube.io._checks import check_unique
from widecube.io._metadata import read_table
from widecube.pipeline._ingest import _check_unique

X = np.arange(12, dtype=np.float32).reshape(3, 4) + 1


def test_a_duplicate_cell_id_in_a_parquet_matrix_names_rows_from_1(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "m.parquet", X, ["c1", "c2", "c1"], ["G1", "G2", "G3", "G4"], index=False)
    with pytest.raises(
        UnreadableInput, match=re.escape(f"{path}: duplicate cell id 'c1' at row 1 and row 3")
    ):
        open_input(path)


def test_a_duplicate_column_in_a_parquet_matrix_names_columns_from_1(tmp_path: Path) -> None:
    table = pa.table(
        [pa.array(["c1", "c2"]), *(pa.array([1.0, 2.0]) for _ in range(3))], names=["cell", "G1", "G2", "G1"]
    )
    path = tmp_path / "m.parquet"
    pq.write_table(table, path)
    with pytest.raises(
        UnreadableInput, match=re.escape(f"{path}: duplicate column name 'G1' at column 2 and column 4")
    ):
        open_input(path)


@pytest.mark.parametrize(
    ("name", "place"), [("obs.parquet", "row 2 and row 3"), ("obs.csv", "line 3 and line 4")]
)
def test_a_duplicate_id_in_a_metadata_table_names_rows_from_1(tmp_path: Path, name: str, place: str) -> None:
    frame = pd.DataFrame({"cell": ["c1", "c2", "c2"], "donor": ["d1", "d2", "d3"]})
    path = tmp_path / name
    frame.to_parquet(path, index=False) if name.endswith(".parquet") else frame.to_csv(path, index=False)
    with pytest.raises(UnreadableInput, match=re.escape(f"{path}: duplicate id 'c2' at {place}")):
        read_table(path)


def test_a_duplicate_barcode_in_a_10x_file_names_entries_from_1(tmp_path: Path) -> None:
    path = write_10x_h5(tmp_path / "m.h5", X, ["AAAC-1", "AAAG-1", "AAAC-1"], ["G1", "G2", "G3", "G4"])
    with pytest.raises(
        UnreadableInput,
        match=re.escape("duplicate barcode 'AAAC-1' at barcodes entry 1 and barcodes entry 3"),
    ):
        open_input(path)


def test_the_ingest_and_the_default_place_count_from_1() -> None:
    with pytest.raises(InputError, match=re.escape("x.h5ad: duplicate cell id 'a' at rows 1 and 3")):
        _check_unique(Path("/data/x.h5ad"), pd.Index(["a", "b", "a"]), "cell id")
    with pytest.raises(InputError, match=re.escape("x.h5ad: duplicate gene name 'g' at columns 2 and 3")):
        _check_unique(Path("/data/x.h5ad"), pd.Index(["f", "g", "g"]), "gene name")
    with pytest.raises(UnreadableInput, match=re.escape("t: duplicate id 'b' at position 2 and position 4")):
        check_unique(["a", "b", "c", "b"], where="t", what="id")
