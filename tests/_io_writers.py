"""Test inputs in every format, written with each format's own tools (not with widecube).

pandas writes CSV/TSV/Parquet, scipy.io.mmwrite the MatrixMarket file of a 10x MTX folder,
h5py the 10x v3 HDF5 layout and Loom (as Cell Ranger and loompy lay them out), and
zipfile/tarfile the archives.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp


def frame(x: np.ndarray, cells: list[str], genes: list[str]) -> pd.DataFrame:
    """The matrix as a DataFrame of integers when its values are integral."""
    df = pd.DataFrame(x, index=pd.Index(cells, name="cell"), columns=genes)
    return df.astype(np.int64) if np.array_equal(x, np.round(x)) else df


def write_csv(path: Path, x: np.ndarray, cells: list[str], genes: list[str], *, sep: str = ",") -> Path:
    """Cells as rows, genes as columns, the cell id first; gzip when ``path`` ends in .gz."""
    frame(x, cells, genes).to_csv(path, sep=sep, compression="gzip" if path.suffix == ".gz" else None)
    return path


def write_parquet(
    path: Path, x: np.ndarray, cells: list[str], genes: list[str], *, index: bool = True
) -> Path:
    df = frame(x, cells, genes)
    (df if index else df.reset_index()).to_parquet(path, index=index, row_group_size=50)
    return path


def gene_ids(genes: list[str]) -> list[str]:
    return [f"ENSG{j:011d}" for j in range(len(genes))]


def write_mtx(
    folder: Path,
    x: np.ndarray,
    cells: list[str],
    genes: list[str],
    *,
    order: str = "cell",
    gz: bool = False,
    prefix: str = "",
    legacy: bool = False,
) -> Path:
    """A 10x MTX folder; entries sorted by cell (as Cell Ranger writes), by gene, or shuffled."""
    folder.mkdir(parents=True, exist_ok=True)
    genes_by_cells = np.ascontiguousarray(x.T).astype(np.int64)
    if order == "cell":
        stored: sp.spmatrix = sp.csc_matrix(genes_by_cells)
    elif order == "gene":
        stored = sp.csr_matrix(genes_by_cells)
    else:
        coo = sp.coo_matrix(genes_by_cells)
        perm = np.random.default_rng(1).permutation(coo.nnz)
        stored = sp.coo_matrix((coo.data[perm], (coo.row[perm], coo.col[perm])), shape=coo.shape)
    z = ".gz" if gz else ""
    matrix = folder / f"{prefix}matrix.mtx"
    scipy.io.mmwrite(matrix, stored, field="integer")
    features = pd.DataFrame({"id": gene_ids(genes), "name": genes, "type": "Gene Expression"})
    if legacy:
        features[["id", "name"]].to_csv(folder / f"{prefix}genes.tsv{z}", sep="\t", header=False, index=False)
    else:
        features.to_csv(folder / f"{prefix}features.tsv{z}", sep="\t", header=False, index=False)
    pd.Series(cells).to_csv(folder / f"{prefix}barcodes.tsv{z}", header=False, index=False)
    if gz:
        with matrix.open("rb") as src, gzip.open(f"{matrix}.gz", "wb") as out:
            shutil.copyfileobj(src, out)
        matrix.unlink()
    return folder


def write_10x_h5(
    path: Path, x: np.ndarray, cells: list[str], genes: list[str], *, names: list[str] | None = None
) -> Path:
    """The Cell Ranger v3 layout: genes × cells CSC in group ``matrix`` plus ``features``."""
    m = sp.csc_matrix(np.ascontiguousarray(x.T).astype(np.int32))
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        for key, values in (
            ("data", m.data),
            ("indices", m.indices.astype(np.int64)),
            ("indptr", m.indptr.astype(np.int64)),
        ):
            g.create_dataset(key, data=values, compression="gzip", chunks=True)
        g["shape"] = np.array(m.shape, dtype=np.int32)
        g["barcodes"] = np.array(cells, dtype="S")
        feats = g.create_group("features")
        feats["id"] = np.array(gene_ids(genes), dtype="S")
        feats["name"] = np.array(names or genes, dtype="S")
        feats["feature_type"] = np.array(["Gene Expression"] * len(genes), dtype="S")
        feats["genome"] = np.array(["GRCh38"] * len(genes), dtype="S")
        feats["_all_tag_keys"] = np.array([b"genome"])
    return path


def write_loom(
    path: Path,
    x: np.ndarray,
    cells: list[str],
    genes: list[str],
    obs: pd.DataFrame | None = None,
    *,
    layers: dict[str, np.ndarray] | None = None,
) -> Path:
    """Loom 3: genes × cells ``/matrix``, ``row_attrs`` Gene/Accession, ``col_attrs`` CellID + obs."""
    with h5py.File(path, "w") as f:
        chunked = {"chunks": (16, 16), "compression": "gzip"} if min(x.shape) >= 16 else {}
        f.create_dataset("matrix", data=np.ascontiguousarray(x.T).astype(np.float32), **chunked)
        lay = f.create_group("layers")
        for name, values in (layers or {}).items():
            lay.create_dataset(name, data=np.ascontiguousarray(values.T), **chunked)
        rows, cols = f.create_group("row_attrs"), f.create_group("col_attrs")
        rows["Gene"] = np.array(genes, dtype="S")
        rows["Accession"] = np.array(gene_ids(genes), dtype="S")
        cols["CellID"] = np.array(cells, dtype=h5py.string_dtype())
        for column in obs.columns if obs is not None else []:
            series = obs[column]
            numeric = pd.api.types.is_numeric_dtype(series.dtype)
            cols[column] = series.to_numpy() if numeric else np.array(series.astype(str), dtype="S")
        f.attrs["LOOM_SPEC_VERSION"] = "3.0.0"
    return path


def write_obs(path: Path, obs: pd.DataFrame, *, sep: str = ",") -> Path:
    """Cell metadata with the cell id as the first column (CSV, TSV or, by suffix, Parquet)."""
    table = obs.copy()
    for column in table.columns:
        if isinstance(table[column].dtype, pd.CategoricalDtype):
            table[column] = table[column].astype(str)
    if path.suffix == ".parquet":
        table.to_parquet(path)
    else:
        table.to_csv(path, sep=sep, index_label="cell_id")
    return path
