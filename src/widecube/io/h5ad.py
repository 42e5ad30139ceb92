"""The h5ad reader: streams row (or column) blocks of X, a layer or raw.X with h5py.

X may be stored as CSR, CSC or dense, float or integer. Only the block being read is in
memory; obs and var are read through anndata's element reader. Example::

    >>> with open_matrix("pbmc.h5ad") as src:                       # doctest: +SKIP
    ...     for block in src.iter_blocks(block_nnz=8_000_000): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anndata
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import UnreadableInput
from ._base import Block, MatrixSource
from ._registry import ReaderSpec, register_reader

__all__ = ["H5adSource"]

_INDPTR_WINDOW = 1 << 16


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
        except BaseException:
            self._file.close()
            raise

    def _locate(self, layer: str | None) -> tuple[Any, str]:
        f, where = self._file, self.path
        layers = sorted(f["layers"].keys()) if "layers" in f else []
        if layer is None:
            if "X" not in f:
                raise UnreadableInput(
                    f"{where}: has no X matrix (layers: {', '.join(layers) or 'none'}); "
                    "name one with --layer"
                )
            return f["X"], "var"
        if layer == "raw":
            if "raw" not in f or "X" not in f["raw"]:
                raise UnreadableInput(f"{where}: has no raw.X")
            return f["raw/X"], "raw/var"
        if layer not in layers:
            raise UnreadableInput(
                f"{where}: no layer {layer!r} (layers: {', '.join(layers) or 'none'}; "
                "also 'raw' for raw.X)"
            )
        return f["layers"][layer], "var"

    def _describe(self, elem: Any) -> tuple[str, tuple[int, int], np.dtype]:
        if isinstance(elem, h5py.Dataset):
            if elem.ndim != 2:
                raise UnreadableInput(f"{self.path}: {elem.name} is not a 2-D matrix")
            kind, shape, dtype = "dense", (int(elem.shape[0]), int(elem.shape[1])), elem.dtype
        else:
            enc = elem.attrs.get("encoding-type", elem.attrs.get("h5sparse_format", ""))
            enc = enc.decode() if isinstance(enc, bytes) else str(enc)
            kind = {"csr_matrix": "csr", "csr": "csr", "csc_matrix": "csc", "csc": "csc"}.get(enc)
            missing = {"data", "indices", "indptr"} - set(elem.keys())
            if kind is None or missing:
                raise UnreadableInput(
                    f"{self.path}: {elem.name} is not a CSR/CSC/dense matrix "
                    f"(encoding-type {enc!r})"
                )
            raw_shape = elem.attrs.get("shape", elem.attrs.get("h5sparse_shape"))
            shape = (int(raw_shape[0]), int(raw_shape[1]))
            dtype = elem["data"].dtype
        if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
            raise UnreadableInput(f"{self.path}: {elem.name} holds {dtype}, not numbers")
        return kind, shape, np.dtype(dtype)

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def nnz_hint(self) -> int | None:
        if self._kind == "dense":
            return None
        return int(self._elem["indptr"][-1])

    @property
    def layout(self) -> str:
        """How X is stored: ``csr``, ``csc`` or ``dense``."""
        return self._kind

    def obs(self) -> pd.DataFrame:
        return self._frame("obs", self._shape[0])

    def var(self) -> pd.DataFrame:
        return self._frame(self._var_group, self._shape[1])

    def obsm(self) -> dict[str, np.ndarray]:
        """Dense 2-D obsm entries with one row per cell (sparse or odd-shaped ones skipped)."""
        out: dict[str, np.ndarray] = {}
        group = self._file.get("obsm")
        if not isinstance(group, h5py.Group):
            return out
        for key, elem in group.items():
            if isinstance(elem, h5py.Dataset) and elem.ndim == 2 and elem.shape[0] == self._shape[0]:
                if np.issubdtype(elem.dtype, np.number):
                    out[str(key)] = np.asarray(elem[...], dtype=np.float32)
        return out

    def _frame(self, key: str, n: int) -> pd.DataFrame:
        if key not in self._file:
            raise UnreadableInput(f"{self.path}: has no {key} table")
        try:
            frame = anndata.io.read_elem(self._file[key])
        except Exception as exc:  # anndata raises many kinds for malformed tables
            raise UnreadableInput(f"{self.path}: cannot read {key}: {exc}") from exc
        if len(frame) != n:
            raise UnreadableInput(
                f"{self.path}: {key} has {len(frame)} rows but the matrix has {n}"
            )
        frame.index = frame.index.astype(str)
        return frame

    def iter_blocks(
        self, *, block_nnz: int, columns: tuple[int, int] | None = None
    ) -> Iterator[Block]:
        lo, hi = columns if columns is not None else (0, self._shape[1])
        try:
            if self._kind == "csr":
                yield from self._iter_compressed(block_nnz, 0, self._shape[0], major="row")
            elif self._kind == "csc":
                yield from self._iter_compressed(block_nnz, lo, hi, major="col")
            else:
                yield from self._iter_dense(block_nnz, lo, hi)
        except OSError as exc:
            raise UnreadableInput(
                f"{self.path}: read failed, file truncated or corrupt ({exc})"
            ) from exc

    def _iter_compressed(self, block_nnz: int, start: int, stop: int, major: str) -> Iterator[Block]:
        """Walk the major axis in slabs of at most ``block_nnz`` stored values (at least one)."""
        indptr_ds, data_ds, indices_ds = (self._elem[k] for k in ("indptr", "data", "indices"))
        n_minor = self._shape[1] if major == "row" else self._shape[0]
        window_start, window = start, np.zeros(0, dtype=np.int64)
        pos = start
        while pos < stop:
            if pos + 1 >= window_start + len(window):
                window_start = pos
                window = indptr_ds[pos : min(stop, pos + _INDPTR_WINDOW) + 1].astype(np.int64)
            local = window[pos - window_start :]
            k = int(np.searchsorted(local, local[0] + block_nnz, side="right")) - 1
            k = max(1, min(k, len(local) - 1))
            s, e = int(local[0]), int(local[k])
            ptr = local[: k + 1] - s
            data, indices = data_ds[s:e], indices_ds[s:e]
            if major == "row":
                m = sp.csr_matrix((data, indices, ptr), shape=(k, n_minor))
                if not m.has_sorted_indices:
                    m.sort_indices()
                yield Block(pos, 0, m)
            else:
                m = sp.csc_matrix((data, indices, ptr), shape=(n_minor, k)).tocsr()
                m.sort_indices()
                yield Block(0, pos, m)
            pos += k

    def _iter_dense(self, block_nnz: int, lo: int, hi: int) -> Iterator[Block]:
        n_rows = self._shape[0]
        step = max(1, block_nnz // max(1, hi - lo))
        for r0 in range(0, n_rows, step):
            dense = self._elem[r0 : min(n_rows, r0 + step), lo:hi]
            yield Block(r0, lo, sp.csr_matrix(dense))

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()


register_reader(ReaderSpec("h5ad", _sniff, H5adSource))
