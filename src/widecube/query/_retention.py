"""The retention policy as a pure function: from a dataset's versions, its policy and the time,
which versions garbage collection keeps (and why) and which it may remove.

A version is kept when any of these holds (every reason is listed, for the inventory):

* ``building``: a job is writing it;
* ``live``: the dataset's pointer names it;
* ``pinned``: an owner pinned it (``widecube pin``);
* ``release NAME``: a release names it (releases never change, so neither does this);
* ``archived``: its snapshot is in cold storage already (archiving is a decision to keep it);
* ``read N min ago``: a request read it within the policy's ``keep_read_s``;
* ``one of the last N published``: it is among the policy's ``keep_last`` newest versions
  that were ever live (a corrupt one does not count);
* ``waiting to be published``: verified, never live, and newer than the live version (an
  ``ingest --no-publish`` waiting for ``publish --together``).

Any other version with a snapshot (verified, retired, corrupt) is *released*: garbage
collection removes it. Versions without one (failed, removed) need nothing.

    >>> plan = retention_plan(facts, RetentionPolicy(keep_last=2), now=datetime.now(UTC))  # doctest: +SKIP
    >>> plan["3f2a..."].action
    'release'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ..catalog import RetentionPolicy, VersionFacts, VersionStatus

__all__ = ["Verdict", "retention_plan"]

Action = Literal["keep", "release", "none"]
_HAS_SNAPSHOT = (
    VersionStatus.VERIFIED,
    VersionStatus.PUBLISHED,
    VersionStatus.RETIRED,
    VersionStatus.CORRUPT,
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the policy says of one version: ``keep`` (with ``reasons``), ``release`` (garbage
    collection removes it) or ``none`` (nothing left to remove: failed or removed)."""

    action: Action
    reasons: tuple[str, ...]


def retention_plan(
    facts: Sequence[VersionFacts], policy: RetentionPolicy, *, now: datetime
) -> dict[str, Verdict]:
    """The verdict on every version of ONE dataset (``facts``, in any order)."""
    newest_first = sorted(facts, key=lambda f: f.created, reverse=True)
    published = [
        f.version
        for f in newest_first
        if f.ever_published
        and f.status in (VersionStatus.PUBLISHED, VersionStatus.RETIRED, VersionStatus.ARCHIVED)
    ]
    recent = set(published[: policy.keep_last])
    live = next((f for f in newest_first if f.live), None)
    plan: dict[str, Verdict] = {}
    for f in newest_first:
        if f.status in (VersionStatus.FAILED, VersionStatus.REMOVED):
            plan[f.version] = Verdict("none", (str(f.status),))
            continue
        reasons: list[str] = []
        if f.status == VersionStatus.BUILDING:
            reasons.append("building")
        if f.live:
            reasons.append("live")
        if f.pinned:
            reasons.append("pinned")
        reasons.extend(f"release {name}" for name in f.releases)
        if f.status == VersionStatus.ARCHIVED:
            reasons.append("archived")
        if f.last_read is not None:
            age = (now - f.last_read).total_seconds()
            if age < policy.keep_read_s:
                reasons.append(f"read {max(age, 0) / 60:.0f} min ago")
        if f.version in recent and f.status != VersionStatus.CORRUPT:
            reasons.append(f"one of the last {policy.keep_last} published")
        if (
            f.status == VersionStatus.VERIFIED
            and not f.ever_published
            and (live is None or f.created > live.created)
        ):
            reasons.append("waiting to be published")
        if reasons:
            plan[f.version] = Verdict("keep", tuple(reasons))
        elif f.status in _HAS_SNAPSHOT:
            plan[f.version] = Verdict("release", (policy.describe(),))
        else:  # pragma: no cover - every status is handled above
            plan[f.version] = Verdict("none", (str(f.status),))
    return plan
