"""The ``widecube`` command line: a thin layer over the library.

Each command parses its options, calls the library, and turns a :class:`WidecubeError`
into one line on stderr and exit code 1 (2 for usage errors). No logic lives here.

``widecube ingest`` exits 3 when its version was built and verified but not published
because another version of the dataset went live while it ran (see ``--force``).
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from . import cli_access, cli_lake, cli_meta
from ._console import (
    JSON_HELP,
    ME,
    ProgressLines,
    announce_storage,
    err,
    listing,
    log_lines,
    out,
    print_json,
    server_log_config,
    show,
    shown_storage,
)
from ._console import clean_errors as _clean_errors
from .config import Settings
from .errors import WidecubeError

app = typer.Typer(
    help="widecube: precomputed views of wide single-cell matrices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _every_command(ctx: typer.Context) -> None:
    """widecube: precomputed views of wide single-cell matrices."""
    # demo-data writes a file, no storage; a worker started by serve or watch has a parent
    # that said it already
    if ctx.invoked_subcommand not in (None, "demo-data") and "--stop-with-parent" not in sys.argv[2:]:
        announce_storage()


def _views_option(value: str | None) -> str | None:
    """Check ``--views`` while parsing, so an unknown name is a usage error (exit 2)."""
    if value is None:
        return None
    from .pipeline import parse_views

    try:
        names = parse_views(value)
    except WidecubeError as exc:
        raise typer.BadParameter(str(exc)) from None
    return ",".join(names) if names else None


def _kind_option(value: str | None) -> str | None:
    """Check ``--input-kind`` while parsing (an unknown kind is a usage error, exit 2)."""
    from .pipeline import parse_input_kind

    try:
        return parse_input_kind(value)
    except WidecubeError as exc:
        raise typer.BadParameter(str(exc)) from None


_KIND_HELP = (
    "what the matrix holds: counts (non-negative integers; a normalized log1p CP10k layer is "
    "added), log1p (already log-normalized), scaled (with negatives: no fraction expressing, no "
    "fold changes); default: detected from the values as they stream"
)

_VIEWS_HELP = (
    "views to build, comma-separated (e.g. summary,quantiles; an unknown name lists them all); "
    "those they require come too; default: every view"
)


@app.command("demo-data")
@_clean_errors
def demo_data(
    path: Annotated[Path, typer.Argument(help="the .h5ad file to write")],
    cells: Annotated[int, typer.Option(help="number of cells")] = 50_000,
    genes: Annotated[int, typer.Option(help="number of genes")] = 20_000,
    types: Annotated[int, typer.Option(help="number of cell types")] = 24,
    donors: Annotated[int, typer.Option(help="number of donors")] = 6,
    nnz_per_cell: Annotated[int | None, typer.Option(help="mean non-zeros per cell")] = None,
    type_key: Annotated[str, typer.Option(help="obs column of the cell type")] = "cell_type",
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Write a realistic single-cell demo dataset (negative-binomial counts) as .h5ad."""
    from .demo import make_demo

    with _progress() as bar:
        task = bar.add_task("demo-data", total=cells)
        make_demo(
            path,
            n_cells=cells,
            n_genes=genes,
            n_types=types,
            n_donors=donors,
            nnz_per_cell=nnz_per_cell,
            type_key=type_key,
            seed=seed,
            progress=lambda n: bar.advance(task, n),
        )
    out.print(f"wrote {path} ({cells:,} cells × {genes:,} genes)", soft_wrap=True)


@app.command()
@_clean_errors
def ingest(
    path: Annotated[
        str,
        typer.Argument(
            help="input matrix: h5ad, 10x h5, 10x MTX folder, CSV/TSV[.gz], Parquet, Loom, "
            "or a .zip/.tar[.gz]/.gz holding one; a path, or s3://bucket/key (copied into the "
            "work folder first, checksum verified)"
        ),
    ],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="dataset name")],
    groupby: Annotated[
        list[str] | None,
        typer.Option(
            help="obs column to group by, or 'a,b' for a combination; repeatable; "
            "default: every categorical column"
        ),
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(
            help="which matrix of an h5ad or Loom: a layer name, or 'raw' for AnnData's raw.X (default: X); "
            "'counts' also declares counts (negatives refused)"
        ),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(help="input format (h5ad, 10x-h5, loom, parquet, mtx, csv, tsv); default: detected"),
    ] = None,
    obs: Annotated[
        str | None,
        typer.Option(
            help="cell metadata (CSV, TSV or Parquet; first column the cell id), joined on id; "
            "a path or s3:// URL"
        ),
    ] = None,
    var: Annotated[
        str | None,
        typer.Option(
            help="gene metadata (CSV, TSV or Parquet; first column the gene name or id); a path or s3://"
        ),
    ] = None,
    allow_missing_metadata: Annotated[
        bool,
        typer.Option(help="fill cells (genes) missing from --obs (--var) with 'unknown' instead of failing"),
    ] = False,
    max_unpacked: Annotated[
        int | None,
        typer.Option(
            min=1, help="bytes an archive may expand to; default 20 × its size, at most the free disk"
        ),
    ] = None,
    timings: Annotated[
        bool,
        typer.Option(
            help="print the seconds spent in each step (the job's: unpack, validate, compute, verify, "
            "publish) as a JSON line at the end"
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option(help="publish even if another version went live while this one was built")
    ] = False,
    no_publish: Annotated[
        bool,
        typer.Option(
            "--no-publish",
            help="build and verify, but do not publish: `widecube publish --together` makes it live",
        ),
    ] = False,
    visibility: Annotated[
        str | None,
        typer.Option(
            help="who may read it: public (anyone), internal (signed-in users), restricted (grants "
            "only); a new dataset is restricted unless this says otherwise"
        ),
    ] = None,
    classification: Annotated[
        str | None,
        typer.Option(
            help="open, internal, controlled or phi (a new dataset: internal); controlled/phi: never public"
        ),
    ] = None,
    views: Annotated[str | None, typer.Option(help=_VIEWS_HELP, callback=_views_option)] = None,
    input_kind: Annotated[str | None, typer.Option(help=_KIND_HELP, callback=_kind_option)] = None,
    meta: Annotated[
        Path | None,
        typer.Option(
            help="dataset metadata, a YAML file: title, description, organism, tissue, assay, disease, "
            "license, citation, doi, contact, tags, extra (free key/values); see `widecube describe`"
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="run both passes on this Dask scheduler's workers (tcp://host:8786; they must see "
            "the work folder at the same path, unless --spill names an object store); default: "
            "WIDECUBE_CLUSTER"
        ),
    ] = None,
    spill: Annotated[
        str | None,
        typer.Option(
            help="leave pass 1's gene buckets on this object store (s3://bucket/prefix) instead of "
            "the work folder: for workers that share no folder, or a small local disk; default: "
            "WIDECUBE_SPILL"
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="run pass 2 on a local Dask cluster of N single-threaded processes "
            "(default: WIDECUBE_WORKERS)",
        ),
    ] = None,
) -> None:
    """Build, verify and publish a new version of a dataset from a matrix file.

    Exit status 3: the version was verified but not published, because another version of
    the dataset went live meanwhile (it stays verified; see --force, or `widecube rollback --to`).
    """
    from .pipeline import hash_early

    hash_early(Path(path))  # on the idle core while the rest is imported and set up
    from .pipeline import COMPUTE_PHASES, Held, Jobs, PointerMoved
    from .query import read_metadata

    metadata = read_metadata(meta, dataset) if meta is not None else None
    started = time.perf_counter()
    steps: dict[str, float] = {}
    phases: dict[str, float] = {}  # the compute step's parts: pass 1, pass 2, views written
    with _progress() as bar:
        tasks: dict[str, Any] = {}

        def report(step: str, done: float) -> None:
            now = time.perf_counter()
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=1.0)
            steps.setdefault(step, now)
            if step == "compute":
                for phase, (lo, _) in COMPUTE_PHASES.items():
                    if done >= lo:
                        phases.setdefault(phase, now)
            bar.update(tasks[step], completed=done)

        overrides: dict[str, Any] = {"cluster": cluster} if cluster else {}
        if spill:
            overrides["spill"] = spill
        if workers is not None:
            overrides["workers"] = workers
        try:
            with Jobs.open(Settings(**overrides)) as jobs:
                record = jobs.ingest(
                    path,
                    dataset=dataset,
                    groupbys=groupby,
                    layer=layer,
                    format=format,
                    progress=report,
                    obs=obs,
                    var=var,
                    allow_missing_metadata=allow_missing_metadata,
                    max_unpacked=max_unpacked,
                    force=force,
                    visibility=visibility,
                    classification=classification,
                    views=views,
                    input_kind=input_kind,
                    metadata=metadata,
                    hold=no_publish,
                    actor=ME,
                )
        except Held as exc:
            out.print(
                f"verified {exc.dataset} version {exc.version}, not published (--no-publish)", soft_wrap=True
            )
            return
        except PointerMoved as exc:
            err.print(f"[bold yellow]warning:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(3) from None
    out.print(
        f"published {record.dataset} version {record.version} "
        f"({record.n_cells:,} cells × {record.n_genes:,} genes)",
        soft_wrap=True,
    )
    if timings:  # each step lasts from its first report to the next step's first report
        print(json.dumps({**_timings(steps, phases), "total_s": round(time.perf_counter() - started, 3)}))


def _timings(steps: dict[str, float], phases: dict[str, float]) -> dict[str, dict[str, float]]:
    """``--timings``: seconds of each step (from its first report to the next step's first
    report) and of each part of the compute step (to the next part's, or the next step's)."""
    now = time.perf_counter()

    def spans(starts: dict[str, float], last: float) -> dict[str, float]:
        ends = [*list(starts.values())[1:], last]
        return {s: round(end - t, 3) for (s, t), end in zip(starts.items(), ends, strict=True)}

    names = list(steps)
    after_compute = steps[names[names.index("compute") + 1]] if "compute" in names[:-1] else now
    return {"steps": spans(steps, now), "compute_parts": spans(phases, after_compute)}


@app.command()
@_clean_errors
def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="server processes (they share the decoded cache)")] = 1,
    access_log: Annotated[bool, typer.Option(help="log every request (costs ~0.2 ms each)")] = True,
    tls_cert: Annotated[
        Path | None, typer.Option(dir_okay=False, exists=True, help="serve HTTPS: the PEM certificate chain")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(dir_okay=False, exists=True, help="serve HTTPS: the PEM private key")
    ] = None,
) -> None:
    """Serve the REST API (OpenAPI at /docs) and the web UI (at /).

    X-Forwarded-For/-Proto are believed only from WIDECUBE_TRUSTED_PROXIES; without
    authentication (WIDECUBE_AUTH=off) only a loopback address may be bound.
    """
    import uvicorn

    from .api import parse_rate_limit

    settings = Settings()  # bad WIDECUBE_* settings fail here, once, not in every worker
    try:
        parse_rate_limit(settings.rate_limit)
    except ValueError as exc:
        _usage_error(str(exc))
    if (tls_cert is None) != (tls_key is None):
        _usage_error("--tls-cert and --tls-key go together")
    if not settings.auth and not _loopback(host):
        _usage_error(f"auth is off: serve only on 127.0.0.1/::1/localhost, not {host!r}")
    cli_access.first_admin(settings, host, port)
    proxies = ",".join(settings.trusted_proxies)
    # an import string + factory: each worker process builds its own app from the environment
    uvicorn.run(
        "widecube.api:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        log_config=server_log_config(),  # and a line per background job (widecube's logger)
        access_log=access_log,
        proxy_headers=bool(proxies),  # else X-Forwarded-* from anyone are ignored
        forwarded_allow_ips=proxies or None,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
    )


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _usage_error(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command()
@_clean_errors
def datasets(as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False) -> None:
    """List datasets and their live versions."""
    from .query import Widecube

    wc = Widecube(Settings())
    try:
        found = wc.datasets(actor=ME)
    finally:
        wc.close()
    if as_json:
        print_json(found)
        return
    if not found:
        where = shown_storage(wc.settings.storage)
        err.print(f"no datasets in {where}", markup=False, highlight=False, soft_wrap=True)
        return
    rows = [
        (
            d["name"],
            d["version"],
            f"{d['n_cells']:,}",
            f"{d['n_genes']:,}",
            ", ".join(d["groupbys"]),
            d["created"].isoformat(timespec="seconds"),
        )
        for d in found
    ]
    show(listing(("dataset", "version", "cells", "genes", "groupbys", "created"), rows, ids=["version"]))


@app.command()
@_clean_errors
def versions(
    dataset: Annotated[str, typer.Argument(help="dataset name")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List the versions of a dataset, newest first."""
    from .query import Widecube

    wc = Widecube(Settings())
    try:
        found = wc.versions(dataset, actor=ME)
    finally:
        wc.close()
    if as_json:
        print_json(found)
        return
    rows = [
        (
            v["version"],
            v["status"] + (" (live)" if v["current"] else ""),
            v["created"].isoformat(timespec="seconds"),
            f"{v['n_cells']:,}" if v["n_cells"] is not None else "",
            f"{v['n_genes']:,}" if v["n_genes"] is not None else "",
            v["reason"] or "",
        )
        for v in found
    ]
    show(listing(("version", "status", "created", "cells", "genes", "reason"), rows, ids=["version"]))


@app.command()
@_clean_errors
def rollback(
    dataset: Annotated[str, typer.Argument(help="dataset name")],
    to: Annotated[str | None, typer.Option(help="version to make live; default: previous")] = None,
) -> None:
    """Make an earlier version live again (its files are re-checked first)."""
    from .query import Widecube

    wc = Widecube(Settings())
    try:
        record = wc.rollback(dataset, to, actor=ME)
    finally:
        wc.close()
    out.print(f"{dataset} is now at version {record['version']}")


@app.command()
@_clean_errors
def verify(
    target: Annotated[
        str,
        typer.Argument(metavar="DATASET[@VERSION]", help="dataset, and a version (default: the live one)"),
    ],
) -> None:
    """Re-check every file of a version against its manifest checksums (and its decoded cache).

    Exit status 1 and one line per file at fault when the check fails.
    """
    from .query import Widecube

    dataset, _, version = target.partition("@")
    wc = Widecube(Settings())
    try:
        report = wc.verify(dataset, version or None, actor=ME)
    finally:
        wc.close()
    where = f"{dataset}@{report['version']}"
    for f in report["files"]:
        err.print(f"{where}: file {f['file']} {f['problem']}", highlight=False, soft_wrap=True)
    for f in report["cache"]:
        err.print(
            f"{where}: decoded cache file {f['file']} {f['problem']} (removed; it is decoded "
            "again from the snapshot on the next read)",
            highlight=False,
            soft_wrap=True,
        )
    if not report["ok"]:
        raise typer.Exit(1)
    out.print(f"{where}: every file matches its checksum", highlight=False)


@app.command()
@_clean_errors
def jobs(
    state: Annotated[str | None, typer.Option(help="only jobs in this state (e.g. failed)")] = None,
    limit: Annotated[int, typer.Option(min=1, help="how many, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List ingest jobs, newest first: state, step, progress, error."""
    from .pipeline import Jobs, JobState

    wanted = _job_state(JobState, state)
    with Jobs.open(Settings()) as jobs_:
        found = jobs_.list(state=wanted.value if wanted is not None else None, limit=limit, actor=ME)
    if as_json:
        print_json(found)
        return
    rows = []
    for j in found:
        done = j.progress.get("fraction")
        shown = f"{j.progress.get('step')} {done:.0%}" if done is not None and not j.state.final else ""
        rows.append(
            (
                j.id,
                j.dataset,
                str(j.state),
                j.step or "",
                shown,
                j.source,
                j.created.isoformat(timespec="seconds"),
                j.updated.isoformat(timespec="seconds"),
                j.error or "",
            )
        )
    headers = ("job", "dataset", "state", "step", "progress", "source", "created", "updated", "error")
    show(listing(headers, rows, ids=["job"]))


@app.command()
@_clean_errors
def job(
    job_id: Annotated[str, typer.Argument(help="job id (see `widecube jobs`)")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Show one job: its state, step, progress, timestamps, error and step log."""
    from .pipeline import Jobs

    with Jobs.open(Settings()) as jobs_:
        j = jobs_.get(job_id, actor=ME)
    if as_json:
        print_json(j)
        return

    def stamp(t: datetime | None) -> str:
        return t.isoformat(timespec="seconds") if t is not None else "-"

    rows = [
        ("job", j.id),
        ("dataset", j.dataset),
        ("version", j.version or "-"),
        ("state", str(j.state)),
        ("step", j.step or "-"),
        ("progress", json.dumps(j.progress) if j.progress else "-"),
        ("source", j.source),
        ("input", j.input),
        ("attempts", str(j.attempts)),
        ("worker", j.worker or "-"),
        ("created", stamp(j.created)),
        ("started", stamp(j.started)),
        ("updated", stamp(j.updated)),
        ("finished", stamp(j.finished)),
        ("error", j.error or "-"),
    ]
    for key, value in rows:
        out.print(f"[bold]{key:>9}[/] {value}", highlight=False, soft_wrap=True)
    table = Table("at", "event", "step", "worker", "detail")
    for e in j.log:
        detail = {k: v for k, v in e.items() if k not in ("at", "event", "step", "worker")}
        table.add_row(e["at"][:19], e["event"], e["step"], e["worker"], json.dumps(detail) if detail else "")
    out.print(table)


@app.command()
@_clean_errors
def watch(
    inbox: Annotated[
        str,
        typer.Argument(
            help="folder, or s3://bucket/prefix/, to watch; entries end in processed/ or failed/ under it"
        ),
    ],
    once: Annotated[bool, typer.Option(help="take what is complete now, run it, and exit")] = False,
    quiet_period: Annotated[
        float | None,
        typer.Option(help="seconds an entry must stay unchanged; default WIDECUBE_WATCH_QUIET (10)"),
    ] = None,
    poll: Annotated[
        float | None, typer.Option(help="seconds between scans; default WIDECUBE_WATCH_POLL (5)")
    ] = None,
    views: Annotated[
        str | None,
        typer.Option(help=_VIEWS_HELP + '; a sidecar\'s "views" wins', callback=_views_option),
    ] = None,
    input_kind: Annotated[
        str | None,
        typer.Option(help=_KIND_HELP + '; a sidecar\'s "input_kind" wins', callback=_kind_option),
    ] = None,
) -> None:
    """Ingest every file or folder dropped into INBOX (one job each; see `widecube jobs`)."""
    from .pipeline import Jobs

    if "://" not in inbox and not Path(inbox).is_dir():
        err.print(f"[bold red]error:[/] {inbox}: not a folder", highlight=False)
        raise typer.Exit(1)
    settings = Settings()
    log_lines("widecube.watch", fmt="%(asctime)s %(message)s")  # a line per entry taken and ended
    log_lines("widecube.jobs", fmt="%(asctime)s %(message)s")  # its job worker started, or dead
    with Jobs.open(settings) as jobs_:
        watcher = jobs_.watcher(
            inbox, quiet=quiet_period, poll=poll, views=views, input_kind=input_kind, actor=ME
        )
        if once:
            for j in watcher.run_once():
                out.print(
                    f"job {j.id}: {j.dataset} {j.state}" + (f": {j.error}" if j.error else ""),
                    highlight=False,
                )
            return
        err.print(
            f"watching {watcher.inbox} (quiet {watcher.quiet:g} s, poll {watcher.poll:g} s); Ctrl-C stops",
            highlight=False,
            soft_wrap=True,
        )
        watcher.run()


@app.command()
@_clean_errors
def work(
    once: Annotated[bool, typer.Option(help="run the jobs waiting now, then exit")] = False,
    stop_with_parent: Annotated[
        bool, typer.Option(help="exit when the process that started this one is gone (how `serve` starts it)")
    ] = False,
) -> None:
    """Run waiting ingest jobs (uploads, abandoned jobs) as a worker process.

    SIGTERM or Ctrl-C stops it: a job it is running is handed back (the try does not count)
    and the next worker resumes it from its last step.
    """
    import os
    import signal
    import threading

    from .pipeline import Jobs, JobState

    settings = Settings()
    log_lines()  # a line when a job starts and one when it ends (serve's log, when serve starts it)
    with Jobs.open(settings) as jobs_:
        jobs_.reclaim_orphans(actor=ME)
        if once:
            for j in jobs_.run_pending(actor=ME):
                out.print(
                    f"job {j.id}: {j.dataset} {j.state}" + (f": {j.error}" if j.error else ""),
                    highlight=False,
                    soft_wrap=True,
                )
                if j.state == JobState.SUPERSEDED:
                    err.print(
                        f"[bold yellow]warning:[/] job {j.id}: {j.error}", highlight=False, soft_wrap=True
                    )
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        parent = os.getppid()
        worker = jobs_.worker(poll=settings.job_poll, actor=ME)
        worker.start()
        while not stop.wait(1.0):
            if stop_with_parent and os.getppid() != parent:
                break
        if worker.interrupt():  # its thread may be deep in native code: end the process now
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        worker.stop()


def _job_state(states: Any, name: str | None) -> Any:
    if name is None:
        return None
    try:
        return states(name.lower())
    except ValueError:
        known = ", ".join(s.value for s in states)
        err.print(f"[bold red]error:[/] unknown state {name!r} (states: {known})", highlight=False)
        raise typer.Exit(2) from None


def _progress() -> Progress | ProgressLines:
    """Bars on a terminal; plain lines on stderr otherwise (a log, a pipe, CI)."""
    if not sys.stderr.isatty():
        return ProgressLines()
    return Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


cli_access.register(app)  # tokens, grant, revoke, access, groups, audit
cli_meta.register(app)  # describe, search, export
cli_lake.register(app)  # gc, inventory, scrub, archive, restore, retention, pin, publish, release


def main() -> NoReturn:
    """The ``widecube`` command: :data:`app`, then an exit that skips the interpreter's own
    teardown once nothing is left to wait for.

    Python's finalization (every module's objects freed one by one: numba, llvmlite, pandas,
    zarr, h5py) took 0.5 s of wall and 0.6 s of CPU after each ``widecube ingest`` of a small
    file, a single-threaded tail on every command. Here the exit handlers run as a normal exit
    runs them (logging flushed, libraries' own handlers), the streams are flushed, and the
    process ends with the command's exit status (``os._exit``). A thread still working (not a
    daemon) gets the normal exit instead, which waits for it."""
    try:
        app()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if any(
        t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.current_thread()
    ):
        sys.exit(code)  # type: ignore[arg-type]
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # what sys.exit does with a message
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    main()
