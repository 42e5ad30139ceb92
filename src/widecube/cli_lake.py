"""The lifecycle commands of the ``widecube`` command line: garbage collection, inventory,
scrub, tiers (archive, restore), retention policies and pins, releases, and publishing
several datasets together. :func:`register` adds them to :data:`widecube.cli.app`; each one
calls :class:`~widecube.query.Widecube` (and :class:`~widecube.pipeline.Jobs` for the jobs'
work folders), whose door records what changes in the audit log.

    widecube gc --dry-run
    widecube inventory --json
    widecube scrub --dataset pbmc --repair
    widecube archive pbmc@3f2a... [--storage-class GLACIER_IR] ; widecube restore pbmc@3f2a...
    widecube release create atlas-1 --dataset pbmc --dataset lung@9c1e...
    widecube publish --together pbmc lung --release atlas-2
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.table import Table

from ._console import ME, err, out
from ._console import clean_errors as _clean_errors
from .config import ARCHIVE_STORAGE_CLASSES, Settings
from .errors import InvalidQuery

__all__ = ["register", "release_app"]

release_app = typer.Typer(help="Releases: immutable sets of dataset versions.", no_args_is_help=True)

Target = Annotated[str, typer.Argument(metavar="DATASET@VERSION", help="a dataset and one of its versions")]


def register(app: typer.Typer) -> None:
    """Add the lifecycle commands to the ``widecube`` app."""
    app.add_typer(release_app, name="release")
    for command in (gc, inventory, scrub, archive, restore, retention, pin, publish, delete):
        app.command()(command)


@contextmanager
def _widecube() -> Iterator[Any]:
    from .query import Widecube

    wc = Widecube(Settings())
    try:
        yield wc
    finally:
        wc.close()


def _split(target: str) -> tuple[str, str]:
    dataset, _, version = target.partition("@")
    if not dataset or not version:
        raise InvalidQuery(f"{target!r}: name a dataset and a version, DATASET@VERSION")
    return dataset, version


def _size(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


@_clean_errors
def gc(
    dataset: Annotated[
        str | None, typer.Option(help="only this dataset (default: every dataset, admins)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report what would go, change nothing")] = False,
) -> None:
    """Remove what the retention policies release: old versions (their catalog rows stay, state
    removed), hot files whose grace is over, leftovers of failed versions, decoded caches no
    version needs, and (every dataset) jobs' abandoned work folders and spill."""
    from .pipeline import Jobs
    from .query import GcItem

    with _widecube() as wc:
        report = wc.gc(dataset, dry_run=dry_run, actor=ME)
        if dataset is None:
            with Jobs.open(Settings()) as jobs:
                work = jobs.collect_garbage(dry_run=dry_run, actor=ME)
            report = report.merged([GcItem("work", None, None, p, size, why) for p, size, why in work])
    table = Table("what", "dataset", "version", "path", "bytes", "why")
    for item in report.removed:
        table.add_row(
            item.kind, item.dataset or "", item.version or "", item.path, _size(item.bytes), item.why
        )
    if report.removed:
        out.print(table)
    verb = "would free" if dry_run else "freed"
    out.print(
        f"{verb} {_size(report.bytes_freed)} ({len(report.removed)} items); "
        f"the policies keep {report.kept} versions",
        highlight=False,
    )


@_clean_errors
def inventory(
    dataset: Annotated[
        str | None, typer.Option(help="only this dataset (default: every dataset, admins)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON array, every field")] = False,
) -> None:
    """Every version: state, where its snapshot is, bytes, and what retention says of it."""
    with _widecube() as wc:
        rows = wc.inventory(dataset, actor=ME)
    if as_json:
        print(json.dumps([dict(r.items()) for r in rows], default=str, indent=1))
        return
    table = Table("dataset", "version", "state", "live", "bytes", "retention", "location")
    for r in rows:
        why = ", ".join(r.reasons)
        table.add_row(
            r.dataset,
            r.version,
            r.status,
            "yes" if r.live else "",
            _size(r.bytes),
            f"{r.retention}: {why}",
            r.location or "",
        )
    out.print(table)


@_clean_errors
def scrub(
    dataset: Annotated[
        str | None, typer.Option(help="only this dataset (default: every dataset, admins)")
    ] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair", help="roll a dataset whose live version is corrupt back to its newest good one"
        ),
    ] = False,
) -> None:
    """Re-read every stored snapshot and check each file against its manifest's sha256.

    Exit status 1 and one line per file at fault when any version is corrupt (it is marked
    corrupt in the catalog and answers 503)."""
    with _widecube() as wc:
        report = wc.scrub(dataset, repair=repair, actor=ME)
    for v in report.versions:
        for f in v.files:
            err.print(
                f"{v.dataset}@{v.version}: file {f['file']} {f['problem']}", highlight=False, soft_wrap=True
            )
        if v.repaired_to:
            err.print(f"{v.dataset}: rolled back to version {v.repaired_to}", highlight=False)
    checked = f"{len(report.versions)} versions, {_size(report.bytes_read)} read"
    if not report.ok:
        bad = sum(1 for v in report.versions if not v.ok)
        err.print(f"{bad} corrupt of {checked}", highlight=False)
        raise typer.Exit(1)
    out.print(f"every file matches its checksum ({checked})", highlight=False)


@_clean_errors
def archive(
    target: Target,
    storage_class: Annotated[
        str | None,
        typer.Option(
            "--storage-class",
            help="S3 storage class of the archived objects (default WIDECUBE_ARCHIVE_STORAGE_CLASS): "
            + ", ".join(ARCHIVE_STORAGE_CLASSES),
        ),
    ] = None,
) -> None:
    """Move a verified or retired version's snapshot to the cold storage (WIDECUBE_ARCHIVE_STORAGE;
    on an object store, in a storage class)."""
    dataset, version = _split(target)
    with _widecube() as wc:
        moved = wc.archive(dataset, version, storage_class=storage_class, actor=ME)
    cls = f", {moved.storage_class}" if moved.storage_class else ""
    out.print(
        f"archived {dataset}@{version} to {moved.location} ({_size(moved.bytes)}{cls})", highlight=False
    )


@_clean_errors
def delete(
    dataset: Annotated[str, typer.Argument(help="dataset name")],
    yes: Annotated[bool, typer.Option("--yes", help="delete without asking")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would be removed")] = False,
) -> None:
    """Delete a dataset: it is no longer served, its versions are removed (files purged by the
    next gc after the grace), its grants, retention policy and metadata go."""
    with _widecube() as wc:
        if not dry_run and not yes:
            planned = wc.delete(dataset, dry_run=True, actor=ME)
            typer.confirm(
                f"delete dataset {dataset!r} and its {len(planned.versions)} version(s)?", abort=True
            )
        done = wc.delete(dataset, dry_run=dry_run, actor=ME)
    verb = "would remove" if dry_run else "deleted; removed"
    out.print(
        f"{dataset}: {verb} {len(done.versions)} version(s): {' '.join(done.versions)}", highlight=False
    )


@_clean_errors
def restore(target: Target) -> None:
    """Bring an archived version back from the cold storage."""
    dataset, version = _split(target)
    with _widecube() as wc:
        moved = wc.restore(dataset, version, actor=ME)
    out.print(f"restored {dataset}@{version} ({moved.status}) to {moved.location}", highlight=False)


@_clean_errors
def retention(
    dataset: Annotated[str, typer.Argument(help="dataset name")],
    keep_last: Annotated[int | None, typer.Option(min=0, help="newest published versions kept")] = None,
    read_within: Annotated[
        float | None, typer.Option(min=0, help="minutes: versions read within them are kept")
    ] = None,
) -> None:
    """Show a dataset's retention policy, or set it (--keep-last, --read-within)."""
    with _widecube() as wc:
        policy = wc.retention(dataset, keep_last=keep_last, read_within_minutes=read_within, actor=ME)
    default = " (the default)" if policy.default else ""
    out.print(
        f"{dataset}: keep the last {policy.keep_last} published versions and any read within "
        f"{policy.read_within_minutes:g} minutes{default}",
        highlight=False,
    )


@_clean_errors
def pin(
    target: Target,
    unpin: Annotated[bool, typer.Option("--unpin", help="let the retention policy decide again")] = False,
) -> None:
    """Pin a version: garbage collection keeps it whatever the policy."""
    dataset, version = _split(target)
    with _widecube() as wc:
        wc.pin(dataset, version, pinned=not unpin, actor=ME)
    out.print(f"{'unpinned' if unpin else 'pinned'} {dataset}@{version}", highlight=False)


@_clean_errors
def publish(
    datasets: Annotated[
        list[str], typer.Argument(metavar="DATASET[@VERSION]...", help="datasets to publish")
    ],
    together: Annotated[
        bool,
        typer.Option(
            "--together",
            help="several datasets in one transaction, all or none (DATASET: its newest verified version)",
        ),
    ] = False,
    release: Annotated[str | None, typer.Option(help="also record these versions as this release")] = None,
) -> None:
    """Make versions live: one DATASET@VERSION, or with --together several datasets at once.

    Every target's files are re-checked first; with --together a failure of any check (or any
    refusal) publishes nothing."""
    with _widecube() as wc:
        if together or release is not None:
            done = wc.publish_together(datasets, release=release, actor=ME)
            for name, version in done.published.items():
                out.print(f"published {name} version {version}", highlight=False)
            if release is not None:
                out.print(f"recorded release {release}", highlight=False)
            return
        if len(datasets) != 1:
            raise InvalidQuery("publish one DATASET@VERSION, or several datasets with --together")
        dataset, version = _split(datasets[0])
        info = wc.publish(dataset, version, actor=ME)
    out.print(f"published {dataset} version {info['version']}", highlight=False)


@release_app.command("create")
@_clean_errors
def release_create(
    name: Annotated[str, typer.Argument(help="the release's name (never reused)")],
    dataset: Annotated[
        list[str], typer.Option(help="DATASET (its live version) or DATASET@VERSION; repeatable")
    ],
    note: Annotated[str | None, typer.Option(help="what the release is for")] = None,
) -> None:
    """Record an immutable release of dataset versions (reads take release=NAME)."""
    with _widecube() as wc:
        made = wc.create_release(name, dataset, note=note, actor=ME)
    for ds, version in made.datasets.items():
        out.print(f"{name}: {ds}@{version}", highlight=False)


@release_app.command("list")
@_clean_errors
def release_list() -> None:
    """Every release, newest first."""
    with _widecube() as wc:
        found = wc.releases(actor=ME)
    table = Table("release", "created", "by", "datasets", "note")
    for r in found:
        names = ", ".join(f"{d}@{v[:8]}" for d, v in r.datasets.items())
        table.add_row(
            r.name, r.created.isoformat(timespec="seconds"), r.created_by or "", names, r.note or ""
        )
    out.print(table)


@release_app.command("show")
@_clean_errors
def release_show(name: Annotated[str, typer.Argument(help="the release")]) -> None:
    """One release's datasets and versions."""
    with _widecube() as wc:
        found = wc.release(name, actor=ME)
    out.print(f"{found.name} (created {found.created.isoformat(timespec='seconds')} by {found.created_by})")
    for ds, version in found.datasets.items():
        out.print(f"  {ds}@{version}", highlight=False)
