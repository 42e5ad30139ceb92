"""One measured reader run, in its own process; prints one JSON line with its timings.

Every tool's clock starts after its imports and stops when it holds (or has streamed) the
whole matrix; each reports the shape and stored-value count it read, so that the caller can
check that both sides of a comparison read the same matrix.

``widecube PATH``: ``open_input`` (detect, read barcodes and features, parse/spill for text
formats, validate) and the full block stream of cells × genes CSR blocks with the pipeline's
own finite check — everything ingest's pass 1 asks of a reader. ``scanpy-10x-h5 PATH``:
``scanpy.read_10x_h5(PATH, gex_only=False)``, the whole matrix as an AnnData holding a CSR
(``gex_only=False`` spares scanpy the full copy its default makes when every feature is gene
expression: the peer gets the least work). ``scanpy-10x-mtx FOLDER``:
``scanpy.read_10x_mtx(FOLDER, gex_only=False)`` (``scipy.io.mmread``, itself
fast_matrix_market's parser, then a CSR, transposed to cells × genes). ``fmm FOLDER
--threads N``: ``fast_matrix_market.read_coo`` of the folder's matrix on N threads, the
triplets only (its *read*; gzip through Python's ``gzip``, as fast_matrix_market does it),
then, timed apart (``csr_s``), the same triplets made a cells × genes CSR by scipy.
``pandas PATH``: ``pandas.read_csv(PATH, index_col=0)`` holding the whole
matrix; ``--chunksize N`` streams it instead (same parser, bounded memory); ``--float32``
forces float32 gene columns, the value type widecube reads.

    .venv/bin/python benchmarks/_readers_probe.py widecube benchmarks/data/wide.csv --workdir /tmp/w
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

T0 = time.perf_counter()


def _cpu() -> float:
    """CPU seconds of this process so far, every thread."""
    return time.process_time()


def run_widecube(path: Path, workdir: Path, fmt: str | None, block_nnz: int) -> dict[str, object]:
    from widecube.compute import check_finite
    from widecube.io import open_input

    t_import, c_import = time.perf_counter(), _cpu()
    with open_input(path, workdir=workdir, format=fmt) as src:
        t_open = time.perf_counter()
        obs, var = src.obs(), src.var()
        check = check_finite(src, obs.index, var.index)
        nnz = blocks = 0
        for block in src.iter_blocks(block_nnz=block_nnz):
            check(block)
            nnz += block.nnz
            blocks += 1
        t_stream, c_stream = time.perf_counter(), _cpu()
        shape, fmt_found = src.shape, src.format
    return {
        "tool": "widecube",
        "cores": len(os.sched_getaffinity(0)),
        "format": fmt_found,
        "shape": list(shape),
        "nnz": nnz,
        "blocks": blocks,
        "import_s": t_import - T0,
        "open_s": t_open - t_import,
        "stream_s": t_stream - t_open,
        "read_s": t_stream - t_import,
        "read_cpu_s": c_stream - c_import,
    }


def run_scanpy(path: Path, what: str) -> dict[str, object]:
    import scanpy as sc

    t_import, c_import = time.perf_counter(), _cpu()
    if what == "10x-h5":
        adata = sc.read_10x_h5(path, gex_only=False)
    else:
        adata = sc.read_10x_mtx(path, gex_only=False)
    t_read, c_read = time.perf_counter(), _cpu()
    x = adata.X
    return {
        "tool": f"scanpy.read_{what.replace('-', '_')}",
        "shape": list(adata.shape),
        "nnz": int(x.nnz),
        "stored_as": f"{type(x).__name__} {x.dtype}",
        "import_s": t_import - T0,
        "read_s": t_read - t_import,
        "read_cpu_s": c_read - c_import,
    }


def _matrix_file(folder: Path) -> Path:
    found = sorted(p for p in folder.iterdir() if p.name.endswith(("matrix.mtx", "matrix.mtx.gz")))
    if len(found) != 1:
        raise SystemExit(f"{folder}: expected one matrix.mtx[.gz], found {[p.name for p in found]}")
    return found[0]


def run_fmm(path: Path, threads: int) -> dict[str, object]:
    import fast_matrix_market as fmm
    import scipy.sparse as sp

    matrix = _matrix_file(path) if path.is_dir() else path
    t_import, c_import = time.perf_counter(), _cpu()
    (data, (rows, cols)), (n_rows, n_cols) = fmm.read_coo(matrix, parallelism=threads)
    t_read, c_read = time.perf_counter(), _cpu()
    csr = sp.csr_matrix((data, (cols, rows)), shape=(n_cols, n_rows))  # genes × cells in the file
    t_csr = time.perf_counter()
    return {
        "tool": "fast_matrix_market.read_coo",
        "threads": threads,
        "shape": [n_cols, n_rows],
        "nnz": int(csr.nnz),
        "stored_as": f"triplets {rows.dtype}/{cols.dtype}/{data.dtype}",
        "import_s": t_import - T0,
        "read_s": t_read - t_import,
        "read_cpu_s": c_read - c_import,
        "csr_s": t_csr - t_import,
    }


def run_pandas(path: Path, float32: bool, chunksize: int | None) -> dict[str, object]:
    import numpy as np
    import pandas as pd

    t_import, c_import = time.perf_counter(), _cpu()
    dtype = None
    if float32:
        names = pd.read_csv(path, index_col=0, nrows=0).columns
        dtype = dict.fromkeys(names, np.float32)
    if chunksize is None:
        frame = pd.read_csv(path, index_col=0, dtype=dtype)
        shape, dtypes = list(frame.shape), sorted({str(t) for t in frame.dtypes})
    else:  # the same parser, streamed: what pandas reads per second when it need not hold it all
        rows, dtypes_seen = 0, set()
        for chunk in pd.read_csv(path, index_col=0, dtype=dtype, chunksize=chunksize):
            rows += len(chunk)
            dtypes_seen |= {str(t) for t in chunk.dtypes}
            n_cols = chunk.shape[1]
        shape, dtypes = [rows, n_cols], sorted(dtypes_seen)
    t_read, c_read = time.perf_counter(), _cpu()
    return {
        "tool": "pandas",
        "shape": shape,
        "dtypes": dtypes,
        "chunksize": chunksize,
        "import_s": t_import - T0,
        "read_s": t_read - t_import,
        "read_cpu_s": c_read - c_import,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tool", choices=["widecube", "scanpy-10x-h5", "scanpy-10x-mtx", "fmm", "pandas"])
    parser.add_argument("path", type=Path)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--format", default=None)
    parser.add_argument("--block-nnz", type=int, default=8_000_000)
    parser.add_argument("--float32", action="store_true")
    parser.add_argument("--chunksize", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2, help="fast_matrix_market's parallelism")
    args = parser.parse_args()
    if args.tool == "widecube":
        out = run_widecube(args.path, args.workdir, args.format, args.block_nnz)
    elif args.tool.startswith("scanpy-"):
        out = run_scanpy(args.path, args.tool.removeprefix("scanpy-"))
    elif args.tool == "fmm":
        out = run_fmm(args.path, args.threads)
    else:
        out = run_pandas(args.path, args.float32, args.chunksize)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
