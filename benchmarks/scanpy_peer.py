"""The peer: scanpy's read + ``scanpy.get.aggregate``, timed step by step.

Run as a script, in a process of its own, so that its wall time and peak memory can be
measured from outside. Prints one JSON object on stdout::

    $ python benchmarks/scanpy_peer.py data.h5ad --by cluster --by cluster,donor
    {"read_s": 41.2, "aggregates": [{"by": ["cluster"], "seconds": 60.1, ...}, ...],
     "medians": [{"by": ["cluster"], "seconds": 30.4, ...}, ...], ...}

Each ``--by`` is one grouping (comma-separated columns for a combination). For each grouping
it makes two calls, timed separately:

* ``aggregate(func=["sum", "mean", "var", "count_nonzero"])`` — the statistics of widecube's
  summary view (``aggregates``; issue 2's peer was this call alone);
* ``aggregate(func="median")`` — the exact per-group median of widecube's quantile view
  (``medians``; issue 3's peer adds it). ``--no-median`` leaves it out.

``summary_s`` is read + the first calls (issue 2's figure), ``full_s`` read + both (issue 3's).

A step that fails (``MemoryError`` on a dataset too large for the machine, most likely) still
prints the JSON, with ``error`` saying which step, after how long and why, and exits 3.
Each step also reports on stderr as it ends, so a run killed from outside shows how far it got.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings
from importlib.metadata import version
from typing import Any

FUNCS = ["sum", "mean", "var", "count_nonzero"]
"""The statistics asked of ``scanpy.get.aggregate`` (what widecube's summary view holds)."""
MEDIAN = "median"
"""Asked of ``scanpy.get.aggregate`` in a call of its own (widecube's quantile view)."""
FAILED = 3
"""Exit status when a step raised (the JSON on stdout has ``error``)."""


def run(path: str, groupings: list[list[str]], *, median: bool = True) -> dict[str, Any]:
    """Read ``path`` fully into memory, then aggregate it per grouping; time each step.

    Never raises for a failed step: the result then holds ``error`` and the steps done so far.
    """
    start = time.perf_counter()
    result: dict[str, Any] = {"funcs": FUNCS, "median": median, "aggregates": [], "medians": []}
    stage, began = "imports", start
    try:
        import anndata
        import scanpy

        result["versions"] = {name: version(name) for name in ("scanpy", "anndata")}
        result["import_s"] = _done("imports", start)
        stage, began = "read", time.perf_counter()
        adata = anndata.read_h5ad(path)
        result["read_s"] = _done("read", began)
        result["shape"] = list(adata.shape)
        result["x_type"] = type(adata.X).__name__
        for by in groupings:
            key = by[0] if len(by) == 1 else by
            calls = [("aggregates", FUNCS)] + ([("medians", MEDIAN)] if median else [])
            for field, func in calls:
                stage = f"aggregate {func if isinstance(func, str) else ', '.join(func)} by {'+'.join(by)}"
                began = time.perf_counter()
                agg = scanpy.get.aggregate(adata, by=key, func=func)
                seconds = _done(stage, began)
                result[field].append(
                    {"by": by, "seconds": seconds, "n_groups": agg.n_obs, "layers": sorted(agg.layers)}
                )
                del agg
    except Exception as exc:  # MemoryError above all; recorded in the JSON, not hidden
        result["error"] = {
            "stage": stage,
            "after_s": time.perf_counter() - began,
            "since_start_s": time.perf_counter() - start,
            "type": type(exc).__name__,
            "message": str(exc)[:1000],
            "traceback_tail": traceback.format_exc()[-2000:],
        }
        print(f"scanpy_peer: {stage} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    result["total_s"] = time.perf_counter() - start
    if "error" not in result:
        read = result["read_s"]
        result["summary_s"] = read + sum(a["seconds"] for a in result["aggregates"])
        result["full_s"] = result["summary_s"] + sum(a["seconds"] for a in result["medians"])
    return result


def _done(stage: str, began: float) -> float:
    seconds = time.perf_counter() - began
    print(f"scanpy_peer: {stage} done in {seconds:.1f} s", file=sys.stderr, flush=True)
    return seconds


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
    parser.add_argument(
        "--median",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time aggregate(func='median') per grouping (default: yes)",
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    result = run(args.path, [by.split(",") for by in args.by], median=args.median)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return FAILED if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
