"""The Loom reader: HDF5 with a dense genes × cells ``/matrix``, ``/row_attrs``, ``/col_attrs``.

Cells are columns in Loom, so a block is a slab of columns (all genes, or the requested
gene window) read with h5py, transposed and turned into CSR; slabs are aligned to the
dataset's chunks so each chunk is decompressed once. ``--layer NAME`` reads
``/layers/NAME``. Cell ids come from ``col_attrs/CellID`` (or ``obs_names``), gene names
from ``row_attrs/Gene`` (or ``var_names``), ids from ``Accession``; every other 1-D
attribute becomes an obs/var column (strings with few values as categoricals) and 2-D
numeric cell attributes become obsm. loompy is not needed.

    >>> with LoomSource(Path("cells.loom")) as src: ...                   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ....errors import InputError, UnreadableInput
from ..._checks import (
    check_dense_storage,
    check_shape,
    check_unique,
    check_value_dtype,
    nonfinite_error,
    unique_gene_names,
)
from ..._metadata import categorize
from ..._readers import ReaderSpec, register_reader
from ..._sniff import hdf5_keys
from ..._source import Block, MatrixSource
from .._dense import dense_to_csr

__all__ = ["LoomSource"]

_CELL_IDS = ("CellID", "obs_names", "cell_names", "CellIDs", "cell_id")
_GENE_NAMES = ("Gene", "var_names", "gene_names", "Symbol", "Genes")
_GENE_IDS = ("Accession", "gene_ids", "Accessions")


def _sniff(path: Path) -> bool:
    keys = hdf5_keys(path)
    return keys is not None and {"matrix", "row_attrs", "col_attrs"} <= keys


def _read(ds: h5py.Dataset) -> np.ndarray:
    if h5py.check_string_dtype(ds.dtype) is not None or ds.dtype.kind == "S":
        return np.asarray(ds.asstr()[...], dtype=object)
    return np.asarray(ds[...])


class LoomSource(MatrixSource):
    """An opened .loom file; ``layer`` None reads ``/matrix``, a name reads ``/layers/<name>``."""

    format = "loom"

    def __init__(self, path: Path, *, layer: str | None = None) -> None:
        super().__init__(path)
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise UnreadableInput(f"{path}: not a readable HDF5/Loom file ({exc})") from exc
        try:
            self._open(layer)
        except InputError:
            self._file.close()
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            self._file.close()
            raise UnreadableInput(f"{path}: not a readable Loom file ({exc})") from exc

    def _open(self, layer: str | None) -> None:
        f = self._file
        layers = sorted(f["layers"].keys()) if isinstance(f.get("layers"), h5py.Group) else []
        if layer is None:
            ds = f["matrix"]
        elif layer in layers:
            ds = f["layers"][layer]
        else:
            raise UnreadableInput(f"{self.path}: no layer {layer!r} (layers: {', '.join(layers) or 'none'})")
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 2:
            raise UnreadableInput(f"{self.path}: {ds.name} is not a 2-D matrix")
        check_value_dtype(self.path, ds.name.lstrip("/"), ds.dtype)
        self._ds = ds
        n_genes, n_cells = int(ds.shape[0]), int(ds.shape[1])
        check_shape(self.path, n_cells, n_genes)
        check_dense_storage(
            self.path, ds.name.lstrip("/"), (n_cells, n_genes), ds.dtype, ds.id.get_storage_size()
        )
        cols, self._obsm = self._attrs("col_attrs", n_cells)
        rows, _ = self._attrs("row_attrs", n_genes)
        cell_key = self._key("col_attrs", cols, _CELL_IDS, n_cells, "cells (columns)", "CellID")
        gene_key = self._key("row_attrs", rows, _GENE_NAMES, n_genes, "genes (rows)", "Gene")
        cells = pd.Index(cols.pop(cell_key).astype(str), dtype=object)
        check_unique(
            cells, where=self.path, what="cell id", place=lambda i: f"col_attrs/{cell_key} entry {i + 1}"
        )
        id_key = next((k for k in _GENE_IDS if k in rows), None)
        ids = pd.Index(rows[id_key].astype(str), dtype=object) if id_key else None
        genes = unique_gene_names(
            pd.Index(rows.pop(gene_key).astype(str), dtype=object),
            ids,
            where=self.path,
            place=lambda i: f"row_attrs/{gene_key} entry {i + 1}",
        )
        if id_key:
            rows["gene_ids"] = rows.pop(id_key)
        self._obs = categorize(pd.DataFrame(cols, index=cells))
        self._var = pd.DataFrame(rows, index=genes)

    def _key(
        self, group: str, found: dict[str, np.ndarray], keys: tuple[str, ...], n: int, what: str, usual: str
    ) -> str:
        """The first of ``keys`` among the 1-D attributes of length ``n``; refuses with the
        reason (missing, or of the wrong length) when there is none."""
        key = next((k for k in keys if k in found), None)
        if key is not None:
            return key
        g = self._file.get(group)
        stored = set(g.keys()) if isinstance(g, h5py.Group) else set()
        wrong = next((k for k in keys if k in stored and isinstance(g[k], h5py.Dataset)), None)
        if wrong is not None:
            raise UnreadableInput(
                f"{self.path}: {group}/{wrong} has shape {tuple(g[wrong].shape)} but the "
                f"matrix has {n:,} {what}"
            )
        raise UnreadableInput(
            f"{self.path}: no {group}/{usual} (or {', '.join(keys[1:])}) naming the {n:,} {what}"
        )

    def _attrs(self, group: str, n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """1-D attributes of length ``n`` (columns) and 2-D numeric ones (embeddings)."""
        flat: dict[str, np.ndarray] = {}
        wide: dict[str, np.ndarray] = {}
        g: Any = self._file[group]
        if not isinstance(g, h5py.Group):
            raise UnreadableInput(f"{self.path}: {group} is not a group of attributes")
        for key, ds in g.items():
            if not isinstance(ds, h5py.Dataset) or ds.shape[:1] != (n,):
                continue
            if ds.ndim == 1:
                flat[str(key)] = _read(ds)
            elif ds.ndim == 2 and np.issubdtype(ds.dtype, np.number):
                wide[str(key)] = np.asarray(ds[...], dtype=np.float32)
        return flat, wide

    @property
    def shape(self) -> tuple[int, int]:
        return int(self._ds.shape[1]), int(self._ds.shape[0])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(str(self._ds.dtype))

    def obs(self) -> pd.DataFrame:
        return self._obs.copy()

    def var(self) -> pd.DataFrame:
        return self._var.copy()

    def obsm(self) -> dict[str, np.ndarray]:
        return dict(self._obsm)

    def iter_blocks(self, *, block_nnz: int, columns: tuple[int, int] | None = None) -> Iterator[Block]:
        n_cells, n_genes = self.shape
        lo, hi = columns if columns is not None else (0, n_genes)
        step = max(1, block_nnz // max(1, hi - lo))
        chunk = self._ds.chunks[1] if self._ds.chunks else 1
        if step >= chunk:
            step -= step % chunk
        try:
            for c0 in range(0, n_cells, step):
                slab = self._ds[lo:hi, c0 : min(n_cells, c0 + step)]
                m, bad = dense_to_csr(slab.T)
                if bad is not None:
                    r, c = bad
                    cell, gene = self._obs.index[c0 + r], self._var.index[lo + c]
                    raise nonfinite_error(
                        self.path, float(slab[c, r]), row=c0 + r, col=lo + c, cell=cell, gene=gene
                    )
                yield Block(c0, lo, m)
        except OSError as exc:
            raise UnreadableInput(f"{self.path}: read failed, file truncated or corrupt ({exc})") from exc

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()


register_reader(ReaderSpec("loom", _sniff, LoomSource))
