"""Write ``docs/capacity.md``: what a 10^7 × 50,000 matrix (and 100 of them) costs to ingest,
store and serve, every figure derived from rates recorded in ``benchmarks/results/*.json``.

The rates are per non-zero or per task, taken from the latest recorded run of each benchmark
(named in the document, with its file): B1M's ingest (``run.py``: core-seconds, bytes of the
input and of the snapshot per non-zero, the split between the passes and the client's own
steps), the scheduler at the target's task count and the object counts of a snapshot on S3
(``scale.py``), and, once recorded, B1M on two Dask workers and on S3 (``scale.py ingest``).
Until that last run exists its targets stand in for the measured factors and every figure that
uses them says so. What the code fixes rather than measures (at most 8 bytes a value in the
spill, 8 bytes a value in the decoded matrix, 256 buckets at most) is named as such; prices are
list prices written here, with the date they were read.

    python benchmarks/capacity.py            # rewrite docs/capacity.md
    python benchmarks/capacity.py --check    # exit 1 if it would change
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

from widecube.compute import row_bounds  # noqa: E402
from widecube.compute._buckets import INDEX_TYPES, VALUE_TYPES, index_code  # noqa: E402
from widecube.compute._pass import BLOCK_ROWS  # noqa: E402
from widecube.compute._spill import BYTES_PER_VALUE, bucket_geometry, chunk_buckets  # noqa: E402
from widecube.snapshot._store import _RANGE, _RANGES_IN_FLIGHT  # noqa: E402

CELLS, GENES, NNZ_PER_CELL = 10**7, 50_000, 5_000
NNZ = CELLS * NNZ_PER_CELL
MATRICES = 100
WORKERS = (8, 32, 128)
DECODED_BYTES_PER_VALUE = 8  # the decoded gene-major matrix: float32 value + int32 cell index
MEMORY, BLOCK_NNZ = 2 * 1024**3, 8_000_000  # Settings' defaults
# the spill of a float32 input: gene offsets within a bucket, cell offsets within a block of
# about BLOCK_ROWS rows (8 bits each where they fit) and the value (counts up to 255: 1 byte)
_OFFSETS = (
    INDEX_TYPES[index_code(bucket_geometry(GENES, NNZ, MEMORY // 16)[0])].itemsize
    + INDEX_TYPES[index_code(BLOCK_ROWS)].itemsize
)
SPILL_BYTES_PER_VALUE = _OFFSETS + VALUE_TYPES[2].itemsize
SPILL_BYTES_PER_COUNT = _OFFSETS + VALUE_TYPES[0].itemsize

# AWS list prices, us-east-1, on-demand, read 2026-12 (check them before relying on a figure)
INSTANCE, INSTANCE_VCPU, INSTANCE_USD_H = "m6i.2xlarge", 8, 0.384
S3_PUT_USD_1000, S3_GET_USD_1000, S3_GB_MONTH_USD = 0.005, 0.0004, 0.023
# Pending the recorded `scale.py ingest --dataset b1m`: its targets stand in for the factors
DASK_FACTOR_TARGET, S3_FACTOR_TARGET = 1.15, 1.4


@dataclass(frozen=True)
class Source:
    """A recorded run the document cites."""

    file: str
    data: dict[str, Any]


def _latest(results: Path, name: str, ok: Any = None) -> Source | None:
    found = []
    for path in sorted(results.glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("name") == name and (ok is None or ok(data)):
            found.append((data["started_utc"], path.name, data))
    if not found:
        return None
    _, file, data = max(found)
    return Source(file, data)


def _b1m_ok(data: dict[str, Any]) -> bool:
    return bool(data["tools"].get("widecube", {}).get("summary", {}).get("status") == "ok")


def _parts(data: dict[str, Any]) -> dict[str, float]:
    """B1M's steps as ``read`` (pass 1), ``compute`` (pass 2), ``write``, ``verify``,
    ``publish``: runs before issue 14 reported them so; later ones report the compute step's
    parts (pass 1, pass 2, views written) beside the steps."""
    tool = data["tools"]["widecube"]
    parts = dict(tool["summary"]["parts"])
    if "read" in parts:
        return parts
    reported = next((r.get("reported") for r in tool["runs"] if r.get("reported")), None) or {}
    split = reported.get("compute_parts")
    if not split:
        raise SystemExit("the B1M run reports no pass 1 / pass 2 split (compute_parts)")
    return {
        "read": split["pass 1"],
        "compute": split["pass 2"],
        "write": split["views written"],
        "verify": parts["verify"],
        "publish": parts["publish"],
    }


def _gb(x: float) -> str:
    return f"{x / 1e9:,.0f} GB" if x < 1e12 else f"{x / 1e12:,.1f} TB"


def _h(seconds: float) -> str:
    return f"{seconds / 3600:,.2f} h"


def _b100k_s3(results: Path) -> str:
    """The S3 factor measured at B100k (``scale.py ingest --dataset b100k``), as text."""
    run = _latest(results, "scale ingest-b100k")
    if run is None or "s3" not in run.data["runs"]:
        return "nothing yet"
    runs = run.data["runs"]
    return f"{runs['s3']['wall_s'] / runs['single']['wall_s']:.2f}× (`benchmarks/results/{run.file}`)"


def render(results: Path) -> str:
    b1m = _latest(results, "b1m", _b1m_ok)
    sched = _latest(results, "scale scheduler")
    serve = _latest(results, "scale serve-s3")
    scale = _latest(results, "scale ingest-b1m")
    needed = (("b1m", b1m), ("scale scheduler", sched), ("scale serve-s3", serve))
    missing = [n for n, s in needed if s is None]
    if missing or b1m is None or sched is None or serve is None:
        raise SystemExit(f"no recorded run of {', '.join(missing)} in {results}: run it first")
    w = b1m.data["tools"]["widecube"]["summary"]
    d = b1m.data["dataset"]
    cores = b1m.data["machine"]["cores"]
    n_b = d["nnz"]
    parts = _parts(b1m.data)
    core_s = w["wall_s"] * cores / n_b
    cpu_s = w["cpu_s"] / n_b
    pass1_share = parts["read"] / (parts["read"] + parts["compute"])
    client_s = (parts["write"] + parts["verify"] + parts["publish"]) / n_b
    in_b, snap_b = d["size"] / n_b, w["snapshot_bytes"] / n_b
    if scale is not None:
        runs = scale.data["runs"]
        dask = runs["dask2"]["wall_s"] / runs["single"]["wall_s"]
        factors = f"measured in `benchmarks/results/{scale.file}`"
        pending = ""
        if "s3" in runs:
            s3 = runs["s3"]["wall_s"] / runs["single"]["wall_s"]
            server = scale.data.get("s3_server") or "moto"
            s3_factors, s3_pending = f"{factors} ({server}, on the ingest's cores)", ""
        else:  # B1M's S3 run does not fit this machine (scale.py --s3-not-run says why)
            s3, s3_pending = S3_FACTOR_TARGET, " ⚠"
            s3_factors = (
                f"**not measured at B1M** ({scale.file}: the S3 run was left out): the target stands in"
            )
    else:
        dask, s3 = DASK_FACTOR_TARGET, S3_FACTOR_TARGET
        factors = s3_factors = (
            "**not yet measured**: the issue's targets stand in (pending `scale.py ingest --dataset b1m`)"
        )
        pending = s3_pending = " ⚠"
    s = sched.data
    per_task = s["overhead_per_task_ms"] / 1000
    k = serve.data["objects_by_kind"]
    n_s = serve.data["dataset"]["nnz"]
    arrays_per_grouping = k["grouped_arrays"]  # serve-s3 ingests one grouping
    n_cells_s = serve.data["dataset"]["shape"][0]
    width, n_buckets = bucket_geometry(GENES, NNZ, MEMORY // 16)
    n_chunks = math.ceil(n_buckets / chunk_buckets(n_buckets, NNZ, MEMORY // 16 // BYTES_PER_VALUE))
    groupings, groups = 2, (100, 800)  # as B1M: cluster and cluster × donor
    matrix_objects = math.ceil(k["matrix_chunks"] / n_s * NNZ)
    grouped_objects = int(arrays_per_grouping * sum(math.ceil(g / 1024) for g in groups) * n_chunks)
    row_chunks = " + ".join(str(math.ceil(g / 1024)) for g in groups)
    cell_objects = math.ceil(k["per_cell_chunks"] / n_cells_s * CELLS)
    objects = matrix_objects + cell_objects + grouped_objects + k["other"]
    t1_8 = len(row_bounds(CELLS, NNZ, 8, BLOCK_NNZ)) - 1
    # a multipart upload is one request to start, one per 8 MiB part and one to complete
    spill_puts = math.ceil(SPILL_BYTES_PER_VALUE * NNZ / (8 << 20)) + 2 * t1_8
    spill_gets = t1_8 * n_buckets

    total_core_s = core_s * NNZ
    lines = [
        "# Capacity: 10^7 cells × 50,000 genes",
        "",
        "Generated by `benchmarks/capacity.py` from the recorded runs in `benchmarks/results/` (do not "
        "edit; `make bench-scale` regenerates it). Every figure below is a rate measured by a "
        "benchmark here, times the size of the target, with the arithmetic shown; what the code "
        "fixes, and prices, are named as such. Figures marked ⚠ use a factor not yet measured.",
        "",
        f"**Target.** {CELLS:,} cells × {GENES:,} genes at {NNZ_PER_CELL:,} non-zeros per cell "
        f"(B100k's density): N = {NNZ:.1e} non-zeros; two groupings of {groups[0]} and {groups[1]} "
        "groups, every view, counts input (raw and normalized layers), as B1M.",
        "",
        "## The rates",
        "",
        f"From B1M's ingest, `benchmarks/results/{b1m.file}` ({d['shape'][0]:,} × {d['shape'][1]:,}, "
        f"n = {n_b:,} non-zeros, one process on {cores} cores, {w['wall_s']:,.1f} s wall, "
        f"{w['cpu_s']:,.1f} CPU-s):",
        "",
        "| rate | arithmetic | value |",
        "|---|---|---:|",
        f"| core-seconds per non-zero (wall × cores held) | {w['wall_s']:,.1f} s × {cores} / n "
        f"| {core_s:.3e} |",
        f"| CPU-seconds per non-zero (lower bound) | {w['cpu_s']:,.1f} / n | {cpu_s:.3e} |",
        f"| share of the two passes in pass 1 | pass 1 {parts['read']:.1f} s / "
        f"(pass 1 + pass 2 {parts['compute']:.1f} s) | {pass1_share:.3f} |",
        f"| client seconds per non-zero (views written, verify, publish: not spread) | "
        f"({parts['write']:.1f} + {parts['verify']:.1f} + {parts['publish']:.2f}) s / n | {client_s:.3e} |",
        f"| input bytes per non-zero (h5ad, CSR float32) | {d['size']:,} B / n | {in_b:.2f} |",
        f"| snapshot bytes per non-zero | {w['snapshot_bytes']:,} B / n | {snap_b:.2f} |",
        f"| Dask wall / single process, same cores | {factors} | {dask:.3f}{pending} |",
        f"| S3 wall / local disk | {s3_factors} | {s3:.3f}{s3_pending} |",
        f"| scheduling overhead per task | `benchmarks/results/{sched.file}`: {s['tasks']:,} tasks "
        f"in {s['graph_wall_s']:.2f} s on {s['workers']} workers | {1000 * per_task:.2f} ms |",
        f"| graph submission | same run | {s['submit_s']:.3f} s |",
        f"| build-context broadcast ({s['context_bytes'] / 1e6:,.0f} MB, to {s['workers']} workers) | "
        f"same run | {s['median']['context_broadcast_s']:.2f} s |",
        f"| objects of the gene-major matrix per non-zero | `benchmarks/results/{serve.file}`: "
        f"{k['matrix_chunks']} chunks / {n_s:,} | {k['matrix_chunks'] / n_s:.3e} |",
        f"| per-group arrays per grouping (chunks: row chunks of 1,024 groups × column chunks) | same run | "
        f"{k['grouped_arrays']} |",
        f"| objects of per-cell arrays per cell | same run: {k['per_cell_chunks']} / {n_cells_s:,} | "
        f"{k['per_cell_chunks'] / n_cells_s:.3e} |",
        f"| other objects (tables, metadata) | same run | {k['other']} |",
        "",
        f"Fixed by the code: the spill holds {SPILL_BYTES_PER_VALUE} bytes a non-zero of a float32 input "
        f"({SPILL_BYTES_PER_COUNT} for counts up to 255; `compute/_buckets.py`), plus 32 bytes per block "
        "and bucket; the "
        f"decoded matrix {DECODED_BYTES_PER_VALUE} (float32 value, int32 cell); the target's pass 2 has "
        f"{n_chunks} tasks of {n_buckets // n_chunks} bucket(s) of {width} genes (`bucket_geometry`, "
        "at most 256 buckets; `chunk_buckets`: a column chunk of the per-group arrays) and pass 1 "
        f"{len(row_bounds(CELLS, NNZ, 8, BLOCK_NNZ)) - 1} tasks at 8 workers (`row_bounds`: "
        "N / (16 × 8·10^6 values), at least 2 per worker).",
        "",
        "## Storage",
        "",
        "| what | where | arithmetic | one matrix | 100 matrices |",
        "|---|---|---|---:|---:|",
    ]
    rows = [
        ("input (h5ad)", "object store", f"{in_b:.2f} B × N", in_b * NNZ, True),
        ("staged input", "shared work folder, during the job", f"{in_b:.2f} B × N", in_b * NNZ, False),
        (
            "spill",
            "shared work folder, or the object store (`WIDECUBE_SPILL`), during the job",
            f"{SPILL_BYTES_PER_VALUE} B × N",
            SPILL_BYTES_PER_VALUE * NNZ,
            False,
        ),
        ("snapshot", "object store", f"{snap_b:.2f} B × N", snap_b * NNZ, True),
        (
            "decoded matrix cache (per replica, when warm)",
            "replica's local disk",
            f"{DECODED_BYTES_PER_VALUE} B × N",
            DECODED_BYTES_PER_VALUE * NNZ,
            True,
        ),
    ]
    for what, where, how, one, scales in rows:
        many = _gb(one * MATRICES) if scales else f"{_gb(one)} per job running"
        lines.append(f"| {what} | {where} | {how} | {_gb(one)} | {many} |")
    lines += [
        "",
        "With the spill in the work folder, that folder must be one file system every worker sees "
        "(NFS, FSx for Lustre, EFS); with `WIDECUBE_SPILL=s3://…` the workers share no folder: a "
        "pass-1 task's local disk holds its own range until it is uploaded "
        f"({_gb(SPILL_BYTES_PER_VALUE * NNZ / t1_8)} at 8 workers), and the input is read by the "
        "client or from a path every worker mounts. Either is needed only while a job runs. "
        "The decoded cache is bounded by `WIDECUBE_CACHE_MAX_BYTES`: a replica serving 100 "
        "such matrices keeps the ones in use, not all of them.",
        "",
        "## Compute",
        "",
        f"Core-seconds for one matrix: {core_s:.3e} × {NNZ:.1e} = {total_core_s:,.0f} core-s "
        f"= {_h(total_core_s)} on one core (CPU alone: {cpu_s * NNZ / 3600:,.2f} h). On W single-threaded "
        "workers the two passes are spread over their tasks: a pass of T tasks takes ceil(T / W) "
        "rounds where T / W would be even. Wall(W) = Dask factor × core-s × (pass-1 share × "
        "ceil(T1/W)/(T1/W) + pass-2 share × ceil(T2/W)/(T2/W)) / W + client steps + tasks × "
        "overhead per task + context broadcast × W / 2.",
        "",
        "| workers | T1 + T2 tasks | rounds | wall | worker-hours | cost |",
        "|---:|---|---|---:|---:|---:|",
    ]
    serial: dict[int, float] = {}
    for workers in WORKERS:
        t1 = len(row_bounds(CELLS, NNZ, workers, BLOCK_NNZ)) - 1
        t2 = n_chunks
        r1, r2 = math.ceil(t1 / workers), math.ceil(t2 / workers)
        spread = pass1_share * r1 / (t1 / workers) + (1 - pass1_share) * r2 / (t2 / workers)
        spread_s = dask * total_core_s * spread / workers
        extra = client_s * NNZ + (t1 + t2) * per_task + s["median"]["context_broadcast_s"] * workers / 2
        wall = spread_s + extra
        hours = workers * wall / 3600
        instances = math.ceil(workers / INSTANCE_VCPU)
        cost = (instances + 1) * INSTANCE_USD_H * wall / 3600  # + one client instance
        lines.append(
            f"| {workers} | {t1} + {t2} | {r1} + {r2} | {spread_s:,.0f} + {extra:,.0f} s = "
            f"{_h(wall)}{pending} | {hours:,.1f}{pending} | ({instances} + 1 client) × {INSTANCE} × "
            f"{_h(wall)} × ${INSTANCE_USD_H} = ${cost:,.2f}{pending} |"
        )
        serial[workers] = extra / wall
    lines += [
        "",
        "What is not spread over the workers — the client's write, verify and publish, the tasks' "
        "scheduling, the build context sent to each worker — is "
        + ", ".join(f"{100 * share:.0f} % of the wall at {w} workers" for w, share in serial.items())
        + ": past a few dozen workers, more workers buy little until the context is read from "
        "the shared work folder instead of sent to each worker, and verify is spread too.",
        "",
        "With the input, the spill and the snapshot on S3 rather than a shared disk, multiply by "
        f"the S3 factor ({s3:.2f}"
        f"{s3_pending}). Staging the input is ranged GETs ({_RANGE >> 20} MiB, "
        f"{_RANGES_IN_FLIGHT} at a time) of {_gb(in_b * NNZ)} by the client, "
        "bound by its network (not measured here: a loopback S3 server is no network). 100 "
        "matrices are 100 such jobs: 100 × the worker-hours and cost above, run one after another "
        "on one cluster, or side by side on as many.",
        "",
        "## Object-store requests",
        "",
        f"Objects in one snapshot: matrix chunks {k['matrix_chunks'] / n_s:.3e} × N = {matrix_objects:,}; "
        f"per-cell chunks {k['per_cell_chunks'] / n_cells_s:.3e} × {CELLS:,} = {cell_objects:,}; "
        f"per-group chunks {k['grouped_arrays']} arrays × ({row_chunks}) "
        f"row chunks of the {groupings} groupings × {n_chunks} column chunks = {grouped_objects:,}; "
        f"other {k['other']}: {objects:,} objects.",
        "",
        "| requests | when | one matrix | 100 matrices | cost (100) |",
        "|---|---|---:|---:|---:|",
        f"| PUT | compute writes each object once | {objects:,} | {objects * MATRICES:,} | "
        f"${objects * MATRICES / 1000 * S3_PUT_USD_1000:,.2f} |",
        f"| GET | verify reads each back | {objects:,} | {objects * MATRICES:,} | "
        f"${objects * MATRICES / 1000 * S3_GET_USD_1000:,.2f} |",
        f"| GET | each replica's warm (every array, the matrix included) | {objects:,} | "
        f"{objects * MATRICES:,} per replica | ${objects * MATRICES / 1000 * S3_GET_USD_1000:,.2f} |",
        f"| LIST | verify lists the prefix (1,000 a page) | {math.ceil(objects / 1000):,} | "
        f"{math.ceil(objects / 1000) * MATRICES:,} | "
        f"${math.ceil(objects / 1000) * MATRICES / 1000 * S3_PUT_USD_1000:,.2f} |",
        f"| GET | staging the input (one streamed GET) | 1 | {MATRICES} | — |",
        f"| PUT | with `WIDECUBE_SPILL`: each pass-1 task's range as one multipart upload of 8 MiB parts "
        f"(at 8 workers: {t1_8} ranges of {_gb(SPILL_BYTES_PER_VALUE * NNZ)} in all before compression, "
        "at most) | "
        f"{spill_puts:,} | "
        f"{spill_puts * MATRICES:,} | ${spill_puts * MATRICES / 1000 * S3_PUT_USD_1000:,.2f} |",
        f"| GET | with `WIDECUBE_SPILL`: pass 2 reads each bucket as a byte range of each range "
        f"({t1_8} × {n_buckets}) | {spill_gets:,} | {spill_gets * MATRICES:,} | "
        f"${spill_gets * MATRICES / 1000 * S3_GET_USD_1000:,.2f} |",
        "",
        f"Storage at ${S3_GB_MONTH_USD}/GB-month: input + snapshot of 100 matrices = "
        f"{_gb((in_b + snap_b) * NNZ * MATRICES)} = "
        f"${(in_b + snap_b) * NNZ * MATRICES / 1e9 * S3_GB_MONTH_USD:,.0f} a month.",
        "",
        f"Prices: AWS us-east-1 on-demand list prices as read 2026-12: {INSTANCE} ({INSTANCE_VCPU} vCPU, "
        f"one single-threaded worker per vCPU) ${INSTANCE_USD_H}/h; S3 Standard PUT/LIST "
        f"${S3_PUT_USD_1000} and GET ${S3_GET_USD_1000} per 1,000 requests, ${S3_GB_MONTH_USD}/GB-month. "
        "One benchmark core is taken as one vCPU.",
        "",
        "## What is not measured yet",
        "",
        "* B1M on two Dask workers and on S3 at full size (`make bench-scale` on a quiet machine): "
        "until it is recorded, the wall, worker-hour and cost figures use the issue's targets "
        f"({DASK_FACTOR_TARGET}, {S3_FACTOR_TARGET}) and are marked ⚠."
        if pending
        else (
            "* B1M on S3: moto, the local S3 server, holds an object whole in memory, so B1M's "
            "16 GB input cannot pass through it on this 24 GB machine; the S3 factor is the issue's "
            f"target ({S3_FACTOR_TARGET}, marked ⚠). At B100k it measured "
            f"{_b100k_s3(results)}, bound by moto's own throughput (one Python process)."
            if s3_pending
            else "* The factors are measured (see the rates); the S3 factor against a local Python S3 "
            "server on the ingest's own two cores, whose CPU per request (about 1.9 ms a GET for "
            "LocalBucket) is most of it: a real object store's latency, bandwidth and concurrency "
            "are not measured here."
        ),
        "* The rates come from a shared 2-core machine (load averages in each run's JSON); a quiet "
        "machine gives lower core-seconds.",
        "* Network bandwidth of real hosts (staging the input, a worker's reads of the shared work "
        "folder) is not modelled.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if docs/capacity.md would change")
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "capacity.md")
    args = p.parse_args(argv)
    text = render(args.results)
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is not what benchmarks/capacity.py makes of {args.results}", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
