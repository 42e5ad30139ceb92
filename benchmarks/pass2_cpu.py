"""Pass 2's CPU time, where it goes and how many cores each part can use, on any machine load.

Wall times on a shared machine say little; CPU seconds do not depend on the load, and the
share of a part's CPU spent outside the calling thread says how parallel it is (1.0: one
core; 2.0 on two cores: every thread busy). This script spills an input once (pass 1, kept in
a work folder), then runs pass 2 over it as the ingest does (every slab through every
selected view's part, then each builder's ``finish``), as often as asked, and prints one JSON
object::

    $ python benchmarks/pass2_cpu.py prepare data.h5ad --work /tmp/w --groupby cluster
    $ python benchmarks/pass2_cpu.py run --work /tmp/w [--views summary,quantiles] [--repeat 2]
    {"nnz": ..., "cpu_s": 31.2, "sys_s": 0.4, "ns_per_value": 294.1,
     "parts": {"read": {"cpu_s": ..., "thread_s": ..., "cores": 1.0}, "genes": ..., ...}}

Parts (exclusive: a part nested in another is not counted twice): ``read`` (a bucket read and
counting-sorted into a slab), each view's ``run`` on a slab, ``stats.<method>`` (what views
share, charged here and not to the view that asked first), each numba kernel a module calls
(``kernel.<name>``), ``write.<view>`` (the zarr writes, synchronous here so they are counted:
the ingest runs them in background threads) and ``finish.<view>``; a view's part includes its
builder's ``merge``. ``cores``
is the part's process CPU over its calling thread's CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import pickle
import resource
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


class Timer:
    """Exclusive process CPU, user and system, calling-thread CPU and wall per named part."""

    def __init__(self) -> None:
        self.parts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._stack: list[list[Any]] = []

    @staticmethod
    def _now() -> tuple[float, float, float, float]:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime, r.ru_stime, time.thread_time(), time.perf_counter()

    def __call__(self, name: str) -> Any:
        timer = self

        class _Scope:
            def __enter__(self) -> None:
                timer._stack.append([name, timer._now(), [0.0, 0.0, 0.0, 0.0]])

            def __exit__(self, *exc: object) -> None:
                part, began, children = timer._stack.pop()
                now = timer._now()
                spent = [b - a for a, b in zip(began, now, strict=True)]
                row = timer.parts[part]
                for key, total, child in zip(
                    ("user_s", "sys_s", "thread_s", "wall_s"), spent, children, strict=True
                ):
                    row[key] += total - child
                row["calls"] += 1
                if timer._stack:
                    outer = timer._stack[-1][2]
                    for i in range(4):
                        outer[i] += spent[i]

        return _Scope()

    def wrap(self, name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kw: Any) -> Any:
            with self(name):
                return fn(*args, **kw)

        return timed


def prepare(args: argparse.Namespace) -> int:
    from widecube.compute import spill_by_gene
    from widecube.config import Settings
    from widecube.io import open_input

    settings = Settings()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    source = open_input(args.path)
    obs, var = source.obs(), source.var()
    spill = spill_by_gene(
        source,
        obs_names=obs.index,
        var_names=var.index,
        workdir=work,
        block_nnz=settings.block_nnz,
        slab_bytes=settings.memory // 16,
        threads=settings.compute_threads,
    )
    spill.close()
    state = {
        "buckets": spill.buckets(),
        "cell_total": spill.cell_total,
        "cell_nnz": spill.cell_nnz,
        "nnz": spill.nnz,
        "negative": spill.negative,
        "non_integer": spill.non_integer,
        "dtype": spill.dtype,
        "width": spill.width,
        "obs": obs,
        "var": var,
        "groupbys": args.groupby,
    }
    (work / "state.pickle").write_bytes(pickle.dumps(state))
    print(json.dumps({"work": str(work), "nnz": int(spill.nnz), "buckets": state["buckets"].n_buckets}))
    return 0


def _instrument(timer: Timer) -> None:
    """Time every method of SlabStats and every numba kernel a view or _spec module calls."""
    from numba.core.registry import CPUDispatcher

    import widecube.views as views_pkg
    from widecube.views import _spec

    cls = _spec.SlabStats
    for attr, value in list(vars(cls).items()):
        if callable(value) and not attr.startswith("__"):
            setattr(cls, attr, timer.wrap(f"stats.{attr}", value))
    modules = [
        _spec,
        *(getattr(views_pkg, m) for m in dir(views_pkg) if m.startswith("_") and not m.startswith("__")),
    ]
    for module in modules:
        for attr, value in list(vars(module).items()):
            if isinstance(value, CPUDispatcher):
                setattr(module, attr, timer.wrap(f"kernel.{attr}", value))


def run(args: argparse.Namespace) -> int:
    from widecube.compute._malloc import bound_heap

    try:
        from widecube.compute._malloc import roomy_heap
    except ImportError:  # a widecube from before it: the 1 MiB policy throughout
        roomy_heap = contextlib.nullcontext
    from widecube.config import Settings
    from widecube.snapshot import SnapshotWriter
    from widecube.views import INPUT, NORMALIZED, BuildContext, detect_kind, select_views

    bound_heap()  # the malloc policy pass 1 leaves for pass 2 in an ingest
    settings = Settings()
    state = pickle.loads((Path(args.work) / "state.pickle").read_bytes())
    timer = Timer()
    _instrument(timer)
    specs = select_views(args.views.split(",") if args.views else None)
    results: list[dict[str, Any]] = []
    for _ in range(args.repeat):
        timer.parts.clear()
        ctx = BuildContext(
            "bench",
            "v",
            state["obs"],
            state["var"],
            list(state["groupbys"]),
            settings.max_categories,
            quantiles=tuple(settings.quantiles),
            target_sum=settings.target_sum,
        )
        kind = detect_kind(negative=state["negative"], non_integer=state["non_integer"])
        ctx.input_kind = kind
        ctx.layers = [INPUT, NORMALIZED] if kind == "counts" and settings.normalize else [INPUT]
        ctx.cell_total, ctx.nnz, ctx.slab_width = state["cell_total"], state["nnz"], state["width"]
        ctx.value_dtype = state["dtype"]
        ctx.obs = state["obs"].assign(total_counts=state["cell_total"], n_genes_by_counts=state["cell_nnz"])
        staging = Path(tempfile.mkdtemp(prefix="pass2-")) / "snap"
        out = SnapshotWriter(staging, dataset="bench", version="v")
        began = Timer._now()
        try:
            builders = [(spec.name, spec.builder(ctx, out)) for spec in specs]
            buckets = state["buckets"]
            with roomy_heap():  # as the ingest's slab loop
                for b in range(buckets.n_buckets):
                    _slabs(timer, ctx, builders, buckets.slabs(b, consume=False, scratch=staging.parent), out)
            for name, builder in builders:
                out._sink._write = _put(timer, f"write.{name}")
                with timer(f"finish.{name}"):
                    out.add_view(next(s for s in specs if s.name == name), builder.finish())
        finally:
            out.close()
            shutil.rmtree(staging.parent, ignore_errors=True)
        ended = Timer._now()
        user, system = ended[0] - began[0], ended[1] - began[1]
        parts = {}
        for name, row in sorted(timer.parts.items(), key=lambda kv: -(kv[1]["user_s"] + kv[1]["sys_s"])):
            cpu = row["user_s"] + row["sys_s"]
            parts[name] = {
                "cpu_s": round(cpu, 3),
                "sys_s": round(row["sys_s"], 3),
                "thread_s": round(row["thread_s"], 3),
                "cores": round(cpu / row["thread_s"], 2) if row["thread_s"] > 0.01 else None,
                "calls": int(row["calls"]),
            }
        results.append(
            {
                "nnz": int(state["nnz"]),
                "views": [s.name for s in specs],
                "cpu_s": round(user + system, 3),
                "sys_s": round(system, 3),
                "wall_s": round(ended[3] - began[3], 3),
                "ns_per_value": round(1e9 * (user + system) / int(state["nnz"]), 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "parts": parts,
            }
        )
    print(json.dumps(results[-1] if len(results) == 1 else results))
    return 0


def _slabs(timer: Timer, ctx: Any, builders: list[tuple[str, Any]], slabs: Any, out: Any) -> None:
    """Every slab of one bucket through every builder, each part timed."""
    while True:
        with timer("read"):
            slab = next(slabs, None)
        if slab is None:
            return
        stats = ctx.slab_stats(slab)
        for name, builder in builders:
            out._sink._write = _put(timer, f"write.{name}")
            with timer(name):
                builder.consume(stats)


def _put(timer: Timer, name: str) -> Any:
    def put(array: Any, region: tuple[slice, ...], values: Any) -> None:
        with timer(name):
            array[region] = values

    return put


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="pass 1 into a work folder, kept for runs")
    p.add_argument("path")
    p.add_argument("--work", required=True)
    p.add_argument("--groupby", action="append", default=[])
    r = sub.add_parser("run", help="pass 2 over a prepared work folder")
    r.add_argument("--work", required=True)
    r.add_argument("--views", default=None)
    r.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    return prepare(args) if args.cmd == "prepare" else run(args)


if __name__ == "__main__":
    sys.exit(main())
