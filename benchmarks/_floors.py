"""The floors of an ingest, each measured in a process of its own (``floor.py`` runs them).

* ``read``: h5py reads ``X/data``, ``X/indices`` and ``X/indptr`` of a CSR ``.h5ad`` into
  reused buffers, 32 Mi values at a time: what any reader of the file must pay.
* ``kernel``: one numba pass (one thread) over every stored value computing the per-group
  sum, sum of squares and non-zero count per gene, the statistics of the summary view; the
  blocks are read as in ``read`` but only the kernel's time is counted (``kernel_s``).

Prints one JSON object on stdout::

    $ python benchmarks/_floors.py read data.h5ad
    {"read_s": 5.9, "values": 526000000}
    $ python benchmarks/_floors.py kernel data.h5ad --by cluster
    {"kernel_s": 2.6, "total_s": 8.7, "groups": 100, "values": 526000000}
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import anndata as ad
import h5py
import numpy as np
from numba import njit

STEP = 32 * 2**20


def read(path: str) -> dict[str, float]:
    started = time.perf_counter()
    with h5py.File(path, "r") as f:
        x = f["X"]
        n = x["data"].shape[0]
        for key in ("data", "indices"):
            d = x[key]
            buf = np.empty(min(STEP, n), d.dtype)
            for s in range(0, n, STEP):
                e = min(n, s + STEP)
                d.read_direct(buf, np.s_[s:e], np.s_[0 : e - s])
        x["indptr"][:]
    return {"read_s": round(time.perf_counter() - started, 3), "values": int(n)}


@njit(nogil=True, cache=True)
def _moments(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, first: int, codes: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """``out[group, gene] += (x, x², 1)`` for every stored value of rows ``first..``."""
    base = indptr[0]
    for r in range(indptr.shape[0] - 1):
        k = codes[first + r]
        for p in range(indptr[r] - base, indptr[r + 1] - base):
            v = np.float64(data[p])
            g = indices[p]
            out[k, g, 0] += v
            out[k, g, 1] += v * v
            out[k, g, 2] += 1.0


def kernel(path: str, by: str) -> dict[str, float]:
    started = time.perf_counter()
    with h5py.File(path, "r") as f:
        codes = np.asarray(ad.io.read_elem(f["obs"])[by].cat.codes, dtype=np.int64)
        x = f["X"]
        n_rows, n_genes = (int(v) for v in x.attrs["shape"])
        indptr = x["indptr"][:]
        out = np.zeros((int(codes.max()) + 1, n_genes, 3))
        spent = 0.0
        r = 0
        while r < n_rows:  # row blocks of about STEP // 4 values
            stop = int(np.searchsorted(indptr, indptr[r] + STEP // 4, side="right")) - 1
            stop = min(n_rows, max(stop, r + 1))
            a, b = int(indptr[r]), int(indptr[stop])
            indices, data = x["indices"][a:b], x["data"][a:b]
            t = time.perf_counter()
            _moments(indptr[r : stop + 1], indices, data, r, codes, out)
            spent += time.perf_counter() - t
            r = stop
    return {
        "kernel_s": round(spent, 3),
        "total_s": round(time.perf_counter() - started, 3),
        "groups": int(out.shape[0]),
        "values": int(indptr[-1]),
        "check_sum": float(out[:, :, 0].sum()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["read", "kernel"])
    p.add_argument("path")
    p.add_argument("--by", default="cluster")
    a = p.parse_args(argv)
    if a.what == "kernel":  # compile (or load the cache) before the clock starts
        _moments(
            np.zeros(2, np.int64),
            np.zeros(0, np.int32),
            np.zeros(0, np.float32),
            0,
            np.zeros(1, np.int64),
            np.zeros((1, 1, 3)),
        )
    print(json.dumps(read(a.path) if a.what == "read" else kernel(a.path, a.by)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
