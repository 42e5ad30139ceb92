"""Fill numba's on-disk cache before the xdist workers start: ``python tests/_warm.py
{ingest,demo} FOLDER``.

widecube's numba kernels are compiled with ``cache=True`` (all but two), so a process loads
what an earlier one compiled. On a fresh checkout (CI) the cache is empty, and every worker
and every CLI process that starts before the first ones have finished compiles the same
kernels again (three test files took 364 s of CPU from a cold cache, 227 s from a warm one).
``ingest`` ingests one small input of each format and layout the suite reads and answers a
filtered aggregate; ``demo`` builds a small demo file (its kernels are the generator's own, so
it runs as a second process beside the first). ``conftest.py`` runs both once per change of
the kernels' source files, while the workers collect, and holds the workers' first test until
they end. Whatever they do not reach is compiled by the tests, as before.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from _data import small_adata, write_h5ad
from _io_writers import write_10x_h5, write_csv, write_loom, write_mtx, write_parquet
from widecube.config import Settings
from widecube.demo import make_demo
from widecube.pipeline import ingest
from widecube.query import Widecube


def warm_ingest(root: Path) -> None:
    """The ingest kernels of every reader, and the query side's filtered aggregate."""
    adata = small_adata()
    x = np.asarray(adata.X)
    cells, genes = list(adata.obs_names), list(adata.var_names)
    fractions = adata.copy()
    fractions.X = x * 0.3701  # not counts: the raw layer alone
    wide = adata.copy()
    wide.X = sp.csr_matrix(x.astype(np.float32))
    wide.X.indptr = wide.X.indptr.astype(np.int64)  # as large files store it
    wide.write_h5ad(root / "int64-indptr.h5ad")
    inputs = [
        write_h5ad(adata, root / "csr.h5ad"),
        write_h5ad(adata, root / "csc.h5ad", layout="csc"),
        write_h5ad(adata, root / "dense.h5ad", layout="dense"),
        write_h5ad(adata, root / "f64.h5ad", dtype="float64"),
        write_h5ad(adata, root / "i32.h5ad", dtype="int32"),
        write_h5ad(fractions, root / "fractions.h5ad"),
        write_csv(root / "counts.csv", x, cells, genes),
        write_csv(root / "counts.tsv", x, cells, genes, sep="\t"),
        root / "int64-indptr.h5ad",
        write_mtx(root / "mtx.gz", x, cells, genes, gz=True),
        write_mtx(root / "mtx", x, cells, genes),  # read in place (a read-only buffer)
        write_parquet(root / "counts.parquet", x, cells, genes),
        write_loom(root / "counts.loom", x, cells, genes),
        write_10x_h5(root / "counts.h5", x, cells, genes),
    ]
    settings = Settings(storage=root / "store", auth=False)  # anonymous reads see every dataset
    for i, path in enumerate(inputs):
        ingest(path, dataset=f"w{i}", settings=settings)
    wc = Widecube(settings)
    try:
        for layer in ("input", "normalized"):
            wc.aggregate(
                "w0",
                genes=["Gene1", "Gene2"],
                groupby="donor",
                stats=["mean", "median", "q90"],
                layer=layer,
                filter={"cell_type": ["T", "B"]},
            )
    finally:
        wc.close()


def warm_demo(root: Path) -> None:
    """The demo generator's kernels (independent of the ingest's: a second process)."""
    make_demo(root / "demo.h5ad", n_cells=300, n_genes=200)


if __name__ == "__main__":
    {"ingest": warm_ingest, "demo": warm_demo}[sys.argv[1]](Path(sys.argv[2]))
