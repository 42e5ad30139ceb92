"""The peer: scanpy's read + ``scanpy.get.aggregate``, timed step by step.

Run as a script, in a process of its own, so that its wall time and peak memory can be
measured from outside. Prints one JSON object on stdout::

    $ python benchmarks/scanpy_peer.py data.h5ad --by cluster --by cluster,donor
    {"read_s": 41.2, "aggregates": [{"by": ["cluster"], "seconds": 60.1, ...}, ...], ...}

Each ``--by`` is one grouping (comma-separated columns for a combination), aggregated with
the same statistics widecube's summary view holds: sum, mean, variance and the count of
non-zeros.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from importlib.metadata import version
from typing import Any

FUNCS = ["sum", "mean", "var", "count_nonzero"]
"""The statistics asked of ``scanpy.get.aggregate`` (what widecube's summary view holds)."""


def run(path: str, groupings: list[list[str]]) -> dict[str, Any]:
    """Read ``path`` fully into memory, then aggregate it once per grouping; time each step."""
    start = time.perf_counter()
    import anndata
    import scanpy

    imported = time.perf_counter()
    adata = anndata.read_h5ad(path)
    read = time.perf_counter()
    result: dict[str, Any] = {
        "import_s": imported - start,
        "read_s": read - imported,
        "shape": list(adata.shape),
        "x_type": type(adata.X).__name__,
        "aggregates": [],
        "versions": {name: version(name) for name in ("scanpy", "anndata")},
    }
    for by in groupings:
        begin = time.perf_counter()
        agg = scanpy.get.aggregate(adata, by=by[0] if len(by) == 1 else by, func=FUNCS)
        seconds = time.perf_counter() - begin
        result["aggregates"].append(
            {"by": by, "seconds": seconds, "n_groups": agg.n_obs, "layers": sorted(agg.layers)}
        )
        del agg
    result["total_s"] = time.perf_counter() - start
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the peer and print its timings as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="the .h5ad file")
    parser.add_argument(
        "--by",
        action="append",
        required=True,
        help="obs column, or 'a,b' for a combination; repeatable",
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    result = run(args.path, [by.split(",") for by in args.by])
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
