"""The floors of an ingest, each measured in a process of its own (``floor.py`` runs them).

* ``read``: h5py reads ``X/data``, ``X/indices`` and ``X/indptr`` of a CSR ``.h5ad`` into
  reused buffers, 32 Mi values at a time: what any reader of the file must pay.
* ``kernel``: one numba pass (one thread) over every stored value computing the per-group
  sum, sum of squares and non-zero count per gene, the statistics of the summary view; the
  blocks are read as in ``read`` but only the kernel's time is counted (``kernel_s``).

* ``touch``: what this machine charges the kernel for memory touched the first time: a GiB
  written through the page cache into a new file, then (the file removed) another GiB into the
  pages it just freed, and the same for anonymous memory. On a VM whose balloon reports free
  pages to the host (``virtio_balloon``'s free page reporting), pages free for more than a
  moment are handed back, and each is backed again on its next first touch, in the guest's
  system time: the ingest's kernel share then depends on how much memory it touches, not only
  on its system calls. Not a floor: the context of the kernel share.

Prints one JSON object on stdout::

    $ python benchmarks/_floors.py read data.h5ad
    {"read_s": 5.9, "values": 526000000}
    $ python benchmarks/_floors.py kernel data.h5ad --by cluster
    {"kernel_s": 2.6, "total_s": 8.7, "groups": 100, "values": 526000000}
    $ python benchmarks/_floors.py touch /tmp
    {"page_cache_fresh_s": 2.3, "page_cache_reused_s": 0.19, "anonymous_fresh_s": 2.1, ...}
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from glob import glob

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


GIB = 2**30


def _system_s() -> float:
    """This process's system CPU seconds so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def _free_page_reporting() -> bool | None:
    """Whether a virtio balloon offers free page reporting (feature bit 5); None: no balloon."""
    found = glob("/sys/bus/virtio/drivers/virtio_balloon/virtio*/features")
    if not found:
        return None
    with open(found[0]) as f:
        bits = f.read().strip()
    return len(bits) > 5 and bits[5] == "1"


SETTLE_S = 5.0
"""Idle seconds before each first touch: free page reporting hands pages back to the host
about two seconds after they are freed (measured here: a GiB array allocated again at once
1.9 → 0.05 s of system time, allocated again 5 s later 1.0 s)."""


def touch(folder: str) -> dict[str, object]:
    """System seconds per GiB touched for the first time, after :data:`SETTLE_S` idle: written
    into a new file through the page cache (then at once into the pages the first file, removed,
    left), and written into a new anonymous array (then at once into the pages it left)."""
    block = np.ones(8 * 2**20, np.uint8)
    out: dict[str, object] = {"gib": 1, "free_page_reporting": _free_page_reporting()}
    path = os.path.join(folder, f"touch-{os.getpid()}.bin")
    for how in ("fresh", "reused"):
        if how == "fresh":
            time.sleep(SETTLE_S)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            before = _system_s()
            for _ in range(GIB // block.size):
                os.write(fd, block)
            out[f"page_cache_{how}_s"] = round(_system_s() - before, 3)
        finally:
            os.close(fd)
            os.unlink(path)  # its pages go back to the free lists
    for how in ("fresh", "reused"):
        if how == "fresh":
            time.sleep(SETTLE_S)
        before = _system_s()
        array = np.ones(GIB, np.uint8)
        out[f"anonymous_{how}_s"] = round(_system_s() - before, 3)
        del array  # unmapped: its pages go back to the free lists
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["read", "kernel", "touch"])
    p.add_argument("path", help="the input (read, kernel) or a folder to write in (touch)")
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
    if a.what == "touch":
        print(json.dumps(touch(a.path)))
    else:
        print(json.dumps(read(a.path) if a.what == "read" else kernel(a.path, a.by)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
