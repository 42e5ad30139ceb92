"""A grouping's summary as the pseudobulk AnnData of ``scanpy.get.aggregate``, and files of it.

``scanpy.get.aggregate(adata, by, func=["sum", "mean", "var", "count_nonzero"])`` answers groups
(observed ones, in category order) as obs with the groupby columns, genes as var with the
input's var columns, and one float64 layer per function. The summary view stores the same
numbers (its ``nnz`` is scanpy's ``count_nonzero``; ``var`` is ddof=1 as scanpy's), so
:func:`scanpy_aggregate` turns a summary answer of every gene into exactly that shape (through
the client's own :func:`~._convert.pseudobulk`), and :func:`write` saves it as ``.h5ad``,
``.zarr`` (AnnData's Zarr) or ``.parquet`` (one row per group and gene, a column per layer).

    >>> with widecube.open("./widecube-data") as wc:                         # doctest: +SKIP
    ...     write(wc.pseudobulk("pbmc", "cell_type", layer="input"), Path("pbmc.h5ad"))
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import InvalidQuery
from . import _convert

if TYPE_CHECKING:
    import anndata

__all__ = ["FORMATS", "SCANPY_LAYERS", "scanpy_aggregate", "write"]

SCANPY_LAYERS = {"sum": "sum", "count_nonzero": "nnz", "var": "var", "mean": "mean"}
"""scanpy's layer name → the summary statistic it is (in the order scanpy adds them)."""
FORMATS = (".h5ad", ".zarr", ".parquet")


def scanpy_aggregate(result: _convert.Answer, var: pd.DataFrame) -> anndata.AnnData:
    """A summary answer of every gene (stats ``sum``, ``nnz``, ``var``, ``mean``, ``n_cells``)
    as ``scanpy.get.aggregate`` returns it: empty groups left out, layers named as scanpy names
    them, obs only the groupby columns, var the version's gene table. ``uns`` names the
    dataset, version, groupby and layer it came from."""
    adata = _convert.pseudobulk(result, list(SCANPY_LAYERS.values()))
    if list(adata.var_names) != [str(g) for g in var.index]:
        raise InvalidQuery("the summary's genes are not the version's genes in var order")
    observed = adata.obs["n_cells"].to_numpy() > 0
    adata = adata[observed].copy()
    adata.obs = adata.obs.drop(columns="n_cells")
    for column in adata.obs.columns:  # categories of the observed groups only, as scanpy has
        adata.obs[column] = adata.obs[column].cat.remove_unused_categories()
    adata.layers = {
        name: np.asarray(adata.layers[stat], dtype=np.float64) for name, stat in SCANPY_LAYERS.items()
    }
    adata.var = var.set_axis(adata.var_names)
    return adata


def write(adata: anndata.AnnData, path: Path) -> Path:
    """Save ``adata`` by the suffix of ``path``: ``.h5ad``, ``.zarr`` or ``.parquet``."""
    suffix = path.suffix.lower()
    if suffix == ".h5ad":
        adata.write_h5ad(path)
    elif suffix == ".zarr":
        adata.write_zarr(path)
    elif suffix == ".parquet":
        long_table(adata).to_parquet(path, index=False)
    else:
        raise InvalidQuery(
            f"{path.name}: cannot write {suffix or 'a file without a suffix'} (use {', '.join(FORMATS)})"
        )
    return path


def long_table(adata: anndata.AnnData) -> pd.DataFrame:
    """One row per (group, gene): the groupby columns, ``group``, ``gene`` and each layer."""
    n_groups, n_genes = adata.shape
    frame = pd.DataFrame(
        {
            "group": pd.Categorical(
                np.repeat(adata.obs_names.to_numpy(), n_genes), categories=adata.obs_names
            ),
            "gene": pd.Categorical(np.tile(adata.var_names.to_numpy(), n_groups), categories=adata.var_names),
        }
    )
    for column in adata.obs.columns:
        frame.insert(frame.columns.get_loc("group"), column, np.repeat(adata.obs[column].to_numpy(), n_genes))
    for name, values in adata.layers.items():
        frame[name] = np.asarray(values, dtype=np.float64).reshape(-1)
    return frame
