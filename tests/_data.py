"""Test inputs: small AnnData objects with edge cases, written as real .h5ad files."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

MakeH5ad = Callable[..., Path]


def random_counts(n_cells: int, n_genes: int, *, density: float = 0.15, seed: int = 0) -> np.ndarray:
    """A dense reference matrix of small integer counts (tests only)."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_cells, n_genes)) < density
    return np.where(mask, rng.negative_binomial(2, 0.3, (n_cells, n_genes)) + 1, 0)


def small_adata(n_cells: int = 240, n_genes: int = 60, *, seed: int = 0) -> ad.AnnData:
    """Counts with the edge cases the summary must handle.

    cell_type has a group of one cell ('solo') and an empty category ('ghost'); the last
    gene is never expressed; gene 0 is expressed in exactly one cell.
    """
    rng = np.random.default_rng(seed)
    x = random_counts(n_cells, n_genes, seed=seed).astype(np.float64)
    x[:, -1] = 0
    x[:, 0] = 0
    x[3, 0] = 7
    types = rng.choice(["T", "B", "NK", "Mono"], n_cells, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    types[5] = "solo"
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(types, categories=["T", "B", "NK", "Mono", "solo", "ghost"]),
            "donor": pd.Categorical(rng.choice(["d1", "d2", "d3"], n_cells)),
            "score": rng.random(n_cells),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"Gene{j}" for j in range(n_genes)])
    return ad.AnnData(x, obs=obs, var=var)


def write_h5ad(
    adata: ad.AnnData, path: Path, *, layout: str = "csr", dtype: str = "float32", where: str = "X"
) -> Path:
    """Write ``adata`` with X (or a layer, or raw) stored as csr / csc / dense of ``dtype``."""
    x = np.asarray(adata.X).astype(dtype)
    stored = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "dense": np.asarray}[layout](x)
    out = adata.copy()
    if where == "X":
        out.X = stored
    elif where == "raw":
        out.X = sp.csr_matrix(np.ones_like(x))
        out.raw = ad.AnnData(stored, obs=adata.obs, var=adata.var)
    else:
        out.X = None
        out.layers[where] = stored
    out.write_h5ad(path)
    return path


_PROGRESS = re.compile(
    r"^(unpack|validate|compute|verify|publish): (started|\d+% \(\d+ s\)|done in [\d.]+ s)$"
)


_STORAGE = re.compile(r"^storage: .+ \((WIDECUBE_STORAGE|default; WIDECUBE_STORAGE changes it)\)$")


def without_progress(stderr: str) -> list[str]:
    """The lines of a command's stderr other than its progress lines (``compute: 40% (12 s)``:
    what ``widecube ingest`` prints when stderr is not a terminal) and the storage line every
    command prints first (``storage: /data/widecube (WIDECUBE_STORAGE)``)."""
    lines = stderr.strip().splitlines()
    return [line for line in lines if not _PROGRESS.match(line) and not _STORAGE.match(line)]
