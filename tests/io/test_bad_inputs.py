"""The bad-input corpus (issue 9): every malformed input is refused by the real CLI.

Each case builds a small broken file (h5py, numpy, tarfile: nothing binary is committed),
runs ``widecube ingest FILE --dataset d`` in a process of its own on a storage root
of its own, and checks what a user and an operator see: exit status 1 (not a signal), one
line on stderr naming the file and the 1-based row and column where they apply, no
traceback, nothing published, and no staging or work folder left behind.

The classes issue 9 lists run through the CLI, started together by a module fixture, each in
a process of its own forked from one that imported widecube once (a fresh interpreter pays
~2.5 s of imports per case); the further probes run the same ingest in this process,
asserting the same about the error and the storage root.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from _cli import forked, process
from _data import without_progress
from _io_writers import write_10x_h5, write_loom, write_mtx, write_parquet
from widecube.catalog import Catalog, VersionStatus
from widecube.compute._pass import check_finite
from widecube.compute._spill import GeneSpill
from widecube.config import Settings
from widecube.errors import InputError, InvalidValue, UnreadableInput
from widecube.io import Block
from widecube.pipeline import ingest

N_CELLS, N_GENES = 40, 30
CELLS, GENES = [f"c{i}" for i in range(N_CELLS)], [f"G{j}" for j in range(N_GENES)]


@dataclass
class Case:
    """An input, the extra CLI arguments, and the fragments its one error line must hold."""

    path: Path
    expect: list[str]
    args: tuple[str, ...] = ()


def counts(n_cells: int = N_CELLS, n_genes: int = N_GENES, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.where(rng.random((n_cells, n_genes)) < 0.3, rng.integers(1, 9, (n_cells, n_genes)), 0)
    x[:, 0] = 1  # every row has a stored value in column 1, so every row has a non-empty slice
    return x.astype(np.float32)


def h5ad(
    path: Path,
    *,
    layout: str = "csr",
    x: np.ndarray | None = None,
    obs: pd.DataFrame | None = None,
    var_names: list[str] | None = None,
) -> Path:
    """A valid .h5ad with a categorical obs column (so grouping views have something)."""
    x = counts() if x is None else x
    if obs is None:
        kind = pd.Categorical(np.where(np.arange(x.shape[0]) % 3 == 0, "a", "b"))
        obs = pd.DataFrame({"kind": kind}, index=[f"c{i}" for i in range(x.shape[0])])
    var = pd.DataFrame(index=var_names or [f"G{j}" for j in range(x.shape[1])])
    stored = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "dense": np.asarray}[layout](x)
    ad.AnnData(stored, obs=obs, var=var).write_h5ad(path)
    return path


def reference() -> sp.csr_matrix:
    return sp.csr_matrix(counts())


def replace(f: h5py.File, key: str, values: np.ndarray, **kw: object) -> None:
    del f[key]
    f.create_dataset(key, data=values, **kw)


def row_of(indptr: np.ndarray, k: int) -> int:
    """The 1-based major (row of a CSR, column of a CSC) holding stored value ``k``."""
    return int(np.searchsorted(indptr, k, side="right"))


# ---- item 1: indices outside the declared shape, and random bytes over chunks ----


def csr_column(value: int) -> Callable[[Path], Case]:
    def build(tmp: Path) -> Case:
        path = h5ad(tmp / f"col{value}.h5ad")
        m = reference()
        k = int(m.indptr[17]) + 1  # a value in row 18
        with h5py.File(path, "r+") as f:
            f["X/indices"][k] = value
        row = row_of(m.indptr, k)
        return Case(
            path,
            [
                f"{path}: X/indices[{k}] = {value}: column {value + 1} at row {row} "
                f"is outside the matrix (columns 1–{N_GENES})"
            ],
        )

    return build


def csc_row_out_of_range(tmp: Path) -> Case:
    path = h5ad(tmp / "cscrow.h5ad", layout="csc")
    m = sp.csc_matrix(counts())
    k = int(m.indptr[11]) + 2  # a value in column 12
    with h5py.File(path, "r+") as f:
        f["X/indices"][k] = N_CELLS
    column = row_of(m.indptr, k)
    return Case(
        path,
        [
            f"{path}: X/indices[{k}] = {N_CELLS}: row {N_CELLS + 1} at column {column} "
            f"is outside the matrix (rows 1–{N_CELLS})"
        ],
    )


def chunked(path: Path, key: str, values: np.ndarray, **kw: object) -> tuple[int, int]:
    """Rewrite ``key`` chunked (16 values a chunk); the (offset, size) in the file of chunk 2."""
    with h5py.File(path, "r+") as f:
        replace(f, key, values, chunks=(16,), **kw)
        info = f[key].id.get_chunk_info(2)
        return int(info.byte_offset), int(info.size)


def scribble(path: Path, offset: int, size: int, seed: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + size] = np.random.default_rng(seed).bytes(size)
    path.write_bytes(bytes(raw))


def random_bytes_over_gzip_data(tmp: Path) -> Case:
    path = h5ad(tmp / "gzdata.h5ad")
    offset, size = chunked(path, "X/data", reference().data, compression="gzip")
    scribble(path, offset, size, seed=1)
    return Case(path, [f"{path}: read failed, file truncated or corrupt"])


def random_bytes_over_indices(tmp: Path) -> Case:
    path = h5ad(tmp / "rndidx.h5ad")
    m = reference()
    offset, size = chunked(path, "X/indices", m.indices.astype(np.int32))
    scribble(path, offset, size, seed=2)
    with h5py.File(path, "r") as f:
        stored = f["X/indices"][...]
    k = int(np.flatnonzero((stored < 0) | (stored >= N_GENES))[0])  # random int32s: almost all out
    return Case(
        path,
        [
            f"{path}: X/indices[{k}] = {int(stored[k])}: column {int(stored[k]) + 1} at row "
            f"{row_of(m.indptr, k)} is outside the matrix"
        ],
    )


def random_bytes_over_indptr(tmp: Path) -> Case:
    path = h5ad(tmp / "rndptr.h5ad")
    offset, size = chunked(path, "X/indptr", reference().indptr.astype(np.int64))
    scribble(path, offset, size, seed=3)
    return Case(path, [f"{path}: X/indptr"])  # garbage pointers: out of order or past the values


# ---- item 5: the inputs that ended in a traceback ----


def zero_cells(tmp: Path) -> Case:
    path = h5ad(
        tmp / "nocells.h5ad",
        x=np.zeros((0, N_GENES), np.float32),
        obs=pd.DataFrame(index=pd.Index([], dtype=object)),
    )
    return Case(path, [f"{path}: empty matrix (0 cells × {N_GENES} genes)"])


def zero_genes(tmp: Path) -> Case:
    path = h5ad(tmp / "nogenes.h5ad", x=np.zeros((N_CELLS, 0), np.float32))
    return Case(path, [f"{path}: empty matrix ({N_CELLS} cells × 0 genes)"])


def indptr_not_monotone(tmp: Path) -> Case:
    path = h5ad(tmp / "ptrdown.h5ad")
    ptr = reference().indptr.astype(np.int64)
    ptr[5] = ptr[7]  # rows 5 and 6 overlap: indptr[6] < indptr[5]
    with h5py.File(path, "r+") as f:
        replace(f, "X/indptr", ptr)
    return Case(
        path,
        [f"{path}: X/indptr[6] = {ptr[6]} is below indptr[5] = {ptr[5]}: row 6 would have a negative length"],
    )


def indptr_too_short(tmp: Path) -> Case:
    path = h5ad(tmp / "ptrshort.h5ad")
    with h5py.File(path, "r+") as f:
        replace(f, "X/indptr", reference().indptr[:-10])
    return Case(
        path, [f"{path}: X/indptr has {N_CELLS + 1 - 10} entries where {N_CELLS} rows need {N_CELLS + 1}"]
    )


def data_shorter_than_indices(tmp: Path) -> Case:
    path = h5ad(tmp / "shortdata.h5ad")
    m = reference()
    with h5py.File(path, "r+") as f:
        replace(f, "X/data", m.data[:-3])
    return Case(
        path, [f"{path}: X/indptr ends at {m.nnz} but X/indices holds {m.nnz} and X/data {m.nnz - 3} values"]
    )


def complex_x(tmp: Path) -> Case:
    path = h5ad(tmp / "complex.h5ad")
    with h5py.File(path, "r+") as f:
        replace(f, "X/data", reference().data.astype(np.complex128) * (1 + 1j))
    return Case(path, [f"{path}: X holds complex numbers (complex128); only real values"])


def long_obs_column(tmp: Path) -> Case:
    name = "g" * 300
    obs = pd.DataFrame(
        {name: pd.Categorical(np.arange(N_CELLS) % 2 == 0).rename_categories(["a", "b"])},
        index=[f"c{i}" for i in range(N_CELLS)],
    )
    path = h5ad(tmp / "longname.h5ad", obs=obs)
    return Case(path, [f"{path}: obs column name 'gggg", "has 300 characters, more than the 100 allowed"])


def tar_of(path: Path, members: list[str]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name in members:
            body = b"cell,G0,G1\nc1,1,2\n"
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    return path


def tar_file_and_folder(tmp: Path) -> Case:
    path = tar_of(tmp / "clash.tar", ["a", "a/b.csv"])
    return Case(
        path, [f"{path}: member 'a/b.csv' needs a folder 'a' where another member is a file; refused"]
    )


def tar_folder_then_file(tmp: Path) -> Case:
    path = tar_of(tmp / "clash2.tar", ["a/b.csv", "a"])
    return Case(path, [f"{path}: member 'a' is a file where other members need a folder of that name"])


def tar_long_member_name(tmp: Path) -> Case:
    path = tar_of(tmp / "longmember.tar", ["x" * 300 + ".csv"])
    return Case(
        path,
        [
            f"{path}: member 'xxxx",
            "has a name part of 304 bytes, longer than the file system allows (255); refused",
        ],
    )


def tar_path_beyond_path_max(tmp: Path) -> Case:
    path = tar_of(tmp / "deep.tar", ["/".join(["d" * 200] * 25) + "/m.csv"])
    return Case(
        path, [f"{path}: member 'dddd", "makes a path longer than the file system allows (4096 bytes)"]
    )


def huge_dense_fill(tmp: Path) -> Case:
    """An 80 GB-logical dense X (200,000 × 100,000 float32), chunked, never written."""
    n_cells, n_genes = 200_000, 100_000
    obs = pd.DataFrame(index=pd.Index([f"c{i}" for i in range(n_cells)]))
    var = pd.DataFrame(index=pd.Index([f"G{j}" for j in range(n_genes)]))
    path = tmp / "fill.h5ad"
    ad.AnnData(obs=obs, var=var).write_h5ad(path)
    with h5py.File(path, "r+") as f:
        if "X" in f:
            del f["X"]
        f.create_dataset(
            "X", shape=(n_cells, n_genes), dtype=np.float32, chunks=(1000, 1000), compression="gzip"
        )
    return Case(
        path,
        [f"{path}: X declares 200,000 × 100,000 dense values (74.5 GiB) but the file stores only 0 bytes"],
    )


def huge_unwritten_indptr(tmp: Path) -> Case:
    """A CSR X declaring 10^9 rows whose indptr was never written: all fill values (0), which
    is self-consistent with no stored values, and would size 8 GB per-cell arrays."""
    path = h5ad(tmp / "hugeptr.h5ad")
    with h5py.File(path, "r+") as f:
        del f["X/indptr"]
        f.create_dataset("X/indptr", shape=(10**9 + 1,), dtype=np.int64, chunks=(1 << 20,))
        replace(f, "X/indices", np.zeros(0, np.int32))
        replace(f, "X/data", np.zeros(0, np.float32))
        f["X"].attrs["shape"] = np.array([10**9, N_GENES])
    return Case(
        path,
        [
            f"{path}: X/indptr declares 1,000,000,001 values (7.5 GiB) but the file stores "
            "only 0 bytes of them"
        ],
    )


def huge_unwritten_obs_index(tmp: Path) -> Case:
    path = h5ad(tmp / "hugeobs.h5ad")
    with h5py.File(path, "r+") as f:
        key = f["obs"].attrs["_index"]
        del f[f"obs/{key}"]
        f.create_dataset(f"obs/{key}", shape=(10**9,), dtype=h5py.string_dtype(), chunks=(1 << 16,))
    return Case(path, [f"{path}: obs/_index has 1,000,000,000 rows but the matrix has {N_CELLS}"])


# ---- item 7 and the attacker's list: more malformed inputs, each one clear line ----


def truncated_h5ad(tmp: Path) -> Case:
    path = h5ad(tmp / "cut.h5ad")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return Case(path, [f"{path}: "])


def string_x(tmp: Path) -> Case:
    path = h5ad(tmp / "strings.h5ad")
    with h5py.File(path, "r+") as f:
        replace(f, "X/data", reference().data.astype("S4"))
    return Case(path, [f"{path}: X holds |S4, not numbers"])


def float_indices(tmp: Path) -> Case:
    path = h5ad(tmp / "floatidx.h5ad")
    with h5py.File(path, "r+") as f:
        replace(f, "X/indices", reference().indices.astype(np.float64))
    return Case(path, [f"{path}: X/indices holds float64, not integer indices"])


def obs_wrong_rows(tmp: Path) -> Case:
    path = h5ad(tmp / "obsrows.h5ad")
    with h5py.File(path, "r+") as f:
        f["X"].attrs["shape"] = np.array([N_CELLS - 1, N_GENES])
        replace(f, "X/indptr", reference().indptr[:-1])
    return Case(path, [f"{path}: X/indptr ends at"])


def obs_rows_differ(tmp: Path) -> Case:
    """The obs table is one row short of X."""
    path = h5ad(tmp / "obsshort.h5ad")
    small = tmp / "small.h5ad"
    h5ad(small, x=counts(N_CELLS - 1))
    with h5py.File(path, "r+") as f, h5py.File(small, "r") as g:
        del f["obs"]
        g.copy("obs", f)
    return Case(path, [f"{path}: obs has {N_CELLS - 1} rows but the matrix has {N_CELLS}"])


def duplicate_genes(tmp: Path) -> Case:
    names = [f"G{j}" for j in range(N_GENES)]
    names[4] = "G3"
    path = h5ad(tmp / "dupgenes.h5ad", var_names=names)
    return Case(path, [f"{path}: duplicate gene name 'G3' at var row 4 and var row 5"])


def empty_cell_id(tmp: Path) -> Case:
    obs = pd.DataFrame(
        {"kind": pd.Categorical(["a", "b"] * (N_CELLS // 2))},
        index=[f"c{i}" if i != 6 else "" for i in range(N_CELLS)],
    )
    path = h5ad(tmp / "emptyid.h5ad", obs=obs)
    return Case(path, [f"{path}: empty cell id at obs row 7"])


def csv_header_only(tmp: Path) -> Case:
    path = tmp / "header.csv"
    path.write_text("cell,G0,G1,G2\n")
    return Case(path, [f"{path}: empty matrix (0 cells × 3 genes)"])


def csv_one_column(tmp: Path) -> Case:
    path = tmp / "onecol.csv"
    path.write_text("cell\nc1\nc2\n")
    return Case(
        path, [f"{path}: empty matrix: the header (line 1) names no gene columns"], ("--format", "csv")
    )


def mtx(tmp: Path, name: str) -> Path:
    x = counts(6, 4)
    return write_mtx(tmp / name, x, [f"c{i}" for i in range(6)], [f"G{j}" for j in range(4)])


def mtx_lines(folder: Path) -> list[str]:
    return (folder / "matrix.mtx").read_text().splitlines()


def mtx_out_of_range(tmp: Path) -> Case:
    folder = mtx(tmp, "mtxrange")
    lines = mtx_lines(folder)
    lines[4] = "9 1 3"
    (folder / "matrix.mtx").write_text("\n".join(lines) + "\n")
    return Case(folder, [f"{folder / 'matrix.mtx'}: line 5: index (9, 1) is outside the 4 × 6 matrix"])


def mtx_header_too_few(tmp: Path) -> Case:
    folder = mtx(tmp, "mtxfew")
    lines = mtx_lines(folder)
    rows, cols, nnz = lines[2].split()
    lines[2] = f"{rows} {cols} 3"
    (folder / "matrix.mtx").write_text("\n".join(lines) + "\n")
    return Case(folder, [f"{folder / 'matrix.mtx'}: more entries than the 3 the header declares (line 7)"])


def mtx_header_too_many(tmp: Path) -> Case:
    folder = mtx(tmp, "mtxmany")
    lines = mtx_lines(folder)
    rows, cols, nnz = lines[2].split()
    lines[2] = f"{rows} {cols} {int(nnz) + 50}"
    (folder / "matrix.mtx").write_text("\n".join(lines) + "\n")
    return Case(
        folder,
        [
            f"{folder / 'matrix.mtx'}: file truncated: the header declares {int(nnz) + 50} "
            f"entries, found {nnz}"
        ],
    )


def parquet_text_gene(tmp: Path) -> Case:
    path = tmp / "text.parquet"
    table = pd.DataFrame({"G0": [1.0, 2.0], "G1": ["a", "b"]}, index=pd.Index(["c1", "c2"], name="cell"))
    table.to_parquet(path)
    return Case(path, [f"{path}: column 'G1' holds string, not numbers"])


def parquet_float16(tmp: Path) -> Case:
    path = tmp / "half.parquet"
    half = pa.array(np.array([1, 2], np.float16), pa.float16())
    pq.write_table(pa.table({"cell": ["c1", "c2"], "G0": half, "G1": [1.0, 0.0]}), path)
    return Case(path, [f"{path}: column 'G0' holds float16 (halffloat), which cannot be read"])


def parquet_null_cell_id(tmp: Path) -> Case:
    path = tmp / "nullid.parquet"
    pq.write_table(pa.table({"cell": ["c1", None], "G0": [1.0, 2.0], "G1": [1.0, 0.0]}), path)
    return Case(path, [f"{path}: empty (null) cell id in column 'cell' at row 2"])


def loom_mismatched_attrs(tmp: Path) -> Case:
    x = counts()
    path = write_loom(tmp / "attrs.loom", x, CELLS, GENES)
    with h5py.File(path, "r+") as f:
        replace(f, "col_attrs/CellID", np.array(CELLS[:-1], dtype="S"))
    return Case(
        path, [f"{path}: col_attrs/CellID has shape ({N_CELLS - 1},) but the matrix has {N_CELLS} cells"]
    )


def tenx_column_out_of_range(tmp: Path) -> Case:
    x = counts()
    path = write_10x_h5(tmp / "tenx.h5", x, CELLS, GENES)
    m = sp.csr_matrix(x)
    k = int(m.indptr[9])  # the first value of row 10
    with h5py.File(path, "r+") as f:
        f["matrix/indices"][k] = -3
    return Case(
        path,
        [
            f"{path}: matrix/indices[{k}] = -3: column -2 at row 10 is outside the matrix "
            f"(columns 1–{N_GENES})"
        ],
    )


def parquet_null(tmp: Path) -> Case:
    """A value error's wording: 1-based row and column, like the index errors."""
    x = counts(4, 3)
    x[2, 1] = np.nan  # pandas writes it as a null
    path = write_parquet(tmp / "nan.parquet", x, ["c1", "c2", "c3", "c4"], ["G0", "G1", "G2"])
    return Case(path, [f"{path}: Null value found at cell c3, gene G1 (row 3, column 2)"])


CLI_CASES: dict[str, Callable[[Path], Case]] = {  # the classes issue 9 lists: the real CLI
    "csr column 999999": csr_column(999_999),
    "csr column -3": csr_column(-3),
    "csr column n_genes": csr_column(N_GENES),
    "csc row out of range": csc_row_out_of_range,
    "random bytes over a gzip data chunk": random_bytes_over_gzip_data,
    "random bytes over an indices chunk": random_bytes_over_indices,
    "zero cells": zero_cells,
    "zero genes": zero_genes,
    "indptr not monotone": indptr_not_monotone,
    "indptr too short": indptr_too_short,
    "data shorter than indices": data_shorter_than_indices,
    "complex X": complex_x,
    "300-character obs column": long_obs_column,
    "tar with a and a/b.csv": tar_file_and_folder,
    "tar member name too long": tar_long_member_name,
    "tar member path beyond PATH_MAX": tar_path_beyond_path_max,
    "80 GB of fill values": huge_dense_fill,
}
LIBRARY_CASES: dict[str, Callable[[Path], Case]] = {  # more probes: the same ingest, in this process
    "random bytes over an indptr chunk": random_bytes_over_indptr,
    "tar with a/b.csv and a": tar_folder_then_file,
    "truncated h5ad": truncated_h5ad,
    "string X": string_x,
    "float indices": float_indices,
    "shape one row short, indptr cut to match": obs_wrong_rows,
    "obs one row short": obs_rows_differ,
    "duplicate gene names": duplicate_genes,
    "empty cell id": empty_cell_id,
    "csv header only": csv_header_only,
    "csv one column": csv_one_column,
    "mtx index out of range": mtx_out_of_range,
    "mtx header declares fewer entries": mtx_header_too_few,
    "mtx header declares more entries": mtx_header_too_many,
    "parquet text gene column": parquet_text_gene,
    "loom attrs of the wrong length": loom_mismatched_attrs,
    "10x column -3": tenx_column_out_of_range,
    "parquet null": parquet_null,
    "parquet float16 gene column": parquet_float16,
    "parquet null cell id": parquet_null_cell_id,
    "indptr of 10^9 rows never written": huge_unwritten_indptr,
    "obs index of 10^9 rows never written": huge_unwritten_obs_index,
}


Run = tuple[Case, Path, "subprocess.CompletedProcess[str]"]
"""A CLI case, its storage root, and the finished process."""


def build(tmp: Path, make: Callable[[Path], Case]) -> Case:
    with warnings.catch_warnings():  # anndata warns about what the corpus does on purpose
        warnings.simplefilter("ignore")
        return make(tmp)


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every CLI case built, then ingested by the CLI, each in a process of its own (forked
    from one that imported widecube once), a few at a time."""
    root = tmp_path_factory.mktemp("corpus")
    built = {}
    for i, (name, make) in enumerate(CLI_CASES.items()):
        folder = root / f"case{i:02d}"
        folder.mkdir()
        built[name] = (build(folder, make), folder / "store")
    runs = [
        (
            {"WIDECUBE_STORAGE": str(store), "WIDECUBE_JOB_BACKOFF": "0", "WIDECUBE_CATALOG_URL": None},
            ["ingest", str(case.path), "--dataset", "d", *case.args],
        )
        for case, store in built.values()
    ]
    done = forked(runs)
    return {name: (case, store, run) for (name, (case, store)), run in zip(built.items(), done, strict=True)}


def assert_nothing_published_or_left(store: Path) -> None:
    """No version of ``d`` got past FAILED, and no snapshot, staging or work folder remains."""
    catalog_file = store / "catalog.sqlite"
    if catalog_file.exists():
        with Catalog(f"sqlite:///{catalog_file}") as catalog:
            states = [v.status for v in catalog.versions("d")]
            assert all(d.current is None for d in catalog.datasets())
        assert states and all(s == VersionStatus.FAILED for s in states), states
    for folder in ("staging", "work", "datasets"):
        left = list((store / folder).rglob("*")) if (store / folder).exists() else []
        assert not left, (folder, left[:5])


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("name", list(CLI_CASES))
def test_the_cli_refuses_in_one_clear_line(name: str, cli_runs: dict[str, Run]) -> None:
    case, store, run = cli_runs[name]
    assert run.returncode == 1, (run.returncode, run.stdout, run.stderr)  # 1, never a signal (< 0)
    assert "Traceback" not in run.stderr + run.stdout
    lines = without_progress(run.stderr)
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in case.expect:
        assert fragment in lines[0], (fragment, lines[0])
    assert_nothing_published_or_left(store)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LIBRARY_CASES))
def test_ingest_refuses_with_a_clear_input_error(name: str, tmp_path: Path) -> None:
    case = build(tmp_path, LIBRARY_CASES[name])
    store = tmp_path / "store"
    fmt = case.args[1] if case.args[:1] == ("--format",) else None
    with pytest.raises(InputError) as err:
        ingest(case.path, dataset="d", format=fmt, settings=Settings(storage=store, job_backoff=0))
    text = str(err.value)
    assert "\n" not in text.strip()
    for fragment in case.expect:
        assert fragment in text, (fragment, text)
    assert_nothing_published_or_left(store)


@pytest.mark.subprocess
def test_negative_max_unpacked_is_a_usage_error(tmp_path: Path) -> None:
    archive = tar_of(tmp_path / "ok.tar", ["m.csv"])
    env = {"WIDECUBE_STORAGE": str(tmp_path / "store"), "WIDECUBE_CATALOG_URL": None}
    run = process(env, "ingest", str(archive), "--dataset", "d", "--max-unpacked", "-5")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "--max-unpacked" in run.stderr and "greater than or equal to" in run.stderr
    assert not (tmp_path / "store" / "datasets").exists()


@pytest.mark.slow
def test_10x_index_beyond_32_bits_is_not_wrapped_into_range(tmp_path: Path) -> None:
    """Cell Ranger's int64 indices are narrowed to int32 while inflating: a huge index must
    stay out of range (saturated), not wrap around to a valid gene."""
    x = counts()
    path = write_10x_h5(tmp_path / "wide.h5", x, CELLS, GENES)
    m = sp.csr_matrix(x)
    k = int(m.indptr[20])  # the first value of row 21
    with h5py.File(path, "r+") as f:
        f["matrix/indices"][k] = 2**32 + 1  # int32(2**32 + 1) would be column 2
    want = rf"matrix/indices\[{k}\] = \d+: column \d+ at row 21 is outside"
    with pytest.raises(UnreadableInput, match=want):
        ingest(path, dataset="d", settings=Settings(storage=tmp_path / "store"))


def _spill(tmp: Path, n_cells: int = 3, n_genes: int = 4) -> GeneSpill:
    return GeneSpill(
        tmp,
        n_cells=n_cells,
        n_genes=n_genes,
        dtype=np.dtype(np.float32),
        expected_nnz=10,
        slab_bytes=1 << 20,
        where="m.h5ad",
    )


def _unchecked_csr(
    indptr: list[int], indices: list[int], data: list[float], shape: tuple[int, int]
) -> sp.csr_matrix:
    """A CSR scipy accepts without a full check (as a reader bug could hand over)."""
    m = sp.csr_matrix((2, 2), dtype=np.float32)  # filled in by hand: the constructor would check
    m.data, m.indices, m.indptr = (
        np.array(data, np.float32),
        np.array(indices, np.int32),
        np.array(indptr, np.int64),
    )
    m._shape = shape
    return m


@pytest.mark.parametrize(("index", "column"), [(4, 5), (-3, -2), (999_999, 1_000_000)])
def test_the_scatter_kernel_refuses_what_a_reader_let_through(
    index: int, column: int, tmp_path: Path
) -> None:
    spill = _spill(tmp_path)
    block = Block(1, 0, _unchecked_csr([0, 1, 3], [0, 1, index], [1.0, 2.0, 3.0], (2, 4)))
    with pytest.raises(UnreadableInput) as err:
        spill.add(block)
    want = f"m.h5ad: corrupt matrix: column {column} at row 3 is outside the matrix (columns 1–4)"
    assert str(err.value) == want
    assert spill.cell_total.sum() == 0 and spill.nnz == 0  # nothing was scattered
    spill.cleanup()


def test_the_scatter_kernel_refuses_bad_pointers_and_rows(tmp_path: Path) -> None:
    spill = _spill(tmp_path)
    bad_ptr = Block(0, 0, _unchecked_csr([0, 2, 1], [0, 1], [1.0, 2.0], (2, 4)))
    with pytest.raises(UnreadableInput, match="the stored values of row 2 are out of order"):
        spill.add(bad_ptr)
    outside = Block(2, 0, _unchecked_csr([0, 1, 2], [0, 1], [1.0, 2.0], (2, 4)))
    with pytest.raises(UnreadableInput, match=r"a block of rows 3–4 lies outside the matrix \(rows 1–3\)"):
        spill.add(outside)
    assert spill.nnz == 0
    spill.cleanup()


@pytest.mark.parametrize(("bad", "what"), [(np.nan, "NaN"), (-np.inf, "infinite value")])
def test_the_count_refuses_a_value_that_is_not_finite(bad: float, what: str, tmp_path: Path) -> None:
    """Pass 1 checks values in its count: the block's first NaN or infinity is refused before
    anything is scattered, named by row and column, or with its cell and gene by the check
    the spill is given (``_pass.check_finite``)."""
    block = Block(1, 0, _unchecked_csr([0, 1, 3], [0, 1, 3], [1.0, 2.0, bad], (2, 4)))
    spill = _spill(tmp_path)
    with pytest.raises(InvalidValue) as err:
        spill.add(block)
    assert str(err.value) == "m.h5ad: NaN or infinite value found at row 3, column 4"
    assert spill.cell_total.sum() == 0 and spill.nnz == 0
    spill.cleanup()
    source = SimpleNamespace(shape=(3, 4), path=Path("m.h5ad"))
    named = _spill(tmp_path)
    named.name_value = check_finite(source, ["a", "b", "c"], ["w", "x", "y", "z"])  # type: ignore[arg-type]
    with pytest.raises(InvalidValue) as err:
        named.add(block)
    assert str(err.value) == f"m.h5ad: {what} found at row 3 (cell 'c'), column 4 (gene 'z')"
    assert named.nnz == 0
    named.cleanup()


def test_a_damaged_spill_file_is_an_io_error_not_a_wild_write(tmp_path: Path) -> None:
    spill = _spill(tmp_path)
    spill.add(Block(0, 0, _unchecked_csr([0, 2, 3, 4], [0, 3, 1, 2], [1.0, 2.0, 3.0, 4.0], (3, 4))))
    spill.close()
    (bucket,) = spill.dir.iterdir()  # one record: a 32-byte header, then genes, cells, values
    raw = bytearray(bucket.read_bytes())
    assert raw[40:44] == np.array([0, 0, 1, 2], dtype=np.uint8).tobytes()  # the cells, 8 bits
    raw[40:44] = np.array([7, 0, 1, 2], dtype=np.uint8).tobytes()  # cell 8 of 3
    bucket.write_bytes(raw)
    with pytest.raises(OSError, match="spill file damaged: .* entry 0 is outside genes 0..3 or cells 0..2"):
        list(spill.slabs())
    spill.cleanup()
