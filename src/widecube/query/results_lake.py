"""What the lifecycle calls answer (garbage collection, inventory, scrub, releases, tiers):
frozen, slotted dataclasses readable as mappings, like :mod:`widecube.query.results`."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from .results import Result

__all__ = [
    "Deleted",
    "GcItem",
    "GcReport",
    "InventoryRow",
    "ReleaseInfo",
    "Retention",
    "ScrubFinding",
    "ScrubReport",
    "TierMove",
    "Together",
]

_RESULT = {"frozen": True, "slots": True, "eq": False, "repr": False}


@dataclasses.dataclass(**_RESULT)
class GcItem(Result):
    """One thing garbage collection removed (or would remove, in a dry run).

    ``kind``: ``version`` (marked removed in the catalog; its files are purged after the
    grace), ``purge`` (the hot files of a version removed or archived earlier), ``leftover``
    (a snapshot folder no version needs: a failed or unknown version's), ``cache`` (decoded
    cache files of a version that is not served any more), ``work`` (a job's work folder or
    spill that no job will resume). ``path`` is relative to its storage, cache or work
    folder; ``why`` the policy or rule that released it."""

    kind: str
    dataset: str | None
    version: str | None
    path: str
    bytes: int
    why: str


@dataclasses.dataclass(**_RESULT)
class GcReport(Result):
    """A garbage collection's report: what went (``removed``), the bytes freed (bytes purged
    from storage, caches and work folders; a version only marked removed frees its bytes when
    its purge runs), and how many versions the policies kept."""

    dry_run: bool
    removed: list[GcItem]
    bytes_freed: int
    kept: int

    def merged(self, more: list[GcItem]) -> GcReport:
        """This report with ``more`` items (e.g. the jobs' work folders) added."""
        extra = sum(i.bytes for i in more)
        return GcReport(self.dry_run, [*self.removed, *more], self.bytes_freed + extra, self.kept)


@dataclasses.dataclass(**_RESULT)
class Retention(Result):
    """A dataset's retention policy: the ``keep_last`` newest published versions, and any
    read within ``read_within_minutes``; ``default`` when none was set."""

    dataset: str
    keep_last: int
    read_within_minutes: float
    default: bool


@dataclasses.dataclass(**_RESULT)
class InventoryRow(Result):
    """One version: its state, where its snapshot is, its bytes and what retention says."""

    dataset: str
    version: str
    status: str
    live: bool
    created: datetime
    location: str | None
    bytes: int | None
    retention: str
    reasons: list[str]
    releases: list[str]
    pinned: bool
    last_read: datetime | None
    changed_at: datetime | None
    changed_by: str | None


@dataclasses.dataclass(**_RESULT)
class ScrubFinding(Result):
    """One version a scrub re-read: the files at fault (``{"file", "problem"}``), whether it
    was marked corrupt now, and the version the dataset rolled back to (``--repair``)."""

    dataset: str
    version: str
    status: str
    ok: bool
    files: list[dict[str, str]]
    marked_corrupt: bool
    repaired_to: str | None


@dataclasses.dataclass(**_RESULT)
class ScrubReport(Result):
    """A scrub: every version re-read, and the bytes read."""

    ok: bool
    versions: list[ScrubFinding]
    bytes_read: int


@dataclasses.dataclass(**_RESULT)
class TierMove(Result):
    """An archive or a restore: the version, its status now, where its snapshot is, bytes,
    and the storage class its objects are in (None: the store's default, or a folder)."""

    dataset: str
    version: str
    status: str
    location: str
    bytes: int
    storage_class: str | None = None


@dataclasses.dataclass(**_RESULT)
class Deleted(Result):
    """A deleted dataset (or, with ``dry_run``, what deleting it would do): the versions that
    became ``removed`` and when their files are purged (the grace readers get to finish)."""

    dataset: str
    dry_run: bool
    versions: list[str]
    purge_after: datetime | None


@dataclasses.dataclass(**_RESULT)
class ReleaseInfo(Result):
    """A release: its name, who made it when, and ``{dataset: version}``."""

    name: str
    created: datetime
    created_by: str | None
    note: str | None
    datasets: dict[str, str]


@dataclasses.dataclass(**_RESULT)
class Together(Result):
    """``publish --together``: ``{dataset: version}`` now live, what was live before (None:
    nothing), and the release recorded with them (if asked)."""

    published: dict[str, str]
    previous: dict[str, str | None]
    release: str | None
