"""One measured reader run, in its own process; prints one JSON line with its timings.

``widecube PATH``: ``open_input`` (detect, parse/spill for text formats, validate) and the
full block stream with the pipeline's own finite check — everything ingest's pass 1 asks
of a reader. ``pandas PATH``: ``pandas.read_csv(PATH, index_col=0)`` holding the whole
matrix; ``--chunksize N`` streams it instead (same parser, bounded memory); ``--float32``
forces float32 gene columns, the value type widecube reads.

    .venv/bin/python benchmarks/_readers_probe.py widecube benchmarks/data/wide.csv --workdir /tmp/w
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

T0 = time.perf_counter()


def run_widecube(path: Path, workdir: Path, fmt: str | None, block_nnz: int) -> dict[str, object]:
    from widecube.compute import check_finite
    from widecube.io import open_input

    t_import = time.perf_counter()
    with open_input(path, workdir=workdir, format=fmt) as src:
        t_open = time.perf_counter()
        obs, var = src.obs(), src.var()
        check = check_finite(src, obs.index, var.index)
        nnz = blocks = 0
        for block in src.iter_blocks(block_nnz=block_nnz):
            check(block)
            nnz += block.nnz
            blocks += 1
        t_stream = time.perf_counter()
        shape, fmt_found = src.shape, src.format
    return {
        "tool": "widecube",
        "format": fmt_found,
        "shape": list(shape),
        "nnz": nnz,
        "blocks": blocks,
        "import_s": t_import - T0,
        "open_s": t_open - t_import,
        "stream_s": t_stream - t_open,
        "read_s": t_stream - t_import,
    }


def run_pandas(path: Path, float32: bool, chunksize: int | None) -> dict[str, object]:
    import numpy as np
    import pandas as pd

    t_import = time.perf_counter()
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
    t_read = time.perf_counter()
    return {
        "tool": "pandas",
        "shape": shape,
        "dtypes": dtypes,
        "chunksize": chunksize,
        "import_s": t_import - T0,
        "read_s": t_read - t_import,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tool", choices=["widecube", "pandas"])
    parser.add_argument("path", type=Path)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--format", default=None)
    parser.add_argument("--block-nnz", type=int, default=8_000_000)
    parser.add_argument("--float32", action="store_true")
    parser.add_argument("--chunksize", type=int, default=None)
    args = parser.parse_args()
    if args.tool == "widecube":
        out = run_widecube(args.path, args.workdir, args.format, args.block_nnz)
    else:
        out = run_pandas(args.path, args.float32, args.chunksize)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
