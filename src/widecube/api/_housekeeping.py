"""Lifecycle routes: garbage collection, inventory, scrub, retention and pins, archive and
restore, releases and publishing several datasets together.

Each route is one facade call (:class:`~widecube.query.Widecube`); the door decides who may:
a route on one dataset (``/admin/datasets/{name}/...``) needs its owner, a server-wide one
(``/admin/gc``, ``/admin/inventory``, ``/admin/scrub``) a server admin. Releases are read by
anyone who may read every dataset they name.

    POST /api/v1/admin/gc {"dry_run": true}
    → {"dry_run": true, "removed": [{"kind", "dataset", "version", "path", "bytes", "why"}],
       "bytes_freed": 1843200, "kept": 7}
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from ..access import Actor
from ..config import ArchiveClass
from ..pipeline import Jobs
from ..query import GcItem, GcReport, Widecube
from ._admin import ADMIN_PREFIX
from ._datasets import PREFIX, DatasetName
from ._deps import WC, Caller, JobsFacade
from ._responses import JSON
from .models import DATASET_PATTERN, Name, StrictBody

__all__ = ["router"]

router = APIRouter(tags=["lifecycle"])
_NO_STORE = {"Cache-Control": "no-store"}
Target = Annotated[
    str, Field(max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(@[A-Za-z0-9_.-]{1,64})?$")
]
ReleaseName = Annotated[str, Path(pattern=DATASET_PATTERN, description="the release", examples=["atlas-1"])]


class _Body(StrictBody):
    """Strict types too: ``{"dry_run": 0}`` is a 422, not false."""

    model_config = ConfigDict(extra="forbid", strict=True)


class GcRequest(_Body):
    dry_run: bool = Field(default=False, description="report what would go, change nothing")


class ScrubRequest(_Body):
    repair: bool = Field(default=False, description="roll a dataset whose live version is corrupt back")


class VersionRequest(_Body):
    version: Name = Field(description="a version of the dataset")


class ArchiveRequest(_Body):
    version: Name = Field(description="a version of the dataset")
    storage_class: ArchiveClass | None = Field(
        default=None,
        description="the S3 storage class to write the objects in (default "
        "WIDECUBE_ARCHIVE_STORAGE_CLASS; GLACIER and DEEP_ARCHIVE must be thawed by S3 before a restore)",
    )


class PinRequest(_Body):
    version: Name = Field(description="a version of the dataset")
    pinned: bool = Field(default=True, description="false: unpin")


class RetentionRequest(_Body):
    keep_last: int | None = Field(
        default=None, ge=0, le=100_000, description="newest published versions kept"
    )
    read_within_minutes: float | None = Field(
        default=None, ge=0, le=525_600, description="versions read within this many minutes are kept"
    )


class ReleaseRequest(_Body):
    name: Annotated[str, Field(pattern=DATASET_PATTERN)] = Field(examples=["atlas-1"])
    datasets: list[Target] = Field(min_length=1, max_length=1_000, description="DATASET or DATASET@VERSION")
    note: Annotated[str, Field(max_length=4_000)] | None = None


class TogetherRequest(_Body):
    datasets: list[Target] = Field(
        min_length=1,
        max_length=1_000,
        description="DATASET (its newest verified version) or DATASET@VERSION; all go live in one "
        "transaction, or none does",
    )
    release: Annotated[str, Field(pattern=DATASET_PATTERN)] | None = Field(
        default=None, description="also record these versions as this release, in the same transaction"
    )


class GcItemModel(BaseModel):
    kind: str = Field(description="version, purge, leftover, cache or work")
    dataset: str | None
    version: str | None
    path: str
    bytes: int
    why: str


class GcReportModel(BaseModel):
    dry_run: bool
    removed: list[GcItemModel]
    bytes_freed: int
    kept: int


class InventoryRowModel(BaseModel):
    dataset: str
    version: str
    status: str
    live: bool
    created: dt.datetime
    location: str | None
    bytes: int | None
    retention: str = Field(description="keep, release (the next gc removes it) or none")
    reasons: list[str]
    releases: list[str]
    pinned: bool
    last_read: dt.datetime | None
    changed_at: dt.datetime | None
    changed_by: str | None


class ScrubFindingModel(BaseModel):
    dataset: str
    version: str
    status: str
    ok: bool
    files: list[dict[str, str]]
    marked_corrupt: bool
    repaired_to: str | None


class ScrubReportModel(BaseModel):
    ok: bool
    versions: list[ScrubFindingModel]
    bytes_read: int


class TierMoveModel(BaseModel):
    dataset: str
    version: str
    status: str
    location: str
    bytes: int
    storage_class: str | None = Field(
        default=None,
        description="the S3 storage class of its objects (null: the store's default, or a folder)",
    )


class DeletedModel(BaseModel):
    dataset: str
    dry_run: bool
    versions: list[str] = Field(description="the versions removed (dry run: that would be)")
    purge_after: dt.datetime | None = Field(description="their files are purged after this (null: dry run)")


class RetentionModel(BaseModel):
    dataset: str
    keep_last: int
    read_within_minutes: float
    default: bool


class ReleaseModel(BaseModel):
    name: str
    created: dt.datetime
    created_by: str | None
    note: str | None
    datasets: dict[str, str]


class TogetherModel(BaseModel):
    published: dict[str, str]
    previous: dict[str, str | None]
    release: str | None


def _gc(wc: Widecube, jobs: Jobs, dataset: str | None, dry_run: bool, actor: Actor) -> GcReport:
    report = wc.gc(dataset, dry_run=dry_run, actor=actor)
    if dataset is not None:
        return report
    work = jobs.collect_garbage(dry_run=dry_run, actor=actor)  # jobs' work folders and spill
    return report.merged([GcItem("work", None, None, str(path), size, why) for path, size, why in work])


@router.post(f"{ADMIN_PREFIX}/gc", response_model=GcReportModel)
def gc(wc: WC, jobs: JobsFacade, actor: Caller, body: GcRequest | None = None) -> Response:
    """Garbage-collect every dataset by its retention policy, and the jobs' abandoned work (admins)."""
    return JSON(_gc(wc, jobs, None, body is not None and body.dry_run, actor), headers=_NO_STORE)


@router.post(f"{ADMIN_PREFIX}/datasets/{{name}}/gc", response_model=GcReportModel)
def gc_dataset(
    name: DatasetName, wc: WC, jobs: JobsFacade, actor: Caller, body: GcRequest | None = None
) -> Response:
    """Garbage-collect one dataset by its retention policy (its owners)."""
    return JSON(_gc(wc, jobs, name, body is not None and body.dry_run, actor), headers=_NO_STORE)


@router.get(f"{ADMIN_PREFIX}/inventory", response_model=list[InventoryRowModel])
def inventory(wc: WC, actor: Caller) -> Response:
    """Every version of every dataset: state, location, bytes, retention (admins)."""
    return JSON(wc.inventory(actor=actor), headers=_NO_STORE)


@router.get(f"{ADMIN_PREFIX}/datasets/{{name}}/inventory", response_model=list[InventoryRowModel])
def inventory_dataset(name: DatasetName, wc: WC, actor: Caller) -> Response:
    """Every version of one dataset: state, location, bytes, retention (its owners)."""
    return JSON(wc.inventory(name, actor=actor), headers=_NO_STORE)


@router.post(f"{ADMIN_PREFIX}/scrub", response_model=ScrubReportModel)
def scrub(wc: WC, actor: Caller, body: ScrubRequest | None = None) -> Response:
    """Re-read every stored snapshot against its manifest; mark corrupt versions (admins)."""
    return JSON(wc.scrub(repair=body is not None and body.repair, actor=actor), headers=_NO_STORE)


@router.post(f"{ADMIN_PREFIX}/datasets/{{name}}/scrub", response_model=ScrubReportModel)
def scrub_dataset(name: DatasetName, wc: WC, actor: Caller, body: ScrubRequest | None = None) -> Response:
    """Re-read one dataset's stored snapshots; with ``repair``, roll back from a corrupt live one."""
    return JSON(wc.scrub(name, repair=body is not None and body.repair, actor=actor), headers=_NO_STORE)


@router.get(f"{ADMIN_PREFIX}/datasets/{{name}}/retention", response_model=RetentionModel)
def retention(name: DatasetName, wc: WC, actor: Caller) -> Response:
    """The dataset's retention policy (anyone who reads the dataset)."""
    return JSON(wc.retention(name, actor=actor), headers=_NO_STORE)


@router.put(f"{ADMIN_PREFIX}/datasets/{{name}}/retention", response_model=RetentionModel)
def set_retention(name: DatasetName, body: RetentionRequest, wc: WC, actor: Caller) -> Response:
    """Set the dataset's retention policy (its owners); a field left out keeps its value."""
    found = wc.retention(
        name, keep_last=body.keep_last, read_within_minutes=body.read_within_minutes, actor=actor
    )
    return JSON(found, headers=_NO_STORE)


@router.post(f"{ADMIN_PREFIX}/datasets/{{name}}/pin", status_code=204)
def pin(name: DatasetName, body: PinRequest, wc: WC, actor: Caller) -> Response:
    """Pin a version (garbage collection keeps it), or unpin it (its owners)."""
    wc.pin(name, body.version, pinned=body.pinned, actor=actor)
    return Response(status_code=204)


@router.delete(f"{ADMIN_PREFIX}/datasets/{{name}}", response_model=DeletedModel)
def delete_dataset(
    name: DatasetName,
    wc: WC,
    actor: Caller,
    dry_run: Annotated[bool, Query(description="say what would be removed, change nothing")] = False,
) -> Response:
    """Delete a dataset (its owners): 404 from the next request on; its versions are removed
    and their files purged after the grace; 409 while a version is built or a release names one."""
    return JSON(wc.delete(name, dry_run=dry_run, actor=actor), headers=_NO_STORE)


@router.post(f"{ADMIN_PREFIX}/datasets/{{name}}/archive", response_model=TierMoveModel)
def archive(name: DatasetName, body: ArchiveRequest, wc: WC, actor: Caller) -> Response:
    """Move a verified or retired version to the cold storage, on an object store in a storage
    class (its reads answer 409 until restored)."""
    moved = wc.archive(name, body.version, storage_class=body.storage_class, actor=actor)
    return JSON(moved, headers=_NO_STORE)


@router.post(f"{ADMIN_PREFIX}/datasets/{{name}}/restore", response_model=TierMoveModel)
def restore(name: DatasetName, body: VersionRequest, wc: WC, actor: Caller) -> Response:
    """Bring an archived version back from the cold storage (409 while S3 has not thawed
    objects archived in GLACIER or DEEP_ARCHIVE)."""
    return JSON(wc.restore(name, body.version, actor=actor), headers=_NO_STORE)


@router.get(f"{PREFIX}/releases", response_model=list[ReleaseModel])
def releases(wc: WC, actor: Caller) -> Response:
    """Every release whose datasets the caller may all read, newest first."""
    return JSON(wc.releases(actor=actor), headers={"Cache-Control": "no-cache"})


@router.get(f"{PREFIX}/releases/{{release}}", response_model=ReleaseModel)
def release(release: ReleaseName, wc: WC, actor: Caller) -> Response:
    """One release: ``{dataset: version}`` (it never changes)."""
    return JSON(
        wc.release(release, actor=actor), headers={"Cache-Control": "public, max-age=31536000, immutable"}
    )


@router.post(f"{ADMIN_PREFIX}/releases", response_model=ReleaseModel, status_code=201)
def create_release(body: ReleaseRequest, wc: WC, actor: Caller) -> Response:
    """Record an immutable release of dataset versions (the caller owns each dataset)."""
    made = wc.create_release(body.name, body.datasets, note=body.note, actor=actor)
    return JSON(made, status_code=201, headers=_NO_STORE)


@router.post(f"{ADMIN_PREFIX}/publish-together", response_model=TogetherModel)
def publish_together(body: TogetherRequest, wc: WC, actor: Caller) -> Response:
    """Make a version of each dataset live in one catalog transaction: all, or none."""
    return JSON(wc.publish_together(body.datasets, release=body.release, actor=actor), headers=_NO_STORE)
