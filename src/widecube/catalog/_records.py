"""What the catalog hands out, and which status changes it allows.

Records are frozen snapshots of rows: reading one never reaches back to the database. The
transition table is pure data, so the rules of a version's life are stated once and checked
without a database::

    building ──► verified ──► published ◄──► retired ◄──► archived
        │            │  ▲ │          │             │
        └──► failed ◄┘  │ └► corrupt ◄┴─────────────┘      (verified ◄──► archived too)
                        │       │
          removed ◄─────┴───────┴── verified, retired, corrupt, failed (garbage collection)

A version is published only from verified or retired (publishing or rolling back), retired
only from published (when the pointer moves away) or archived (restored), and fails only
before it is published. Archived (its snapshot in cold storage) comes from a verified or
retired version and goes back to either when restored; corrupt (a scrub found a file at
fault) from any version with a snapshot; removed (its snapshot garbage-collected; the row
stays as the record of it) from any version that is not live.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from widecube.errors import CatalogError

__all__ = ["DatasetRecord", "VersionRecord", "VersionStatus", "check_transition"]


class VersionStatus(enum.StrEnum):
    """Where a dataset version is in its life."""

    BUILDING = "building"
    VERIFIED = "verified"
    PUBLISHED = "published"
    FAILED = "failed"
    RETIRED = "retired"
    REMOVED = "removed"
    ARCHIVED = "archived"
    CORRUPT = "corrupt"


_SOURCES: dict[VersionStatus, frozenset[VersionStatus]] = {
    VersionStatus.VERIFIED: frozenset({VersionStatus.BUILDING, VersionStatus.ARCHIVED}),
    VersionStatus.FAILED: frozenset({VersionStatus.BUILDING, VersionStatus.VERIFIED}),
    VersionStatus.PUBLISHED: frozenset({VersionStatus.VERIFIED, VersionStatus.RETIRED}),
    VersionStatus.RETIRED: frozenset({VersionStatus.PUBLISHED, VersionStatus.ARCHIVED}),
    VersionStatus.ARCHIVED: frozenset({VersionStatus.VERIFIED, VersionStatus.RETIRED}),
    VersionStatus.CORRUPT: frozenset(
        {VersionStatus.VERIFIED, VersionStatus.PUBLISHED, VersionStatus.RETIRED}
    ),
    VersionStatus.REMOVED: frozenset(
        {VersionStatus.VERIFIED, VersionStatus.RETIRED, VersionStatus.CORRUPT, VersionStatus.FAILED}
    ),
}


def check_transition(dataset: str, version: str, current: VersionStatus, target: VersionStatus) -> None:
    """Raise :class:`CatalogError` unless a version may go from ``current`` to ``target``.

    Example::

        >>> check_transition("pbmc", "ab12", VersionStatus.BUILDING, VersionStatus.VERIFIED)
        >>> check_transition("pbmc", "ab12", VersionStatus.FAILED, VersionStatus.PUBLISHED)
        Traceback (most recent call last):
        ...
        widecube.errors.CatalogError: version ab12 of dataset 'pbmc' is failed; ...
    """
    allowed = _SOURCES.get(target, frozenset())
    if current not in allowed:
        sources = " or ".join(sorted(s.value for s in allowed)) or "no status"
        raise CatalogError(
            f"version {version} of dataset {dataset!r} is {current.value}; "
            f"only a {sources} version can become {target.value}"
        )


@dataclass(frozen=True)
class VersionRecord:
    """One version of a dataset, as the catalog last recorded it.

    ``path`` is the snapshot folder relative to the storage root; it is set when the version
    is verified and cleared when it fails, so a non-None path always names a complete
    snapshot. ``params`` are the ingest parameters, ``info`` a summary of the snapshot
    manifest (groupings, views, ...); both are plain JSON. ``base`` is the version the
    dataset's pointer named when this one began building (None: nothing was live); a job
    publishes its version only while the pointer still names it. ``reason`` says why a
    version failed, or why a verified one was not published.
    """

    dataset: str
    version: str
    status: VersionStatus
    created: datetime
    updated: datetime
    path: str | None
    reason: str | None
    n_cells: int | None
    n_genes: int | None
    input_name: str | None
    input_sha256: str | None
    params: dict[str, Any] = field(hash=False)
    info: dict[str, Any] = field(hash=False)
    base: str | None = None


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset and the version its pointer names (None while nothing is published)."""

    name: str
    created: datetime
    current: VersionRecord | None
