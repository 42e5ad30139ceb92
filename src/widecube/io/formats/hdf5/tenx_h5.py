"""The 10x Genomics HDF5 reader (``filtered_feature_bc_matrix.h5``, v3; v2 too).

Cell Ranger stores the genes × cells matrix column-compressed: ``indptr`` runs over cells,
so it *is* a CSR of cells × genes and row blocks stream straight from the file, a slab of
``indptr``/``indices``/``data`` at a time. v3 keeps the matrix in group ``matrix`` with
``features/{id,name,feature_type,genome}``; v2 has one group per genome with ``genes`` and
``gene_names`` (pick a genome with ``--layer GENOME`` when there are several). var is
indexed by gene symbol (made unique when symbols repeat), with ``gene_ids`` and
``feature_types`` kept; obs by barcode.

    >>> with TenxH5Source(Path("filtered_feature_bc_matrix.h5")) as src: ...  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ....errors import InputError, UnreadableInput
from ..._checks import (
    check_allocated,
    check_compressed_layout,
    check_index_dtype,
    check_shape,
    check_unique,
    check_value_dtype,
    unique_gene_names,
)
from ..._readers import ReaderSpec, register_reader
from ..._sniff import hdf5_keys
from ..._source import Block, MatrixSource
from .._compressed import Sliceable, iter_row_slabs
from ._chunks import inflating_reader

__all__ = ["TenxH5Source"]

_MATRIX = {"barcodes", "data", "indices", "indptr", "shape"}


def _groups(f: h5py.File) -> tuple[str, list[str]]:
    """("v3", ["matrix"]) or ("v2", [genome, ...]) or ("", []) for anything else."""
    g = f.get("matrix")
    if isinstance(g, h5py.Group) and _MATRIX | {"features"} <= set(g.keys()):
        return "v3", ["matrix"]
    genomes = [k for k, g in f.items() if isinstance(g, h5py.Group) and _MATRIX | {"genes"} <= set(g.keys())]
    return ("v2", genomes) if genomes else ("", [])


def _sniff(path: Path) -> bool:
    keys = hdf5_keys(path)
    if not keys or {"obs", "var"} <= keys:
        return False
    try:
        with h5py.File(path, "r") as f:
            return bool(_groups(f)[0])
    except (OSError, ValueError):
        return False


class _Int32Indices:
    """Column indices read by slices as int32: Cell Ranger stores int64, and letting HDF5
    convert while reading is faster than reading 8 bytes a value and converting after."""

    def __init__(self, ds: h5py.Dataset) -> None:
        self.ds = ds

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop = int(key.start), min(int(key.stop), self.ds.shape[0])
        out = np.empty(max(0, stop - start), dtype=np.int32)
        if len(out):
            self.ds.read_direct(out, np.s_[start:stop])
        return out


def _threads() -> int:
    """Inflating threads: the cores this process may use (at most 8)."""
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2))


def _strings(ds: Any) -> np.ndarray:
    return np.asarray(ds.asstr()[...], dtype=object)


class TenxH5Source(MatrixSource):
    """An opened 10x HDF5 matrix (v3, or one genome of a v2 file)."""

    format = "10x-h5"

    def __init__(self, path: Path, *, layer: str | None = None) -> None:
        super().__init__(path)
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise UnreadableInput(f"{path}: not a readable HDF5 file ({exc})") from exc
        try:
            self._open(layer)
        except InputError:
            self._file.close()
            raise
        except (OSError, KeyError, ValueError, TypeError, IndexError) as exc:
            self._file.close()
            raise UnreadableInput(f"{path}: not a readable 10x matrix ({exc})") from exc
        except BaseException:
            self._file.close()
            raise

    def _open(self, layer: str | None) -> None:
        version, groups = _groups(self._file)
        if not version:
            raise UnreadableInput(
                f"{self.path}: no 10x matrix group (expected 'matrix' with "
                "barcodes, data, indices, indptr, shape, features)"
            )
        if version == "v2" and layer not in (None, "counts"):
            if layer not in groups:
                raise UnreadableInput(f"{self.path}: no genome {layer!r} (genomes: {', '.join(groups)})")
            groups = [layer]
        elif layer not in (None, "counts"):
            raise UnreadableInput(f"{self.path}: a 10x matrix has no layers (asked for {layer!r})")
        if len(groups) > 1:
            raise UnreadableInput(
                f"{self.path}: several genomes ({', '.join(groups)}); pick one with --layer"
            )
        g = self._group = self._file[groups[0]]
        shape = np.asarray(g["shape"][...]).reshape(-1)
        if len(shape) != 2 or shape.dtype.kind not in "iu" or int(shape.min()) < 0:
            raise UnreadableInput(
                f"{self.path}: {g.name.lstrip('/')}/shape is {shape.tolist()}, not two sizes (genes, cells)"
            )
        n_genes, n_cells = int(shape[0]), int(shape[1])
        check_shape(self.path, n_cells, n_genes)
        name = g.name.lstrip("/")
        check_value_dtype(self.path, f"{name}/data", g["data"].dtype)
        check_index_dtype(self.path, f"{name}/indices", g["indices"].dtype)
        check_index_dtype(self.path, f"{name}/indptr", g["indptr"].dtype)
        indptr = g["indptr"]
        n_ptr = int(indptr.shape[0]) if indptr.ndim == 1 else -1
        check_allocated(
            self.path, f"{name}/indptr", max(0, n_ptr), indptr.dtype.itemsize, indptr.id.get_storage_size()
        )
        check_compressed_layout(
            self.path,
            name,
            major="row",
            n_major=n_cells,
            n_ptr=n_ptr,
            first=int(indptr[0]) if n_ptr > 0 else 0,
            last=int(indptr[-1]) if n_ptr > 0 else 0,
            n_indices=len(g["indices"]),
            n_data=len(g["data"]),
        )
        self._nnz = int(indptr[-1])
        self._shape = (n_cells, n_genes)
        if len(g["barcodes"]) != n_cells:  # before reading it: a lying length could be huge
            raise UnreadableInput(
                f"{self.path}: matrix is {n_genes} × {n_cells} but it names {len(g['barcodes'])} barcodes"
            )
        barcodes = pd.Index(_strings(g["barcodes"]), dtype=object)
        if version == "v3":
            feats = g["features"]
            ids, symbols = _strings(feats["id"]), _strings(feats["name"])
            types = _strings(feats["feature_type"]) if "feature_type" in feats else "Gene Expression"
        else:
            ids, symbols = _strings(g["genes"]), _strings(g.get("gene_names", g["genes"]))
            types = "Gene Expression"
        if len(barcodes) != n_cells or len(ids) != n_genes or len(symbols) != n_genes:
            raise UnreadableInput(
                f"{self.path}: matrix is {n_genes} × {n_cells} but it names "
                f"{len(ids)} features and {len(barcodes)} barcodes"
            )
        check_unique(barcodes, where=self.path, what="barcode", place=lambda i: f"barcodes entry {i + 1}")
        names = unique_gene_names(
            pd.Index(symbols, dtype=object),
            pd.Index(ids, dtype=object),
            where=self.path,
            place=lambda i: f"features/name entry {i + 1}",
        )
        self._obs = pd.DataFrame(index=barcodes)
        self._var = pd.DataFrame({"gene_ids": ids, "feature_types": types}, index=names)
        if version == "v3" and "genome" in g["features"]:
            self._var["genome"] = _strings(g["features"]["genome"])

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(str(self._group["data"].dtype))

    @property
    def nnz_hint(self) -> int | None:
        return self._nnz

    def obs(self) -> pd.DataFrame:
        return self._obs.copy()

    def var(self) -> pd.DataFrame:
        return self._var.copy()

    def iter_blocks(self, *, block_nnz: int, columns: tuple[int, int] | None = None) -> Iterator[Block]:
        return self.iter_rows(0, self._shape[0], block_nnz=block_nnz)

    @property
    def row_ranges(self) -> bool:
        """Cells are the stored majors: a range of cells is read alone."""
        return True

    def iter_rows(self, start: int, stop: int, *, block_nnz: int, ring: int = 0) -> Iterator[Block]:
        g = self._group
        narrow = g["indices"].dtype != np.int32 and self._shape[1] < 2**31
        pool = ThreadPoolExecutor(_threads(), thread_name_prefix="widecube-inflate")
        try:
            indices: Sliceable | None = inflating_reader(
                g["indices"], pool, where=self.path, dtype=np.int32 if narrow else None
            )
            if indices is None:
                indices = _Int32Indices(g["indices"]) if narrow else g["indices"]
            data: Sliceable | None = inflating_reader(g["data"], pool, where=self.path)
            if data is None:
                data = g["data"]
            yield from iter_row_slabs(
                g["indptr"],
                indices,
                data,
                n_rows=self._shape[0],
                n_cols=self._shape[1],
                nnz=self._nnz,
                block_nnz=block_nnz,
                where=self.path,
                name=g.name.lstrip("/"),
                start=start,
                stop=stop,
            )
        except OSError as exc:
            raise UnreadableInput(f"{self.path}: read failed, file truncated or corrupt ({exc})") from exc
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()


register_reader(ReaderSpec("10x-h5", _sniff, TenxH5Source))
