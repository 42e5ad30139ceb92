"""Scale-out benchmarks (issue 12): the Dask scheduler at the task count of a 10^7 × 50,000
ingest, serving from an object store after ``warm``, and B1M on a local Dask cluster and on a
local S3 server, each against the single-process, local-disk figure measured in the same run.

    python benchmarks/scale.py scheduler                 # full task graph, empty bodies (~1 min)
    python benchmarks/scale.py serve                     # dot-plot p50: S3 after warm vs local
    python benchmarks/scale.py ingest --dataset b1m      # 2 rounds of 3 ingests of B1M (~30 min)
    python benchmarks/scale.py ingest --dataset quick --no-record   # the same code, small
    python benchmarks/scale.py ingest --dataset b1m --setups single,dask2   # B1M without S3

**scheduler**: the two passes' task counts come from the code that makes them
(``row_bounds`` for pass 1, ``bucket_geometry`` for pass 2) for ``--cells`` × ``--genes`` at
``--nnz-per-cell`` with the default memory budget and block size. The graph is submitted as
the ingest submits it (one ``client.submit`` per task, same retries and keys, the build
context scattered to every worker first, results gathered in order) to a local cluster of
``--workers`` single-threaded processes, with task bodies that do nothing but return what the
real ones return to the client (pass 1: its rows' library sizes, 16 bytes a cell; pass 2:
nothing), so the time is the scheduler's, the transfers' and the client's. Recorded: the
submission time of each pass, the wall time of each, overhead per task (wall / tasks) and the
broadcast time of a build context of the real size (per-cell arrays).

**serve**: one dataset (``--cells`` × ``--genes``, 100 clusters) ingested into a local folder
and into a local S3 server (moto); after ``warm`` the dot-plot query (50 genes × 100 groups,
mean and fraction expressing) is timed in-process on both, interleaved, ``--repeat`` times.
Target: S3 p50 / local p50 ≤ 1.10.

**ingest**: ``widecube ingest`` (a fresh process, GNU time's peak RSS) of a benchmark dataset
three times: single process on local disk; ``--workers 2`` (a local cluster of 2
single-threaded workers) on local disk; single process with the input, the spill and the
snapshot on a local S3 server (the input copied into the work folder and checked while it is
read; the spill uploaded range of rows by range, ``WIDECUBE_SPILL``, and read back by byte
ranges; ``spill_left`` counts the objects left under its prefix afterwards). Targets: Dask /
single ≤ 1.15, S3 / local ≤ 1.4, identical manifest checksums, the largest process ≤ 2 GB. The
S3 server (``--s3-server``) is LocalBucket by default, which keeps objects as files in the
run's folder (it has no DeleteObjects: widecube sends it one signed DELETE per object instead,
``snapshot._signed``); moto, the tests' server, holds an object whole in memory, so B1M's 16 GB
input cannot go through it on a 24 GB machine. The S3 run also records the server's own CPU
seconds during the ingest (``server_cpu_s``: it shares the two cores with the ingest here,
unlike a real object store). Every run's input starts in the page cache (``warm_page_cache``,
as for every benchmark here): the local file before a local run, LocalBucket's file of the
object before the S3 run (from 12-04 22:30; before, the S3 run read an object the local runs
had pushed out of the cache, and its unpack step took 22-25 s instead of 14-15 s).
``--setups single,dask2`` leaves the S3 run out, recorded as not run with its reason (``--s3-not-run``).
The runs go in ``--rounds`` rounds (default 2: single, dask2, s3, then again), each ratio taken
within a round and the verdict on their median, the least and the most favourable round shown
beside it: this VM's speed drifts by tens of percent within minutes (each run records a speed
check just before it, ``_speed_check``), and one round of B1M measured S3 / local 1.416,
1.468 and 1.973 within 80 minutes of the same day, the last with the VM 40 % slower before
its S3 run than before its local one.

Every run is recorded as one JSON file in ``benchmarks/results/`` (``_record.py``; refused
from a dirty tree unless ``--force``; ``--no-record``: printed only) and rendered by
``report.py`` (``_scale_report.py``); ``capacity.py`` turns the recorded rates into
``docs/capacity.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from _datasets import DATASETS, DatasetInfo, DatasetSpec, ensure_dataset
from _measure import measure, warm_page_cache
from _record import DirtyTree, begin, regenerate, save
from _s3server import S3_SERVERS, moto_server, s3_server, server_cpu_s

from widecube.compute import row_bounds
from widecube.compute._spill import BYTES_PER_VALUE, bucket_geometry, chunk_buckets
from widecube.config import Settings

HERE = Path(__file__).resolve().parent
BUCKET = "widecube-bench"
DOTPLOT_STATS = ["mean", "frac_expressing"]
SERVE_SPEC = DatasetSpec(
    "serve-s3",
    n_cells=20_000,
    n_genes=10_000,
    n_types=100,
    n_donors=8,
    nnz_per_cell=1_000,
    note="serving from an object store after warm vs local disk",
)


def _stamp() -> tuple[datetime, str]:
    started = datetime.now(UTC)
    return started, started.strftime("%Y%m%dT%H%M%SZ")


def _finish(record: dict[str, Any], slug: str, stamp: str, no_record: bool) -> None:
    print(json.dumps(record, indent=1, default=str))
    if not no_record:
        out = save(record, slug, stamp=stamp)
        regenerate()
        print(f"recorded {out}; benchmarks/RESULTS.md and the README regenerated")


def _verdict(
    what: str, value: float | bool | None, shown: str, target: str, ok: bool | None
) -> dict[str, Any]:
    return {"what": what, "value": value, "shown": shown, "target_shown": target, "pass": ok}


# -- scheduler --------------------------------------------------------------------------------


def _pass1_body(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """What a pass-1 task hands back to the client: its rows' library sizes and gene counts."""
    return np.zeros(rows, dtype=np.float64), np.zeros(rows, dtype=np.int64)


def _pass2_body(ctx: Any, bucket: int) -> None:
    """A pass-2 task's body, less the work: it needs the scattered context, returns nothing."""


def _graph(client: Any, n1: list[int], n2: int, ctx_bytes: int) -> dict[str, float]:
    """Both passes as the ingest submits them; seconds of each part."""
    t0 = time.perf_counter()
    futures = [
        client.submit(_pass1_body, b - a, key=f"bench-pass1-{i:05d}", pure=False, retries=2)
        for i, (a, b) in enumerate(zip(n1[:-1], n1[1:], strict=True))
    ]
    t1 = time.perf_counter()
    for f in futures:
        f.result()
        f.release()
    t2 = time.perf_counter()
    [ctx] = client.scatter([np.zeros(ctx_bytes // 8)], broadcast=True, hash=False)
    t3 = time.perf_counter()
    futures = [
        client.submit(_pass2_body, ctx, b, key=f"bench-pass2-{b:05d}", pure=False, retries=2)
        for b in range(n2)
    ]
    t4 = time.perf_counter()
    for f in futures:
        f.result()
        f.release()
    t5 = time.perf_counter()
    client.cancel([ctx])
    return {
        "pass1_submit_s": t1 - t0,
        "pass1_wall_s": t2 - t0,
        "context_broadcast_s": t3 - t2,
        "pass2_submit_s": t4 - t3,
        "pass2_wall_s": t5 - t3,
    }


def scheduler(args: argparse.Namespace, machine: dict[str, Any]) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    settings = Settings(storage=tempfile.gettempdir())
    nnz = args.cells * args.nnz_per_cell
    n1 = row_bounds(args.cells, nnz, args.workers, settings.block_nnz)
    width, n_buckets = bucket_geometry(args.genes, nnz, settings.memory // 16)
    n2 = math.ceil(n_buckets / chunk_buckets(n_buckets, nnz, settings.memory // 16 // BYTES_PER_VALUE))
    groupings = 2
    ctx_bytes = args.cells * (8 + 8 + 4 * groupings)  # cell_total, cell_nnz, a code per grouping
    by_workers = {
        str(w): {
            "pass1_tasks": len(row_bounds(args.cells, nnz, w, settings.block_nnz)) - 1,
            "pass2_tasks": n2,
        }
        for w in (8, 32, 128)
    }
    runs = []
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            host="127.0.0.1",
        ) as cluster,
        Client(cluster) as client,
    ):
        _graph(client, [0, 10, 20], 2, 8)  # connections and imports before the clock
        for _ in range(args.repeat):
            runs.append(_graph(client, n1, n2, ctx_bytes))
    tasks = len(n1) - 1 + n2
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    wall = median["pass1_wall_s"] + median["pass2_wall_s"]
    per_task_ms = 1000 * wall / tasks  # pass 2's wall starts after the context's broadcast
    return {
        "name": "scale scheduler",
        "cells": args.cells,
        "genes": args.genes,
        "nnz_per_cell": args.nnz_per_cell,
        "nnz": nnz,
        "workers": args.workers,
        "threads_per_worker": 1,
        "block_nnz": settings.block_nnz,
        "memory": settings.memory,
        "pass1_tasks": len(n1) - 1,
        "pass2_tasks": n2,
        "bucket_width_genes": width,
        "tasks": tasks,
        "tasks_by_workers": by_workers,
        "context_bytes": ctx_bytes,
        "pass1_result_bytes": args.cells * 16,
        "repeats": runs,
        "median": median,
        "graph_wall_s": wall,
        "submit_s": median["pass1_submit_s"] + median["pass2_submit_s"],
        "overhead_per_task_ms": per_task_ms,
        "verdicts": [
            _verdict(
                "scheduling overhead per task (both passes' wall, context broadcast aside, / tasks)",
                round(per_task_ms, 3),
                f"{per_task_ms:.2f} ms",
                "—",
                True,
            )
            | {"group": "record"},
            _verdict(
                "submission time of the whole graph (both passes' submit loops)",
                round(median["pass1_submit_s"] + median["pass2_submit_s"], 4),
                f"{median['pass1_submit_s'] + median['pass2_submit_s']:.3f} s",
                "—",
                True,
            )
            | {"group": "record"},
        ],
    }


# -- serve ------------------------------------------------------------------------------------


def _p(samples: list[float]) -> dict[str, float]:
    p50, p95 = np.percentile(samples, [50, 95])
    return {"p50_ms": float(p50) * 1000, "p95_ms": float(p95) * 1000, "n": len(samples)}


def _kinds(objects: dict[str, int]) -> dict[str, Any]:
    """The snapshot's objects by what they hold: chunks of the gene-major matrix (they grow with
    the non-zeros), of per-cell arrays (with the cells), of the per-group arrays (with groups ×
    genes), and the rest (tables, metadata), with the number of per-group arrays."""
    matrix = [p for p in objects if "/matrix.zarr/X/data/c/" in p or "/matrix.zarr/X/indices/c/" in p]
    per_cell = [p for p in objects if ("/matrix.zarr/obs/" in p or "/obsm.zarr/" in p) and "/c/" in p]
    grouped = [p for p in objects if "/layers/" in p and "/c/" in p and "/matrix.zarr/" not in p]
    arrays = {p.split("/c/")[0] for p in grouped}
    return {
        "matrix_chunks": len(matrix),
        "matrix_bytes": sum(objects[p] for p in matrix),
        "per_cell_chunks": len(per_cell),
        "grouped_chunks": len(grouped),
        "grouped_arrays": len(arrays),
        "grouped_bytes": sum(objects[p] for p in grouped),
        "other": len(objects) - len(matrix) - len(per_cell) - len(grouped),
    }


def serve(args: argparse.Namespace, machine: dict[str, Any]) -> dict[str, Any]:
    from widecube.pipeline import ingest
    from widecube.query import Widecube

    spec = dataclasses.replace(SERVE_SPEC, n_cells=args.cells, n_genes=args.genes)
    info = ensure_dataset(spec, HERE / "data")
    with tempfile.TemporaryDirectory(prefix="widecube-scale-") as tmp, moto_server(BUCKET):
        root = Path(tmp)
        local = Settings(storage=root / "local", auth=False)
        remote = Settings(
            storage=f"s3://{BUCKET}/wc",
            catalog_url=f"sqlite:///{root / 'catalog.sqlite'}",
            cache=root / "s3-cache",
            work=root / "s3-work",
            auth=False,
        )
        ingest_s = {}
        for label, settings in (("local", local), ("s3", remote)):
            t0 = time.perf_counter()
            ingest(info.path, dataset="d", groupbys=["cluster"], settings=settings)
            ingest_s[label] = time.perf_counter() - t0
        from widecube.snapshot import open_storage

        objects = open_storage(str(remote.storage)).sub("datasets/d").list()
        wcs = {"local": Widecube(local), "s3": Widecube(remote)}
        try:
            warm_s = {}
            for label, wc in wcs.items():
                t0 = time.perf_counter()
                wc.warm("d")
                warm_s[label] = time.perf_counter() - t0
            rng = np.random.default_rng(0)
            names = wcs["local"].genes("d", limit=args.genes)[1]
            genes = [str(g) for g in rng.choice(names, 50, replace=False)]

            def query(wc: Widecube) -> Callable[[], Any]:
                return lambda: wc.summary("d", genes=genes, groupby="cluster", stats=DOTPLOT_STATS)

            calls = {label: query(wc) for label, wc in wcs.items()}
            a, b = calls["local"](), calls["s3"]()
            for stat in DOTPLOT_STATS:
                np.testing.assert_array_equal(np.asarray(a.values[stat]), np.asarray(b.values[stat]))
            for call in calls.values():  # first calls outside the clock
                for _ in range(50):
                    call()
            samples: dict[str, list[float]] = {"local": [], "s3": []}
            for _ in range(args.repeat):
                for label, call in calls.items():
                    t0 = time.perf_counter()
                    call()
                    samples[label].append(time.perf_counter() - t0)
        finally:
            for wc in wcs.values():
                wc.close()
    figures = {label: _p(s) for label, s in samples.items()}
    ratio = figures["s3"]["p50_ms"] / figures["local"]["p50_ms"]
    return {
        "name": "scale serve-s3",
        "dataset": info.to_json(),
        "groups": spec.n_types,
        "genes_asked": 50,
        "stats": DOTPLOT_STATS,
        "ingest_s": ingest_s,
        "warm_s": warm_s,
        "snapshot_objects": len(objects),
        "snapshot_bytes": sum(objects.values()),
        "objects_by_kind": _kinds(objects),
        "in_process": figures,
        "ratio_p50": ratio,
        "verdicts": [
            _verdict(
                "dot-plot p50 in-process: S3 store after warm / local disk",
                round(ratio, 4),
                f"{ratio:.3f}",
                "≤ 1.10",
                ratio <= 1.10,
            )
        ],
    }


# -- ingest -----------------------------------------------------------------------------------


def _manifest_files(settings_env: dict[str, str]) -> dict[str, str]:
    from widecube.snapshot import open_storage

    files = open_storage(settings_env["WIDECUBE_STORAGE"]).sub("datasets")
    listed = [p for p in files.list() if p.endswith("/manifest.json")]
    (one,) = listed
    manifest = json.loads(files.get(one))
    return {path: entry["sha256"] for path, entry in manifest["files"].items()}


@contextlib.contextmanager
def _folder(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="widecube-scale-") as tmp:
        yield Path(tmp)


def _room_for_s3(info: DatasetInfo, root: Path) -> None:
    """The S3 run needs the input staged from the store; the object store holds its own copy
    of the input, the spill (at most 12 bytes a value) and the snapshot, on the same disk. On a disk too small
    for the local input as well (B1M: 16 GB), the local copy goes (``ensure_dataset``
    writes it again, from the same seed, on the next run)."""
    need = 2 * info.path.stat().st_size + 12 * info.nnz
    free = shutil.disk_usage(root).free
    if free < need and info.path.exists():
        print(
            f"removing {info.path} ({info.path.stat().st_size / 1e9:.1f} GB) to make room for the "
            f"S3 run ({need / 1e9:.0f} GB needed, {free / 1e9:.0f} GB free)",
            flush=True,
        )
        info.path.unlink()


def _speed_check() -> float:
    """Seconds of one core for 10^7 Python additions, timed just before each run: this VM's
    speed drifts within a session (0.32, 0.35 and 0.45 s before the three runs of one B1M
    benchmark, 12-05 14:16, an Intel VM), and runs compared by their ratio are minutes apart,
    so the record shows what the machine was doing."""
    started, total = time.process_time(), 0
    for i in range(10**7):
        total += i
    return round(time.process_time() - started, 3)


def _ingest_round(
    args: argparse.Namespace,
    info: DatasetInfo,
    root: Path,
    aws: dict[str, str],
    base: dict[str, str],
    widecube: str,
    groupbys: list[str],
    key: str,
    r: int,
    last: bool,
) -> dict[str, Any]:
    """One round of the runs (single, dask2, s3), each in a folder or prefix of its own,
    removed once its checksums are read; the local input goes (``_room_for_s3``) only before
    the last round's S3 run, as a later round reads it again."""
    import boto3

    spec = info.spec
    setups = {
        "single": ({"WIDECUBE_STORAGE": str(root / "single")}, str(info.path), []),
        "dask2": ({"WIDECUBE_STORAGE": str(root / "dask2")}, str(info.path), ["--workers", "2"]),
        "s3": (
            {
                **aws,
                "WIDECUBE_STORAGE": f"s3://{BUCKET}/wc{r}",
                "WIDECUBE_CATALOG_URL": f"sqlite:///{root / f's3-catalog{r}.sqlite'}",
                "WIDECUBE_CACHE": str(root / f"s3-cache{r}"),
                "WIDECUBE_WORK": str(root / "s3-work"),
                "WIDECUBE_SPILL": f"s3://{BUCKET}/spill",
            },
            f"s3://{BUCKET}/{key}",
            [],
        ),
    }
    runs: dict[str, Any] = {}
    for label, (env, source, extra) in setups.items():
        if label not in args.setups:
            continue
        if source == str(info.path):
            warm_page_cache(info.path)
        elif args.s3_server == "localbucket":  # the same warm start: the server's file of the object
            warm_page_cache(root / "s3-objects" / BUCKET / key)
        cmd = [widecube, "ingest", source, "--dataset", spec.name, *groupbys, *extra, "--timings"]
        speed, load = _speed_check(), os.getloadavg()
        served = server_cpu_s(aws)
        m = measure(cmd, env={**base, **env, "WIDECUBE_AUTH": "false"}, timeout=args.timeout)
        served = server_cpu_s(aws) - served
        if not m.ok:
            raise SystemExit(f"{label}: {' '.join(cmd)} failed ({m.status}):\n{m.stderr_tail}")
        timings = json.loads(m.stdout.strip().splitlines()[-1])
        runs[label] = {
            "command": " ".join(cmd[1:]),
            "wall_s": m.wall_s,
            "cpu_s": m.cpu_s,
            "sys_s": m.sys_s,
            "steal_s": m.steal_s,
            "settle_s": m.settle_s,  # the untimed sync before it (see _measure.measure)
            "speed_check_s": speed,  # the VM's speed just before: see _speed_check
            "load_average_at_start": [round(x, 2) for x in load],
            "peak_rss": m.peak_rss,
            "peak_tree_rss": m.peak_tree_rss,
            "steps": timings.get("steps"),
            "compute_parts": timings.get("compute_parts"),  # pass 1, pass 2, views written
            "files": _manifest_files({**env}),
        }
        if label == "s3":  # the S3 server's CPU, on the same cores, during the ingest
            runs[label]["server_cpu_s"] = round(served, 2)
            listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="spill/")
            runs[label]["spill_left"] = listed.get("KeyCount", 0)
            if args.s3_server == "localbucket":  # its checksums are kept above: the disk goes
                shutil.rmtree(root / "s3-objects" / BUCKET / f"wc{r}", ignore_errors=True)
                shutil.rmtree(root / f"s3-cache{r}", ignore_errors=True)
        else:  # its checksums are kept above: the disk goes to the next run
            shutil.rmtree(root / label, ignore_errors=True)
        if label == "dask2" and "s3" in args.setups and last:
            _room_for_s3(info, root)
    return runs


def _of_rounds(ratios: list[float]) -> str:
    return f", median of {len(ratios)} rounds" if len(ratios) > 1 else ""


def _spread(ratios: list[float]) -> str:
    """The least and the most favourable round, beside the median."""
    return f" (rounds {max(ratios):.3f} to {min(ratios):.3f})" if len(ratios) > 1 else ""


def ingest_runs(args: argparse.Namespace, machine: dict[str, Any]) -> dict[str, Any]:
    spec = DATASETS[args.dataset]
    info = ensure_dataset(spec, HERE / "data")
    widecube = str(Path(sys.executable).with_name("widecube"))
    groupbys = [a for g in spec.groupbys for a in ("--groupby", g)]
    rounds: list[dict[str, Any]] = []
    key = f"in/{info.path.name}"  # the input's object in the S3 run
    with _folder(args.work) as root, s3_server(args.s3_server, BUCKET, root / "s3-objects") as aws:
        import boto3

        t0 = time.perf_counter()
        if "s3" in args.setups:
            from botocore.config import Config

            # moto joins a multipart upload's parts in one bytearray when it completes: minutes
            # for a 4 GB input on a slow VM, past boto3's 60 s read timeout (then a retry: 500);
            # LocalBucket copies the parts into one file (as long for B1M's 16 GB)
            s3 = boto3.client("s3", config=Config(read_timeout=900, retries={"max_attempts": 1}))
            s3.upload_file(str(info.path), BUCKET, key)
        upload_s = time.perf_counter() - t0
        base = {k: v for k, v in os.environ.items() if not k.startswith("WIDECUBE_")}
        for r in range(args.rounds):
            last = r == args.rounds - 1
            runs = _ingest_round(args, info, root, aws, base, widecube, groupbys, key, r, last)
            rounds.append(runs)
    runs = rounds[0]
    single_files = runs["single"]["files"]
    same_dask = all(rnd["dask2"]["files"] == single_files for rnd in rounds)
    same_s3 = all(rnd["s3"]["files"] == single_files for rnd in rounds) if "s3" in runs else None
    n_files = len(single_files)
    for rnd in rounds:
        for run in rnd.values():
            run["files"] = len(run["files"])
    # each round's ratio of runs minutes apart; the verdict on their median, the least and the
    # most favourable shown beside it (this VM's speed drifts: see _speed_check)
    dask_ratios = [rnd["dask2"]["wall_s"] / rnd["single"]["wall_s"] for rnd in rounds]
    s3_ratios = [rnd["s3"]["wall_s"] / rnd["single"]["wall_s"] for rnd in rounds] if "s3" in runs else []
    dask_ratio = statistics.median(dask_ratios)
    s3_ratio = statistics.median(s3_ratios) if s3_ratios else None
    largest = max(rnd["dask2"]["peak_rss"] for rnd in rounds)
    same = same_dask and same_s3 is not False
    return {
        "name": f"scale ingest-{spec.name}",
        "dataset": info.to_json(),
        "upload_s": upload_s,
        "s3_server": args.s3_server if "s3" in runs else None,
        "runs": runs,
        "rounds": rounds[1:],  # the runs of the rounds after the first, alike
        "ratios": {"dask2": dask_ratios, "s3": s3_ratios},
        "snapshot_files": n_files,
        "identical_dask": same_dask,
        "identical_s3": same_s3,
        "verdicts": [
            _verdict(
                "Dask 2 workers / single process, wall" + _of_rounds(dask_ratios),
                round(dask_ratio, 4),
                f"{dask_ratio:.3f}" + _spread(dask_ratios),
                "≤ 1.15",
                dask_ratio <= 1.15,
            ),
            _verdict(
                "S3 (input, spill, snapshot) / local disk, wall" + _of_rounds(s3_ratios),
                None if s3_ratio is None else round(s3_ratio, 4),
                f"not run: {args.s3_not_run}" if s3_ratio is None else f"{s3_ratio:.3f}" + _spread(s3_ratios),
                "≤ 1.4",
                None if s3_ratio is None else s3_ratio <= 1.4,
            ),
            _verdict(
                f"manifest checksums identical ({'Dask, S3' if same_s3 is not None else 'Dask'} vs single)",
                same,
                str(same).lower(),
                "true",
                same,
            ),
            _verdict(
                "largest process of the Dask runs, peak RSS (GB)",
                round(largest / 1e9, 3),
                f"{largest / 1e9:.2f} GB",
                "≤ 2 GB",
                largest <= 2e9,
            ),
        ],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("scheduler", help="the task graph of a 10^7 × 50,000 ingest, empty bodies")
    s.add_argument("--cells", type=int, default=10**7)
    s.add_argument("--genes", type=int, default=50_000)
    s.add_argument("--nnz-per-cell", type=int, default=5_000, help="5,000: ~5·10^10 non-zeros, ~500 GB")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--repeat", type=int, default=3)
    v = sub.add_parser("serve", help="dot-plot p50 from an S3 store after warm vs local disk")
    v.add_argument("--cells", type=int, default=SERVE_SPEC.n_cells)
    v.add_argument("--genes", type=int, default=SERVE_SPEC.n_genes)
    v.add_argument("--repeat", type=int, default=2000)
    i = sub.add_parser("ingest", help="Dask 2 workers and S3 against the single process")
    i.add_argument("--dataset", choices=sorted(DATASETS), default="b1m")
    i.add_argument("--timeout", type=float, default=4 * 3600.0)
    i.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="rounds of the runs (single, dask2, s3, then again): each ratio is taken within a round, "
        "the verdict on their median (default 2)",
    )
    i.add_argument("--work", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    i.add_argument(
        "--setups",
        type=lambda v: ["single", "dask2", *(x for x in v.split(",") if x not in ("single", "dask2"))],
        default=["single", "dask2", "s3"],
        help="comma-separated runs (single and dask2 always; default: single,dask2,s3)",
    )
    i.add_argument(
        "--s3-server",
        choices=S3_SERVERS,
        default="localbucket",
        help="the local S3 server: localbucket (objects as files, streamed; default) or moto (in memory: "
        "B1M's 16 GB input does not fit it)",
    )
    i.add_argument(
        "--s3-not-run",
        default="left out on request (--setups)",
        help="why, in the record, when s3 is left out of --setups",
    )
    for q in (s, v, i):
        q.add_argument("--no-record", action="store_true", help="print only; nothing in results/")
        q.add_argument("--force", action="store_true", help="record even from a dirty tree (marked dirty)")
    args = p.parse_args(argv)
    try:
        machine = begin(record=not args.no_record, force=args.force)
    except DirtyTree as exc:
        sys.exit(str(exc))
    started, stamp = _stamp()
    load = [round(x, 2) for x in os.getloadavg()]
    run = {"scheduler": scheduler, "serve": serve, "ingest": ingest_runs}[args.what]
    record = run(args, machine)
    record = {
        **record,
        "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "load_average_at_start": load,
        "command": "python benchmarks/scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    slug = record["name"].replace(" ", "-")
    _finish(record, slug, stamp, args.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
