"""widecube's ingest through the library, with the time spent in each step.

The ``widecube ingest`` command shows a progress bar only on a terminal and prints no
timings, so the headline measurement (the command itself) cannot say where the time went.
This script runs the same call the command makes — :func:`widecube.pipeline.ingest` with
``Settings()`` from the environment — with a progress hook that notes when each step last
reported, and prints one JSON object::

    $ WIDECUBE_STORAGE=/tmp/s python benchmarks/widecube_steps.py data.h5ad --dataset d \\
          --groupby cluster --groupby cluster,donor
    {"steps": {"unpack": 0.1, "validate": 2.3, "compute": 81.8, ...}, "compute_parts":
     {"pass 1": 30.8, "pass 2": 44.1, "views written": 6.9}, "views": {...}, "total_s": 93.1, ...}

The steps are the ingest job's own (``widecube.pipeline._ingest.STEPS``, the names a progress
bar, ``widecube ingest --timings`` and ``widecube jobs`` use; :data:`STEPS` says what each
covers): ``unpack``, ``validate``, ``compute``, ``verify``, ``publish``. The compute step's
parts (``compute_parts``, from the fraction it reports, ``_ingest.COMPUTE_PHASES``):

* ``pass 1`` — open the input, stream it block by block (values checked, per-cell library
  sizes counted) and spill every non-zero to its gene bucket on disk;
* ``pass 2`` — obs/var written, then every gene slab (a bucket counting-sorted into
  gene-major order) fed through every view (summaries on raw and normalized for each
  grouping, exact quantiles, the gene-major matrix, markers' inputs, gene stats);
* ``views written`` — the views' ``finish``: ranking markers, writing what each accumulated.

A step's time runs from the end of the previous step to its own last report (``unpack`` from
the end of the imports), so set-up between two steps is charged to the later one; ``close``
is what is left between the last report and the call's return. ``views`` splits the time
inside each view's ``begin``/``consume``/``finish``/``verify`` (statistics shared between
views are computed lazily, charged to the first view that asks for them). ``compute_cpu`` and
``cpu`` are the process's CPU seconds (every thread; user, system) over each compute part and
the whole call, with cores (CPU over wall): unlike wall times, they mean something on a
loaded machine. ``--views`` builds only those views, as ``widecube ingest --views``.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import sys
import threading
import time
from collections import defaultdict
from typing import Any

STEPS: dict[str, str] = {
    "unpack": "the version recorded; an archive unpacked, a stored input copied in",
    "validate": "the input opened; cell ids, gene names and every grouping checked",
    "compute": "pass 1 (stream the input, spill non-zeros by gene), pass 2 (gene slabs through "
    "every view), the views written",
    "verify": "the verifier re-reads the staged snapshot and moves it into place",
    "publish": "the catalog transaction",
    "close": "between publish's report and the call's return (work folder removed)",
}
"""Every step the ingest reports (the job's steps), with what it covers (the report's table uses it)."""

PHASES = ("pass 1", "pass 2", "views written")
"""The compute step's parts, told apart by the fraction it reports (``_ingest.COMPUTE_PHASES``)."""

_HOOKS = ("begin", "consume", "finish", "verify")


class RssByPhase:
    """Samples this process's ``VmRSS`` every ``interval`` s and keeps the peak per phase.

    The phase is the view hook running (``markers.consume``), else the step last reported
    (``read``): where the peak happens says what to shrink.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.step = "start"
        self.hook: str | None = None
        self.peaks: dict[str, int] = {}
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssByPhase:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        with open("/proc/self/status") as f:
            rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        phase = self.hook or self.step
        if rss > self.peaks.get(phase, 0):
            self.peaks[phase] = rss

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()


def _time_views(spent: dict[str, dict[str, float]], rss: RssByPhase | None = None) -> None:
    """Wrap each registered view's hooks so the seconds inside them add up in ``spent``
    (and, with ``rss``, the sampler knows which hook is running): ``begin`` is the creation
    of the view's per-build builder, ``consume``/``finish`` its methods, ``verify`` that of
    the reader of the encoding it writes."""
    from widecube.views import views

    for view in views():
        owners = {
            "begin": (view.builder, "__init__"),
            "consume": (view.builder, "consume"),
            "finish": (view.builder, "finish"),
            "verify": (view.reader_class, "verify"),
        }
        for hook in _HOOKS:
            owner, attr = owners[hook]
            method = getattr(owner, attr, None)
            if method is None:
                continue

            @functools.wraps(method)
            def timed(
                *args: Any, _m: Any = method, _k: tuple[str, str] = (view.name, hook), **kw: Any
            ) -> Any:
                began = time.perf_counter()
                if rss is not None:
                    rss.hook = f"{_k[0]}.{_k[1]}"
                try:
                    return _m(*args, **kw)
                finally:
                    spent[_k[0]][_k[1]] += time.perf_counter() - began
                    if rss is not None:
                        rss.hook = None

            setattr(owner, attr, timed)  # on the class: only this (benchmark) process sees it


def _cpu() -> tuple[float, float]:
    """This process's (user, system) CPU seconds so far, every thread."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def run(path: str, dataset: str, groupbys: list[str], views: str | None = None) -> dict[str, Any]:
    """Ingest ``path`` as ``dataset`` and return per-step seconds and the published record."""
    start = time.perf_counter()
    from widecube.config import Settings
    from widecube.pipeline import ingest
    from widecube.pipeline._ingest import COMPUTE_PHASES

    imported = time.perf_counter()
    imported_cpu = _cpu()
    last: dict[str, float] = {}
    last_cpu: dict[str, tuple[float, float]] = {}
    parts: dict[str, float] = {}  # each compute part's last report
    parts_cpu: dict[str, tuple[float, float]] = {}
    spent: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(_HOOKS, 0.0))
    rss = RssByPhase()
    _time_views(spent, rss)

    def progress(step: str, done: float) -> None:
        now, cpu = time.perf_counter(), _cpu()
        last.pop(step, None)  # keep insertion order = order of each step's last report
        last[step] = now
        last_cpu[step] = cpu
        rss.step = step
        if step == "compute" and done > 0:
            part = next(p for p in PHASES if done <= COMPUTE_PHASES[p][1])
            parts[part] = now
            parts_cpu[part] = cpu
            rss.step = f"compute: {part}"

    settings = Settings()
    with rss:
        record = ingest(
            path, dataset=dataset, groupbys=groupbys, settings=settings, progress=progress, views=views
        )
    end, end_cpu = time.perf_counter(), _cpu()
    steps: dict[str, float] = {}
    previous = imported
    for step, stamp in last.items():
        steps[step] = stamp - previous
        previous = stamp
    steps["close"] = end - previous
    compute_parts: dict[str, float] = {}
    compute_cpu: dict[str, dict[str, float]] = {}
    previous = last.get("validate", imported)
    previous_cpu = last_cpu.get("validate", imported_cpu)
    for part in PHASES:
        if part in parts:
            compute_parts[part] = parts[part] - previous
            compute_cpu[part] = _cpu_row(previous_cpu, parts_cpu[part], parts[part] - previous)
            previous, previous_cpu = parts[part], parts_cpu[part]
    return {
        "import_s": imported - start,
        "steps": steps,
        "step_meanings": {k: STEPS.get(k, "") for k in steps},
        "compute_parts": compute_parts,
        "compute_cpu": compute_cpu,
        "cpu": _cpu_row(imported_cpu, end_cpu, end - imported),
        "views": {name: {k: round(v, 3) for k, v in hooks.items()} for name, hooks in spent.items()},
        "total_s": end - start,
        "peak_rss_by_phase": dict(sorted(rss.peaks.items(), key=lambda kv: -kv[1])),
        "memory_budget": settings.memory,
        "version": record.version,
        "n_cells": record.n_cells,
        "n_genes": record.n_genes,
    }


def _cpu_row(a: tuple[float, float], b: tuple[float, float], wall: float) -> dict[str, float]:
    """CPU seconds from ``a`` to ``b`` (user, system, their sum), and cores: CPU over wall."""
    user, system = b[0] - a[0], b[1] - a[1]
    return {
        "user_s": round(user, 3),
        "sys_s": round(system, 3),
        "cpu_s": round(user + system, 3),
        "cores": round((user + system) / wall, 2) if wall > 0 else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the command line (a subset of ``widecube ingest``'s), run, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--groupby", action="append", default=[])
    parser.add_argument("--views", default=None, help="as widecube ingest --views (default: every view)")
    args = parser.parse_args(argv)
    json.dump(run(args.path, args.dataset, args.groupby, args.views), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
