"""The h5ad reader: streams row (or column) blocks of X, a layer or raw.X with h5py.

X may be stored as CSR, CSC or dense, float or integer. Only the block being read is in
memory; obs and var are read through anndata's element reader. Nothing in the file is
trusted: the layout of a sparse X is checked at open and every slab of pointers and indices
as it streams (:mod:`.._compressed`), a dense X may not declare far more values than the file
stores (:func:`~widecube.io._checks.check_dense_storage`), and an HDF5 read error is an
:class:`~widecube.errors.UnreadableInput` naming the file. Example::

    >>> with open_matrix("pbmc.h5ad") as src:                       # doctest: +SKIP
    ...     for block in src.iter_blocks(block_nnz=8_000_000): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ....errors import InputError, UnreadableInput
from ..._checks import (
    check_allocated,
    check_compressed_layout,
    check_dense_storage,
    check_index_dtype,
    check_shape,
    check_unique,
    check_value_dtype,
)
from ..._readers import ReaderSpec, register_reader
from ..._source import Block, MatrixSource
from .._compressed import csr_block, iter_slabs

__all__ = ["H5adSource"]


def _sniff(path: Path) -> bool:
    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            return "obs" in f and "var" in f
    except OSError:
        return False


class H5adSource(MatrixSource):
    """An opened .h5ad file; ``layer`` is None (X), ``"raw"`` (raw.X) or a layer name."""

    format = "h5ad"

    def __init__(self, path: Path, *, layer: str | None = None) -> None:
        super().__init__(path)
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise UnreadableInput(f"{path}: not a readable HDF5/h5ad file ({exc})") from exc
        try:
            self._elem, self._var_group = self._locate(layer)
            self._kind, self._shape, self._dtype = self._describe(self._elem)
            self._nnz = self._check_layout(self._elem)
        except InputError:
            self._file.close()
            raise
        except (OSError, KeyError, ValueError, TypeError, IndexError) as exc:
            self._file.close()
            raise UnreadableInput(
                f"{path}: not a readable h5ad matrix: truncated or corrupt ({exc})"
            ) from exc
        except BaseException:
            self._file.close()
            raise

    def _locate(self, layer: str | None) -> tuple[Any, str]:
        f, where = self._file, self.path
        layers = sorted(f["layers"].keys()) if "layers" in f else []
        if layer is None:
            if "X" not in f:
                raise UnreadableInput(
                    f"{where}: has no X matrix (layers: {', '.join(layers) or 'none'}); name one with --layer"
                )
            return f["X"], "var"
        if layer == "raw":
            if "raw" not in f or "X" not in f["raw"]:
                raise UnreadableInput(f"{where}: has no raw.X")
            return f["raw/X"], "raw/var"
        if layer not in layers:
            raise UnreadableInput(
                f"{where}: no layer {layer!r} (layers: {', '.join(layers) or 'none'}; also 'raw' for raw.X)"
            )
        return f["layers"][layer], "var"

    def _describe(self, elem: Any) -> tuple[str, tuple[int, int], np.dtype]:
        name = elem.name.lstrip("/")
        if isinstance(elem, h5py.Dataset):
            if elem.ndim != 2:
                raise UnreadableInput(f"{self.path}: {name} is not a 2-D matrix")
            kind, shape, dtype = "dense", (int(elem.shape[0]), int(elem.shape[1])), elem.dtype
        else:
            enc = elem.attrs.get("encoding-type", elem.attrs.get("h5sparse_format", ""))
            enc = enc.decode() if isinstance(enc, bytes) else str(enc)
            sparse = {"csr_matrix": "csr", "csr": "csr", "csc_matrix": "csc", "csc": "csc"}
            found = sparse.get(enc)
            missing = {"data", "indices", "indptr"} - set(elem.keys())
            if found is None or missing:
                raise UnreadableInput(
                    f"{self.path}: {name} is not a CSR/CSC/dense matrix (encoding-type {enc!r})"
                )
            raw = np.asarray(elem.attrs.get("shape", elem.attrs.get("h5sparse_shape", [])))
            if raw.shape != (2,) or raw.dtype.kind not in "iu" or int(raw.min()) < 0:
                raise UnreadableInput(f"{self.path}: {name} has shape {raw.tolist()}, not two sizes")
            kind, shape = found, (int(raw[0]), int(raw[1]))
            for key in ("data", "indices", "indptr"):
                if not isinstance(elem[key], h5py.Dataset) or elem[key].ndim != 1:
                    raise UnreadableInput(f"{self.path}: {name}/{key} is not a 1-D array")
            dtype = elem["data"].dtype
        check_value_dtype(self.path, name, dtype)
        check_shape(self.path, *shape)
        return kind, shape, np.dtype(dtype)

    def _check_layout(self, elem: Any) -> int | None:
        """The stored values of a sparse X (its layout checked); None for a dense X."""
        name = elem.name.lstrip("/")
        if self._kind == "dense":
            check_dense_storage(self.path, name, self._shape, self._dtype, elem.id.get_storage_size())
            return None
        indptr, indices, data = elem["indptr"], elem["indices"], elem["data"]
        check_index_dtype(self.path, f"{name}/indices", indices.dtype)
        check_index_dtype(self.path, f"{name}/indptr", indptr.dtype)
        n_ptr = int(indptr.shape[0])
        check_allocated(
            self.path, f"{name}/indptr", n_ptr, indptr.dtype.itemsize, indptr.id.get_storage_size()
        )
        major = "row" if self._kind == "csr" else "column"
        n_major = self._shape[0] if self._kind == "csr" else self._shape[1]
        check_compressed_layout(
            self.path,
            name,
            major=major,
            n_major=n_major,
            n_ptr=n_ptr,
            first=int(indptr[0]) if n_ptr else 0,
            last=int(indptr[-1]) if n_ptr else 0,
            n_indices=int(indices.shape[0]),
            n_data=int(data.shape[0]),
        )
        return int(indptr[-1])

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def nnz_hint(self) -> int | None:
        return self._nnz

    @property
    def layout(self) -> str:
        """How X is stored: ``csr``, ``csc`` or ``dense``."""
        return self._kind

    def obs(self) -> pd.DataFrame:
        return self._frame("obs", self._shape[0], "cell id")

    def var(self) -> pd.DataFrame:
        return self._frame(self._var_group, self._shape[1], "gene name")

    def obsm(self) -> dict[str, np.ndarray]:
        """Dense 2-D obsm entries with one row per cell (sparse or odd-shaped ones skipped)."""
        out: dict[str, np.ndarray] = {}
        group = self._file.get("obsm")
        if not isinstance(group, h5py.Group):
            return out
        try:
            return self._read_obsm(group, out)
        except OSError as exc:
            raise UnreadableInput(
                f"{self.path}: cannot read obsm, file truncated or corrupt ({exc})"
            ) from exc

    def _read_obsm(self, group: h5py.Group, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for key, elem in group.items():
            if (
                isinstance(elem, h5py.Dataset)
                and elem.ndim == 2
                and elem.shape[0] == self._shape[0]
                and elem.dtype.kind in "iuf"
            ):
                out[str(key)] = np.asarray(elem[...], dtype=np.float32)
        return out

    def _frame(self, key: str, n: int, what: str) -> pd.DataFrame:
        if key not in self._file:
            raise UnreadableInput(f"{self.path}: has no {key} table")
        self._check_rows(key, n)
        import anndata  # on first use: a second of imports (anndata, dask) no other path needs

        try:
            frame = anndata.io.read_elem(self._file[key])
        except Exception as exc:  # anndata raises many kinds for malformed tables
            raise UnreadableInput(f"{self.path}: cannot read {key}: {exc}") from exc
        if not isinstance(frame, pd.DataFrame):
            raise UnreadableInput(f"{self.path}: {key} is not a table")
        if len(frame) != n:
            raise UnreadableInput(f"{self.path}: {key} has {len(frame)} rows but the matrix has {n}")
        frame.index = frame.index.astype(str)
        check_unique(frame.index, where=self.path, what=what, place=lambda i: f"{key} row {i + 1}")
        return frame

    def _check_rows(self, key: str, n: int) -> None:
        """No array in the table is longer than the matrix, checked before anything is read
        (a table declaring 10^10 rows, never written, would be read whole)."""
        elem = self._file[key]
        if not isinstance(elem, h5py.Group):
            raise UnreadableInput(f"{self.path}: {key} is not a table")
        too_long: list[str] = []

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset) and obj.ndim >= 1 and obj.shape[0] > n and not too_long:
                too_long.append(f"{key}/{name} has {obj.shape[0]:,} rows but the matrix has {n:,}")

        elem.visititems(visit)
        if too_long:
            raise UnreadableInput(f"{self.path}: {too_long[0]}")

    def iter_blocks(self, *, block_nnz: int, columns: tuple[int, int] | None = None) -> Iterator[Block]:
        lo, hi = columns if columns is not None else (0, self._shape[1])
        try:
            if self._kind == "dense":
                yield from self._iter_dense(block_nnz, lo, hi)
                return
            major = "row" if self._kind == "csr" else "column"
            start, stop = (0, self._shape[0]) if major == "row" else (lo, hi)
            n_rows, n_cols = self._shape
            indptr, indices, data = (self._elem[k] for k in ("indptr", "indices", "data"))
            for slab in iter_slabs(
                indptr,
                indices,
                data,
                n_minor=n_cols if major == "row" else n_rows,
                nnz=self._nnz or 0,
                block_nnz=block_nnz,
                where=self.path,
                name=self._elem.name.lstrip("/"),
                major=major,
                start=start,
                stop=stop,
            ):
                yield csr_block(slab, n_rows=n_rows, n_cols=n_cols, major=major, where=self.path)
        except OSError as exc:
            raise UnreadableInput(f"{self.path}: read failed, file truncated or corrupt ({exc})") from exc

    def _iter_dense(
        self, block_nnz: int, lo: int, hi: int, start: int = 0, stop: int | None = None
    ) -> Iterator[Block]:
        stop = self._shape[0] if stop is None else stop
        step = max(1, block_nnz // max(1, hi - lo))
        for r0 in range(start, stop, step):
            dense = self._elem[r0 : min(stop, r0 + step), lo:hi]
            yield Block(r0, lo, sp.csr_matrix(dense))

    @property
    def row_ranges(self) -> bool:
        """CSR and dense X read a range of rows alone; CSC would read every column."""
        return self._kind != "csc"

    def iter_rows(self, start: int, stop: int, *, block_nnz: int, ring: int = 0) -> Iterator[Block]:
        if not self.row_ranges:
            yield from super().iter_rows(start, stop, block_nnz=block_nnz)
            return
        try:
            if self._kind == "dense":
                yield from self._iter_dense(block_nnz, 0, self._shape[1], start, stop)
                return
            n_rows, n_cols = self._shape
            indptr, indices, data = (self._elem[k] for k in ("indptr", "indices", "data"))
            for slab in iter_slabs(
                indptr,
                indices,
                data,
                n_minor=n_cols,
                nnz=self._nnz or 0,
                block_nnz=block_nnz,
                where=self.path,
                name=self._elem.name.lstrip("/"),
                major="row",
                start=start,
                stop=stop,
                ring=ring,
            ):
                yield csr_block(slab, n_rows=n_rows, n_cols=n_cols, major="row", where=self.path)
        except OSError as exc:
            raise UnreadableInput(f"{self.path}: read failed, file truncated or corrupt ({exc})") from exc

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()


register_reader(ReaderSpec("h5ad", _sniff, H5adSource))
