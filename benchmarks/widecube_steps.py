"""widecube's ingest through the library, with the time spent in each step.

The ``widecube ingest`` command shows a progress bar only on a terminal and prints no
timings, so the headline measurement (the command itself) cannot say where the time went.
This script runs the same call the command makes — :func:`widecube.pipeline.ingest` with
``Settings()`` from the environment — with a progress hook that notes when each step
(read, compute, write, verify, publish) last reported, and prints one JSON object::

    $ WIDECUBE_STORAGE=/tmp/s python benchmarks/widecube_steps.py data.h5ad --dataset d \\
          --groupby cluster --groupby cluster,donor
    {"steps": {"read": 0.8, "compute": 51.0, ...}, "import_s": 1.9, "total_s": 63.1, ...}

A step's time runs from the end of the previous step to its own last report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def run(path: str, dataset: str, groupbys: list[str]) -> dict[str, Any]:
    """Ingest ``path`` as ``dataset`` and return per-step seconds and the published record."""
    start = time.perf_counter()
    from widecube.config import Settings
    from widecube.pipeline import ingest

    imported = time.perf_counter()
    last: dict[str, float] = {}

    def progress(step: str, done: float) -> None:
        last.pop(step, None)  # keep insertion order = order of each step's last report
        last[step] = time.perf_counter()

    record = ingest(path, dataset=dataset, groupbys=groupbys, settings=Settings(), progress=progress)
    end = time.perf_counter()
    steps: dict[str, float] = {}
    previous = imported
    for step, stamp in last.items():
        steps[step] = stamp - previous
        previous = stamp
    steps["close"] = end - previous
    return {
        "import_s": imported - start,
        "steps": steps,
        "total_s": end - start,
        "version": record.version,
        "n_cells": record.n_cells,
        "n_genes": record.n_genes,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the command line (a subset of ``widecube ingest``'s), run, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--groupby", action="append", default=[])
    args = parser.parse_args(argv)
    json.dump(run(args.path, args.dataset, args.groupby), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
