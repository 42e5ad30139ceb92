"""``make_demo``: build the model, then stream X block by block into a ``.h5ad`` file.

X is appended to a resizable CSR group as each block of cells is drawn, so memory stays
O(block_cells × nnz_per_cell + n_types × n_genes + n_cells); the file is written under a
``.partial`` name and renamed when complete, so a reader never sees half of it.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from typing import Any

import anndata
import h5py
import numba
import numpy as np
import numpy.typing as npt

from ._annotations import obs_table, umap_embedding, var_table
from ._model import (
    DONOR_SHARE,
    IFN_TREATED,
    MODULE_SHAPE,
    MODULE_SHARE,
    Model,
    build_model,
    calibrate,
    type_sizes,
    with_donors,
)
from ._sampler import BIT_OF, Sampler, build_sampler, compact_block, fill_block, plan_block

__all__ = ["make_demo"]

_Array = npt.NDArray[Any]

_CHUNK = 1 << 18  # HDF5 chunk, in elements, of X/data and X/indices


def make_demo(
    path: str | os.PathLike[str],
    *,
    n_cells: int = 50_000,
    n_genes: int = 20_000,
    n_types: int = 24,
    n_donors: int = 6,
    nnz_per_cell: int | None = None,
    type_key: str = "cell_type",
    seed: int = 0,
    block_cells: int = 20_000,
    compression: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> pathlib.Path:
    """Write a synthetic but realistic single-cell dataset to ``path`` (.h5ad) and return it.

    ``X`` holds integer UMI counts as float32 CSR; ``obs`` has ``type_key`` (cell type),
    ``donor``, ``sex`` and ``condition`` as categoricals and 10x-style barcodes as index;
    ``var`` has gene symbols as index, ``gene_ids`` and ``feature_types``; ``obsm["X_umap"]``
    is a 2-D embedding with one blob per type. ``nnz_per_cell`` is the mean number of
    non-zeros per cell (default 5 % of ``n_genes``). Memory is O(block_cells × nnz_per_cell
    + n_types × n_genes + n_cells); the same seed gives the same file.

    >>> make_demo("demo.h5ad", n_cells=2_000, n_genes=1_000, seed=1)  # doctest: +SKIP
    PosixPath('demo.h5ad')
    """
    target = _check(n_cells, n_genes, n_types, n_donors, nnz_per_cell, type_key, block_cells)
    seeds = np.random.SeedSequence(seed).spawn(4)
    model = build_model(n_genes, n_types, np.random.default_rng(seeds[0]))
    rng = np.random.default_rng(seeds[1])
    sizes = type_sizes(n_cells, model.proportions)
    cell_type = rng.permutation(np.repeat(np.arange(n_types, dtype=np.int32), sizes))
    donor_p = rng.dirichlet(np.full(n_donors, 8.0))
    cell_donor = rng.choice(n_donors, size=n_cells, p=donor_p).astype(np.int32)
    treated = rng.permutation(np.arange(n_donors) >= (n_donors + 1) // 2)
    female = rng.permutation(np.arange(n_donors) % 2 == 0)
    model = with_donors(model, female, np.random.default_rng(seeds[2]))
    depth = calibrate(model, treated.mean(), target)
    typical = np.concatenate([np.full(n_types, 0.9), MODULE_SHARE, np.full(n_donors, DONOR_SHARE)])
    sampler = build_sampler(model.programs, model.size, typical, depth)
    obs = obs_table(cell_type, cell_donor, treated, female, model.type_names, type_key, rng)
    umap = umap_embedding(cell_type, model, rng)
    var = var_table(model.symbols, rng)
    key = seeds[3].generate_state(2, np.uint64)
    out = pathlib.Path(path)
    partial = out.with_name(out.name + ".partial")  # readers never see a half-written file
    try:
        with h5py.File(partial, "w") as f:
            f.attrs["encoding-type"] = "anndata"
            f.attrs["encoding-version"] = "0.1.0"
            _write_x(
                f,
                (cell_type, cell_donor),
                model,
                sampler,
                treated.astype(np.int64),
                key,
                block_cells,
                compression,
                progress,
            )
            anndata.io.write_elem(f, "obs", obs)
            anndata.io.write_elem(f, "var", var)
            anndata.io.write_elem(f, "obsm", {"X_umap": umap})
            for name in ("uns", "layers", "varm", "obsp", "varp"):
                anndata.io.write_elem(f, name, {})
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out


def _check(
    n_cells: int,
    n_genes: int,
    n_types: int,
    n_donors: int,
    nnz_per_cell: float | None,
    type_key: str,
    block_cells: int,
) -> float:
    """Validate the parameters; return the target mean of non-zeros per cell."""
    for name, value, low in (
        ("n_cells", n_cells, 1),
        ("n_genes", n_genes, 10),
        ("n_types", n_types, 1),
        ("n_donors", n_donors, 1),
        ("block_cells", block_cells, 1),
    ):
        if int(value) != value or value < low:
            raise ValueError(f"make_demo: {name} must be an integer >= {low}, got {value!r}")
    if n_types > n_cells:
        raise ValueError(f"make_demo: n_types ({n_types}) exceeds n_cells ({n_cells})")
    if n_genes >= 2**24:  # gene numbers are stored exactly in the float32 sampling table
        raise ValueError(f"make_demo: n_genes ({n_genes}) must be below 2**24")
    if n_cells >= 2**32:
        raise ValueError(f"make_demo: n_cells ({n_cells}) exceeds the 2**32 distinct barcodes")
    if type_key in ("donor", "sex", "condition") or not type_key:
        raise ValueError(f"make_demo: type_key {type_key!r} clashes with another obs column")
    target = max(1.0, 0.05 * n_genes) if nnz_per_cell is None else float(nnz_per_cell)
    if not 1 <= target <= 0.9 * n_genes:
        raise ValueError(
            f"make_demo: nnz_per_cell must lie in [1, 0.9 × n_genes = {0.9 * n_genes:g}], "
            f"got {nnz_per_cell!r}"
        )
    return target


def _write_x(
    f: h5py.File,
    cells: tuple[_Array, _Array],
    model: Model,
    sampler: Sampler,
    treated: _Array,
    key: _Array,
    block_cells: int,
    compression: str | None,
    progress: Callable[[int], None] | None,
) -> None:
    """Generate X block by block and append it to a resizable CSR group."""
    cell_type, cell_donor = cells
    n_cells, n_genes = cell_type.size, model.programs.shape[1]
    group = f.create_group("X")
    group.attrs["encoding-type"] = "csr_matrix"
    group.attrs["encoding-version"] = "0.1.0"
    group.attrs["shape"] = (n_cells, n_genes)
    opts = {"maxshape": (None,), "compression": compression}
    data = group.create_dataset("data", (0,), np.float32, chunks=(_CHUNK,), **opts)
    indices = group.create_dataset("indices", (0,), np.int32, chunks=(_CHUNK,), **opts)
    indptr = group.create_dataset(
        "indptr", (1,), np.int64, chunks=(min(n_cells + 1, 1 << 16),), data=[0], **opts
    )
    sm, n_types = sampler, model.size_factor.size
    for start in range(0, n_cells, block_cells):
        stop = min(start + block_cells, n_cells)
        types, donors = cell_type[start:stop], cell_donor[start:stop]
        scale, clusters, slots = plan_block(
            start,
            types,
            donors,
            treated,
            key[0],
            model.size_factor,
            model.module_prob,
            MODULE_SHARE,
            MODULE_SHAPE,
            IFN_TREATED,
            DONOR_SHARE,
            sm.total,
            sm.depth,
            sm.dense_ptr,
            n_genes,
        )
        offsets = np.zeros(stop - start, dtype=np.int64)
        np.cumsum(slots[:-1], out=offsets[1:])
        idx = np.empty(int(slots.sum()), np.int32)
        val = np.empty(idx.size, np.float32)
        nnz = np.empty(stop - start, np.int64)
        order = np.argsort(types, kind="stable")
        n_chunks = min(stop - start, 8 * numba.get_num_threads())
        fill_block(
            start,
            order,
            types,
            donors,
            scale,
            clusters,
            offsets,
            key[1],
            n_types,
            n_genes,
            sm.ptr,
            sm.table,
            sm.dense_ptr,
            sm.dense_gene,
            sm.dense_mean,
            sm.dense_size,
            BIT_OF,
            n_chunks,
            idx,
            val,
            nnz,
        )
        end = compact_block(offsets, nnz, idx, val)
        done = data.shape[0]
        for ds, values in ((data, val[:end]), (indices, idx[:end])):
            ds.resize((done + end,))
            ds[done:] = values
        indptr.resize((stop + 1,))
        indptr[start + 1 :] = done + np.cumsum(nnz)
        if progress is not None:
            progress(stop - start)
