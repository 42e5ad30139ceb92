"""The steps of an ingest job: unpack, validate, compute, verify, publish (and fail).

Each step takes the job's :class:`Work` and returns what later steps need, as plain JSON (the
runner in ``_runner`` saves it as the step's checkpoint in the job's work folder). Every step can
run again after an interruption: it first removes what a killed run of itself left behind.

* **unpack** creates the version record (BUILDING), copies an input named by an object-store
  URL (and its metadata files) into the work folder (``_fetch``), and unpacks an archive;
* **validate** opens the input, reads cells and genes, checks ids and every grouping;
* **compute** makes the two streaming passes into ``<storage>/staging/<version>`` (on an
  object store, which cannot rename: straight into the final prefix), building the views
  the job names (``params["views"]``, with those they require; None: every view);
* **verify** checks the snapshot, reading every file back from the storage, moves it to
  ``<storage>/datasets/<name>/<version>`` and marks the version VERIFIED;
* **publish** moves the dataset's pointer in one catalog transaction, if it still names the
  version that was live when the job started (``force``: whatever it names).

:func:`fail` marks the version FAILED and removes its folders; the live version is untouched.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import Catalog, JobRecord, PointerMoved, VersionStatus
from ..compute import (
    GeneSpill,
    JoinedSpill,
    around_the_cache,
    chunk_buckets,
    default_groupbys,
    parse_groupbys,
    roomy_heap,
    settled_objects,
    spill_by_gene,
)
from ..compute.groupings import all_cells_key
from ..config import Settings
from ..errors import CatalogError, InputError, InputNotFound, NotFound
from ..io import (
    ArchiveLimits,
    InputSource,
    MatrixSource,
    archive_kind,
    open_input,
    prefetch,
    readers,
    unpack_archive,
)
from ..snapshot import MANIFEST, Snapshot, SnapshotWriter, Storage, is_object_url, open_storage
from ..views import (
    INPUT,
    NORMALIZED,
    BuildContext,
    Builder,
    SlabStats,
    detect_kind,
    parse_input_kind,
    parse_views,
    select_views,
)
from ._checkpoint import save_checkpoint
from ._cluster import build_on_cluster, dask_client, spill_on_cluster
from ._digest import IdleDigest, take_early
from ._fetch import StagedCopyDiffers, StagedDigest, stage_input
from ._verify import verify_snapshot

__all__ = ["COMPUTE_PHASES", "STEPS", "Progress", "Work", "check_name", "fail"]

Progress = Callable[[str, float], None]
"""``progress(step, fraction_of_step_done)``, ``step`` one of :data:`STEPS` (the job's steps:
unpack, validate, compute, verify, publish), so a progress bar, ``--timings`` and a job's
state name the same steps. The runner reports 0 when a step starts and 1 when it ends; the
compute step reports its share of work in between (:data:`COMPUTE_PHASES`)."""

COMPUTE_PHASES = {"pass 1": (0.0, 0.5), "pass 2": (0.5, 0.95), "views written": (0.95, 1.0)}
"""How the compute step's fraction splits between its parts: pass 1 (stream the input and
spill it by gene), pass 2 (gene slabs through every view) and writing the views (shares of
the work, not of time)."""

Checkpoint = dict[str, Any]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_name(dataset: str) -> None:
    """Refuse a dataset name that could not be a folder name or a URL segment."""
    if not _NAME.match(dataset):
        raise InputError(f"dataset name {dataset!r} must be letters, digits, '_', '.' or '-' (max 128)")


@dataclass
class Work:
    """One job's run in this process: its record, folders, catalog and open input.

    ``folder`` (``<work>/work/<job id>``, on local disk whatever the storage) holds the
    checkpoints, the unpacked input and the readers' scratch files. ``source`` is the input
    opened by validate, kept open for compute when both run in the same process (text
    formats are parsed once). ``digest`` hashes the input from validate on, on the core that
    validate (one core) leaves idle, for the manifest compute writes (:meth:`input_digest`); a
    copy staged from an object store is checked by it too (:class:`StagedDigest`).
    """

    job: JobRecord
    settings: Settings
    catalog: Catalog
    progress: Progress
    done: dict[str, Checkpoint] = field(default_factory=dict)
    source: InputSource | None = None
    digest: IdleDigest | StagedDigest | None = None

    @property
    def folder(self) -> Path:
        return self.settings.local / "work" / self.job.id

    @cached_property
    def storage(self) -> Storage:
        """Where snapshots go (``Settings.storage``: a folder or an object store)."""
        return open_storage(self.settings.storage)

    @property
    def version(self) -> str:
        assert self.job.version is not None
        return self.job.version

    @property
    def staging_rel(self) -> str:
        """Where compute writes: a staging folder renamed into place by verify, or (on a
        storage that cannot rename) the final prefix, unreachable until published."""
        return f"staging/{self.version}" if self.storage.renames else self.final_rel

    @property
    def staging(self) -> Storage:
        return self.storage.sub(self.staging_rel)

    @property
    def final_rel(self) -> str:
        return f"datasets/{self.job.dataset}/{self.version}"

    @property
    def input(self) -> Path:
        """The matrix to open: the unpacked archive's folder, or the input itself."""
        return Path(self.done["unpack"]["input"])

    @property
    def original(self) -> Path:
        """The input as given, on local disk: the file (or archive) itself, or its staged copy
        when it was named by an object-store URL."""
        return Path(self.done["unpack"].get("staged") or self.job.input)

    def metadata(self, what: str) -> str | None:
        """The ``obs`` or ``var`` file to join: its staged copy if it came from a store."""
        staged = self.done.get("unpack", {}).get(what)
        return str(staged) if staged else self.job.params.get(what)

    def open(self) -> InputSource:
        if self.source is None:
            p = self.job.params
            self.source = _relabel(
                self,
                lambda: open_input(
                    self.input,
                    workdir=self.folder / "scratch",
                    format=p.get("format"),
                    layer=p.get("layer"),
                    obs=self.metadata("obs"),
                    var=self.metadata("var"),
                    max_categories=self.settings.max_categories,
                    allow_missing_metadata=bool(p.get("allow_missing_metadata")),
                    input_kind=p.get("input_kind"),
                ),
            )
        return self.source

    def input_digest(self) -> IdleDigest | StagedDigest | None:
        """The input's sha256 being hashed by an idle-priority child (started on first call,
        kept until :meth:`close`); None when staging hashed it already (``done["unpack"]``)
        or the input is a folder. A copy staged unhashed is checked against what the store
        said of its object when the sha256 is asked for."""
        unpacked = self.done["unpack"]
        early = take_early(self.original)  # hashed since `widecube ingest` started, if it was this file
        if self.digest is None and self.original.is_file() and not unpacked.get("sha256"):
            if unpacked.get("staged"):
                source, md5, companion = unpacked["source"], unpacked.get("md5"), unpacked.get("companion")
                self.digest = StagedDigest(self.original, source=source, md5=md5, companion=companion)
            else:
                self.digest, early = early or IdleDigest(self.original), None
        if early is not None:
            early.close()
        return self.digest

    def restage(self) -> None:
        """Fetch the staged input again, hashed and checked as it arrives (its copy differed
        from the object), and rewrite the unpack checkpoint to say so."""
        self.close()
        unpacked = self.done["unpack"]
        copy = stage_input(unpacked["source"], Path(unpacked["staged"]).parent)
        kept = {k: v for k, v in unpacked.items() if k not in ("md5", "companion")}  # checked now
        self.done["unpack"] = {**kept, "staged": str(copy.path), "sha256": copy.sha256}
        save_checkpoint(self.folder, "unpack", self.done["unpack"])

    def close(self, *, digest: bool = True) -> None:
        """Close the input; and stop the digest unless ``digest`` is False (validate
        reopening the input keeps it)."""
        if self.source is not None:
            source, self.source = self.source, None
            source.close()
        if digest and self.digest is not None:
            hashing, self.digest = self.digest, None
            hashing.close()


def unpack(work: Work) -> Checkpoint:
    """Record the version (BUILDING), stage an input on an object store (and its metadata
    files) into the work folder, then unpack an archive there."""
    job, p = work.job, work.job.params
    check_name(job.dataset)
    path = Path(job.input)
    remote = is_object_url(job.input)
    params = {
        "groupbys": list(p.get("groupbys") or []),
        "layer": p.get("layer"),
        "format": p.get("format"),
        "obs": Path(p["obs"]).name if p.get("obs") else None,
        "var": Path(p["var"]).name if p.get("var") else None,
        "allow_missing_metadata": bool(p.get("allow_missing_metadata")),
        "views": p.get("views"),
        "input_kind": p.get("input_kind"),
    }
    try:
        work.catalog.create_version(
            job.dataset, work.version, input_name=path.name, input_sha256=None, params=params
        )
    except CatalogError:  # created by an earlier, interrupted run of this step
        if work.catalog.get_version(job.dataset, work.version).status != VersionStatus.BUILDING:
            raise
    staged: Checkpoint = {}
    if remote:  # copied whole, checked (see _fetch for why not streamed, and when checked)
        copy = stage_input(job.input, work.folder / "input", hashed=False)
        path = copy.path
        sha256 = copy.sha256
        if sha256 is None and _is_archive(path, p.get("format")):  # checked before it is unpacked
            with StagedDigest(path, source=job.input, md5=copy.md5, companion=copy.companion) as digest:
                sha256 = digest.result()
        checks = {"md5": copy.md5, "companion": copy.companion} if sha256 is None else {}
        staged = {"staged": str(path), "sha256": sha256, **checks, "source": job.input}
    elif not path.exists():
        raise InputNotFound(f"{path}: no such file or folder")
    for what in ("obs", "var"):
        if p.get(what) and is_object_url(p[what]):
            staged[what] = str(stage_input(p[what], work.folder / "metadata" / what).path)
    if not _is_archive(path, p.get("format")):
        return {"input": str(path), "archive": None, **staged}
    dest = work.folder / "unpacked"
    shutil.rmtree(dest, ignore_errors=True)
    limits = ArchiveLimits(max_bytes=p.get("max_unpacked"))
    return {"input": str(unpack_archive(path, dest, limits)), "archive": str(path), **staged}


@contextlib.contextmanager
def _copy_checked_first(work: Work) -> Iterator[None]:
    """Around a step that reads a copy staged unhashed (:class:`StagedDigest`): an input error
    waits for the copy's check, since a copy that differs from its object explains any bad
    input (that error is raised instead); a copy that differs is fetched again, hashed and
    checked as it arrives, and the step fails of a transient error (it runs again). A copy
    missing (a fetch again that failed half way) is fetched again first."""
    staged = work.done["unpack"].get("staged")
    if staged and not Path(staged).exists():
        work.restage()
    try:
        try:
            yield
        except InputError:
            if isinstance(work.digest, StagedDigest):
                work.digest.result()
            raise
    except StagedCopyDiffers:
        work.restage()
        raise


def validate(work: Work) -> Checkpoint:
    """Open the input and check cell ids, gene names, every grouping and the views named
    before the long pass."""
    parse_views(work.job.params.get("views"))  # a job submitted with an unknown view fails here
    parse_input_kind(work.job.params.get("input_kind"))  # and one with an unknown input kind
    shutil.rmtree(work.folder / "scratch", ignore_errors=True)
    work.close(digest=False)
    work.input_digest()  # hashing from now on: this step keeps one core busy, not two
    with _copy_checked_first(work):
        return _validate(work)


def _validate(work: Work) -> Checkpoint:
    source = work.open()
    path, settings = work.original, work.settings
    obs, var = source.obs(), source.var()
    _check_unique(path, obs.index, "cell id")
    _check_unique(path, var.index, "gene name")
    groupbys = work.job.params.get("groupbys")
    keys = parse_groupbys(groupbys) or default_groupbys(obs, max_categories=settings.max_categories)
    ctx = BuildContext(
        work.job.dataset,
        work.version,
        obs,
        var,
        keys,
        settings.max_categories,
        quantiles=tuple(settings.quantiles),
        target_sum=settings.target_sum,
    )
    for key in keys:
        ctx.grouping(key)  # a bad --groupby fails before the long pass
    n_cells, n_genes = source.shape
    return {"groupbys": keys, "n_cells": n_cells, "n_genes": n_genes, "format": source.format}


def compute(work: Work) -> Checkpoint:
    """Both streaming passes, writing every view into the staging folder."""
    work.staging.remove()
    if work.source is None:  # resumed in a new process: the readers' scratch files are stale
        shutil.rmtree(work.folder / "scratch", ignore_errors=True)
    try:
        with _copy_checked_first(work):
            manifest = _compute(work)
    finally:
        work.close()
    info = {
        "groupbys": manifest["parameters"]["groupbys"],
        "input": manifest["input"],
        "views": {k: v["encoding"] for k, v in manifest["views"].items()},
        "input_kind": manifest["input"]["kind"],
    }
    return {"n_cells": manifest["n_cells"], "n_genes": manifest["n_genes"], "info": info}


def _compute(work: Work) -> dict[str, Any]:
    source = work.open()
    manifest: dict[str, Any] = _relabel(
        work,
        lambda: _build(
            work.original,
            source,
            work.job.dataset,
            work.version,
            work.done["validate"]["groupbys"],
            work.job.params.get("layer"),
            work.settings,
            work.staging,
            work.folder / "scratch",
            work.progress,
            work.job.params.get("views"),
            _opener(work) if _workers_see_input(work) else None,
            work.done["unpack"].get("sha256"),
            work.job.params.get("input_kind"),
            work.input_digest(),
            spill_to=_spill_store(work),
        ),
    )
    return manifest


def _workers_see_input(work: Work) -> bool:
    """Whether a cluster's pass-1 tasks may open the input at this process's path: not when
    the spill is on an object store (the workers share no folder) and the input is a copy in
    this process's work folder (staged from a store, an upload, an archive unpacked); pass 1
    then runs here, pass 2 still on the cluster."""
    return not (work.settings.spill and Path(work.input).resolve().is_relative_to(work.settings.local))


def _spill_store(work: Work) -> Storage | None:
    """Where pass 1 uploads its ranges of rows (``Settings.spill``): a prefix of the job's
    own under the spill URL, one per run of the step (None: the work folder)."""
    if not work.settings.spill:
        return None
    return open_storage(work.settings.spill).sub(f"{work.job.id}/{uuid.uuid4().hex[:8]}")


def verify(work: Work) -> Checkpoint:
    """Check the snapshot (every file read back from the storage against the manifest), move
    it to its final folder, and mark the version VERIFIED. A copy of the input staged from an
    object store is removed meanwhile, by a thread of its own: no step after the compute step
    reads it (B1M's 16 GB copy took 3.3 s to remove at the job's end, after publishing)."""
    staged = work.done["unpack"].get("staged")
    with _removing(Path(staged).parent if staged else None):
        return _verify(work)


@contextlib.contextmanager
def _removing(folder: Path | None) -> Iterator[None]:
    """Inside, ``folder`` (if any) is being removed by a thread of its own, joined on the way out."""
    if folder is None or not folder.exists():
        yield
        return
    remover = threading.Thread(
        target=shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True}, name="widecube-remove"
    )
    remover.start()
    try:
        yield
    finally:
        remover.join()


def _verify(work: Work) -> Checkpoint:
    scratch = work.folder / "scratch"  # an object store's snapshot is checked from copies there
    if work.staging_rel != work.final_rel and work.staging.exists(MANIFEST):
        verify_snapshot(Snapshot(work.staging), scratch=scratch)
        work.storage.move(work.staging_rel, work.final_rel)
    else:  # written in place, or moved by a run killed before it could record the step
        verify_snapshot(Snapshot(work.storage.sub(work.final_rel)), scratch=scratch)
    computed = work.done["compute"]
    if work.catalog.get_version(work.job.dataset, work.version).status == VersionStatus.BUILDING:
        # the manifest's own hash: a server refuses a snapshot whose manifest is not this one
        manifest = hashlib.sha256(work.storage.sub(work.final_rel).get(MANIFEST)).hexdigest()
        work.catalog.mark_verified(
            work.job.dataset,
            work.version,
            path=work.final_rel,
            n_cells=computed["n_cells"],
            n_genes=computed["n_genes"],
            info={**computed["info"], "manifest_sha256": manifest},
        )
    return {"path": work.final_rel}


def publish(work: Work) -> Checkpoint:
    """Move the dataset's pointer to the new version (one transaction); once only.

    A compare-and-swap unless the job was told to ``force``: if the pointer moved since the
    version began building, :class:`~widecube.catalog.PointerMoved` (the version stays verified).
    The dataset metadata an upload carried (``params["metadata"]``) is set once it is live (a
    retried step sets the same fields again).
    """
    record = work.catalog.get_version(work.job.dataset, work.version)
    if record.status == VersionStatus.VERIFIED and work.job.params.get("hold"):
        raise Held(work.job.dataset, work.version)
    if record.status == VersionStatus.VERIFIED:
        force = bool(work.job.params.get("force"))
        record = work.catalog.publish(work.job.dataset, work.version, unless_moved=not force)
    metadata = work.job.params.get("metadata")
    if metadata:  # given with an upload (checked then), set once the version is live
        work.catalog.metadata.update(work.job.dataset, metadata, by=work.job.params.get("submitted_by"))
    return {"version": record.version}


class Held(PointerMoved):
    """A job told not to publish (``ingest --no-publish``) ends here: its version stays
    verified, not live, until ``widecube publish --together`` (or a publish) makes it live.
    The job ends superseded, as any verified version that is not live."""

    def __init__(self, dataset: str, version: str) -> None:
        self.dataset, self.version, self.base, self.current = dataset, version, None, None
        CatalogError.__init__(
            self,
            f"version {version} of dataset {dataset!r} is verified and held, not live (ingested "
            f"with --no-publish): make it live with `widecube publish --together {dataset} ...` "
            f"or `widecube rollback {dataset} --to {version}`",
        )


STEPS: dict[str, Callable[[Work], Checkpoint]] = {
    "unpack": unpack,
    "validate": validate,
    "compute": compute,
    "verify": verify,
    "publish": publish,
}
"""The steps in order; the runner maps each job state to the next one."""


def fail(work: Work, reason: str) -> None:
    """Mark the version FAILED (unless published already) and remove its snapshot folders."""
    work.close()
    try:
        record = work.catalog.get_version(work.job.dataset, work.version)
    except NotFound:  # failed before the version was recorded (a bad dataset name)
        record = None
    try:
        if record is not None and record.status in (VersionStatus.BUILDING, VersionStatus.VERIFIED):
            work.catalog.mark_failed(work.job.dataset, work.version, reason)
    finally:
        if record is None or record.status not in (VersionStatus.PUBLISHED, VersionStatus.RETIRED):
            work.staging.remove()
            work.storage.remove(work.final_rel)


def _is_archive(path: Path, format: str | None) -> bool:
    """Whether ``path`` is unpacked first (as :func:`open_input` decides: a forced format that
    reads the file as it is, such as ``csv`` for ``counts.csv.gz``, wins)."""
    if archive_kind(path) is None:
        return False
    return not (format is not None and any(s.name == format and s.sniff(path) for s in readers()))


def _relabel(work: Work, run: Callable[[], Any]) -> Any:
    """Run ``run``; an input error naming the unpack folder names ``archive:member`` instead."""
    try:
        return run()
    except InputError as exc:
        archive = work.done.get("unpack", {}).get("archive")
        if archive is not None and exc.args:
            root = work.done["unpack"]["input"]
            exc.args = (
                str(exc.args[0]).replace(f"{root}/", f"{archive}:").replace(root, archive),
                *exc.args[1:],
            )
        raise


def _build(
    path: Path,
    source: InputSource,
    dataset: str,
    version: str,
    keys: list[str],
    layer: str | None,
    settings: Settings,
    staging: Storage,
    work: Path,
    progress: Progress,
    names: list[str] | None = None,
    opener: Callable[[], MatrixSource] | None = None,
    known_sha256: str | None = None,
    input_kind: str | None = None,
    digest: IdleDigest | StagedDigest | None = None,
    *,
    spill_to: Storage | None = None,
) -> dict[str, Any]:
    """Pass 1 spills the input by gene; pass 2 feeds gene slabs to the views ``names`` (and
    those they require; None: every registered view), recorded in ``parameters.views``.
    ``spill_to``: an object-store prefix pass 1 uploads its ranges of rows to (``compute
    .upload_part``), else they stay in ``work``.

    Without any grouping (``keys`` empty: no categorical obs column and no ``--groupby``),
    the views get one synthetic grouping holding every cell (``all``, group ``all cells``),
    named in the manifest's ``parameters.all_cells_groupby`` (None otherwise).

    With a Dask cluster in the settings, pass 1 runs there split by rows when ``opener``
    (which opens the input again, on a worker) is given and the input reads row ranges, and
    pass 2 runs there split by gene ranges (:mod:`._cluster`); the snapshot is the same.
    ``known_sha256``: the input's digest when staging computed it already (not read again);
    ``digest``: the input being hashed already (the caller's to close), else it is hashed here.

    The kind of input (counts, log1p, scaled; ``views._layers``) is ``input_kind`` when the
    job declares it, else what pass 1 saw (negatives, non-integers); it is recorded in the
    manifest's ``input.kind`` and decides the layers: count input gets ``normalized`` too.
    """
    specs = select_views(names)
    with contextlib.ExitStack() as stack, dask_client(settings) as client:
        stack.enter_context(settled_objects())  # the collector walks only what the step makes
        # the input's sha256, hashed on the cores the ingest leaves idle
        if digest is None and path.is_file() and known_sha256 is None:
            digest = stack.enter_context(IdleDigest(path))
        obs, var = source.obs(), source.var()
        ctx = BuildContext(
            dataset,
            version,
            obs,
            var,
            keys,
            settings.max_categories,
            quantiles=tuple(settings.quantiles),
            target_sum=settings.target_sum,
        )
        spill: GeneSpill | JoinedSpill
        # pass 1 keeps both cores busy: the input's digest waits meanwhile (IdleDigest.paused).
        # Not with the spill on a store: pass 1 then waits for its uploads, and the idle child
        # hashes in those gaps (B1M from a local S3 server, two pairs of runs: 151.6 and 152.2 s
        # against 157.4 and 155.2 s paused; pass 1 +0.9 s, pass 2 -5.7 s, the hash done sooner)
        with digest.paused() if digest is not None and spill_to is None else contextlib.nullcontext():
            if client is not None and opener is not None and source.row_ranges:  # rows on the cluster
                spill = spill_on_cluster(
                    client,
                    opener,
                    source,
                    workdir=work,
                    block_nnz=settings.block_nnz,
                    slab_bytes=settings.memory // 16,
                    version=version,
                    progress=_accumulate(progress, "pass 1"),
                    direct=settings.spill_direct is not False,  # the workers' memory is not ours
                    remote=spill_to,
                )
            else:
                spill = spill_by_gene(
                    source,
                    obs_names=obs.index,
                    var_names=var.index,
                    workdir=work,
                    block_nnz=settings.block_nnz,
                    slab_bytes=settings.memory // 16,
                    progress=_accumulate(progress, "pass 1"),
                    threads=settings.compute_threads,
                    direct=around_the_cache(
                        settings.spill_direct, source.nnz_expected, for_store=spill_to is not None
                    ),
                    remote=spill_to,
                )
        if digest is not None and client is None:
            # pass 2 in this process keeps both cores busy: the digest shares them instead of
            # waiting for an idle one. With the spill on a store too: B1M from a local S3
            # server left the idle child 15 s of the staged input's MD5 after pass 2, hashed
            # on one core with the other idle (the ingest waiting for it). Not where pass 2
            # runs on a cluster's workers: there it waits on other processes, leaving gaps for
            # the idle child, and at the normal policy it would slow those processes
            digest.hasten()
        out: SnapshotWriter | None = None
        try:
            declared = parse_input_kind(input_kind)
            kind = declared or detect_kind(negative=spill.negative, non_integer=spill.non_integer)
            ctx.input_kind = kind
            ctx.layers = [INPUT, NORMALIZED] if kind == "counts" and settings.normalize else [INPUT]
            ctx.cell_total, ctx.nnz, ctx.slab_width = spill.cell_total, spill.nnz, spill.width
            ctx.chunk_width = spill.width * chunk_buckets(spill.n_buckets, spill.nnz, spill.slab_values)
            ctx.value_dtype = spill.dtype
            ctx.obs = obs.assign(total_counts=spill.cell_total, n_genes_by_counts=spill.cell_nnz)
            if not keys:  # no categorical obs column: one synthetic every-cell grouping
                ctx.all_cells_key = all_cells_key(ctx.obs.columns)
                keys = ctx.groupbys = [ctx.all_cells_key]
            out = SnapshotWriter(staging, dataset=dataset, version=version)
            out.write_table("dataset/obs.parquet", ctx.obs)
            out.write_table("dataset/var.parquet", var)
            obsm = source.obsm()
            for key, values in obsm.items():
                out.write_array(f"dataset/obsm.zarr/{key}", values)
            builders = [(spec, spec.builder(ctx, out)) for spec in specs]  # fresh state per build
            step = _accumulate(progress, "pass 2")
            if client is None:
                # the next slab is read and sorted (one thread, free of the GIL) while the
                # views work on this one (every core); closed, so its thread is gone before
                # the spill is removed. Slab after slab the same sizes are allocated: the heap
                # keeps them (roomy_heap) instead of faulting in fresh pages each time
                with (
                    contextlib.closing(prefetch(spill.slabs(), depth=1)) as slabs,
                    roomy_heap(),
                    ThreadPoolExecutor(1, thread_name_prefix="widecube-beside") as beside,
                ):
                    for slab in slabs:
                        _consume(ctx.slab_stats(slab), [b for _, b in builders], beside)
                        step(slab.width / ctx.n_genes)
            else:  # gene ranges on the cluster's workers, merged here in gene order
                spill.close()
                build_on_cluster(client, ctx, spill.buckets(), [b for _, b in builders], work, step)
            written = _accumulate(progress, "views written")
            for spec, builder in builders:
                out.add_view(spec, builder.finish())  # the writer stamps the spec's encoding
                written(1 / len(builders))
            out.drain()  # every background write lands before the pool closes (which cancels)
        finally:
            spill.cleanup()
            if out is not None:
                out.close()
        n_cells, n_genes = source.shape
        return out.finish(
            n_cells=n_cells,
            n_genes=n_genes,
            layers=ctx.layers,
            default_layer=ctx.layers[-1],
            obsm={k: {"path": f"dataset/obsm.zarr/{k}", "shape": list(v.shape)} for k, v in obsm.items()},
            input={
                "name": path.name,
                "sha256": digest.result() if digest is not None else known_sha256,
                "size": path.stat().st_size if path.is_file() else None,
                "format": source.format,
                "layer": layer,
                "counts": kind == "counts",
                "kind": kind,
                "kind_declared": declared is not None,
            },
            parameters={
                "groupbys": keys,
                "all_cells_groupby": ctx.all_cells_key,
                "layer": layer,
                "block_nnz": settings.block_nnz,
                "memory": settings.memory,
                "quantiles": list(settings.quantiles),
                "normalize": settings.normalize,
                "target_sum": settings.target_sum,
                "views": [spec.name for spec in specs],
            },
        )


def _opener(work: Work) -> Callable[[], MatrixSource]:
    """Opens the job's input as :meth:`Work.open` does, in any process (picklable), its
    metadata read only if asked for (:meth:`Work.open` checked them already, here)."""
    p = work.job.params
    return functools.partial(
        open_input,
        work.input,
        format=p.get("format"),
        layer=p.get("layer"),
        obs=work.metadata("obs"),
        var=work.metadata("var"),
        max_categories=work.settings.max_categories,
        allow_missing_metadata=bool(p.get("allow_missing_metadata")),
        input_kind=p.get("input_kind"),
        lazy_metadata=True,  # a task reading rows names cells in errors only
    )


def _consume(stats: SlabStats, builders: list[Builder], beside: ThreadPoolExecutor) -> None:
    """One slab through every builder: those marked :attr:`~Builder.beside` on the
    ``beside`` thread, in order, while the others go on here; back when all are done.

    Thread states sampled every 5 ms over pass 2 of the Poisson B100k, the builders one
    after the other on the build's thread: one thread running alone 8 % of the time, about
    half of it the build's thread in the markers' ranking and the matrix's chunk copies
    (single-threaded numpy) while nothing else had work for the other core. With them
    beside the others, overlapping the quantiles' kernel: 1 %."""
    done: list[Future[None]] = []
    try:
        for builder in builders:
            if builder.beside:
                done.append(beside.submit(builder.consume, stats))
            else:
                builder.consume(stats)
    except BaseException:
        wait(done)  # the slab's buffers go with it: nothing may still read them
        raise
    for future in done:
        future.result()


def _accumulate(progress: Progress, phase: str) -> Callable[[float], None]:
    """``advance(fraction of the phase)``, reported as the compute step's fraction done."""
    done = 0.0
    lo, hi = COMPUTE_PHASES[phase]

    def advance(fraction: float) -> None:
        nonlocal done
        done += fraction
        # a phase's fractions need not sum to one in floating point (999 rows in blocks of 131
        # values: 0.9999999999999998); its end is reported exactly, else ``--timings`` would
        # count what runs before the next phase's first report (obs written, builders made,
        # a whole slab) in this phase
        progress("compute", hi if done >= 1.0 - 1e-9 else lo + (hi - lo) * done)

    return advance


def _check_unique(path: Path, index: Any, what: str) -> None:
    dup = index.duplicated()
    if dup.any():
        name = index[int(np.argmax(dup))]
        where = np.flatnonzero(index == name)[:2]
        axis = "rows" if what == "cell id" else "columns"  # of the matrix, counted from 1
        raise InputError(
            f"{path.name}: duplicate {what} {name!r} at {axis} {where[0] + 1} and {where[1] + 1}"
        )
