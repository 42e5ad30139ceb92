"""The retention policy as a pure function: every rule, on hand-made version facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from widecube.catalog import RetentionPolicy, VersionFacts, VersionStatus
from widecube.query import retention_plan

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
S = VersionStatus


def fact(version: str, status: VersionStatus, age_min: float, **kw: object) -> VersionFacts:
    values: dict[str, object] = dict(
        dataset="d",
        version=version,
        status=status,
        created=NOW - timedelta(minutes=age_min),
        path=f"datasets/d/{version}",
        live=False,
        ever_published=status in (S.PUBLISHED, S.RETIRED),
        pinned=False,
        last_read=None,
        bytes=None,
        archive_url=None,
        changed_at=None,
        changed_by=None,
        purge_path=None,
        purge_due=None,
        releases=(),
        info={},
    )
    values.update(kw)
    return VersionFacts(**values)  # type: ignore[arg-type]


def test_every_rule_keeps_what_it_names_and_the_rest_is_released() -> None:
    facts = [
        fact("held", S.VERIFIED, 1),  # newer than the live one, never published: waiting
        fact("live", S.PUBLISHED, 2, live=True),
        fact("prev", S.RETIRED, 3),
        fact("old1", S.RETIRED, 4),
        fact("pinned", S.RETIRED, 5, pinned=True),
        fact("rel", S.RETIRED, 6, releases=("atlas-1",)),
        fact("read", S.RETIRED, 7, last_read=NOW - timedelta(minutes=5)),
        fact("stale", S.RETIRED, 8, last_read=NOW - timedelta(minutes=50)),
        fact("cold", S.ARCHIVED, 9, ever_published=True),
        fact("superseded", S.VERIFIED, 10),  # older than the live one: nobody waits for it
        fact("bad", S.CORRUPT, 11, ever_published=True),
        fact("gone", S.REMOVED, 12, path=None, ever_published=True),
        fact("broken", S.FAILED, 13, path=None),
        fact("new", S.BUILDING, 0.5, path=None),
    ]
    plan = retention_plan(facts, RetentionPolicy(keep_last=2, keep_read_s=30 * 60), now=NOW)
    assert {v: (p.action, p.reasons) for v, p in plan.items()} == {
        "held": ("keep", ("waiting to be published",)),
        "live": ("keep", ("live", "one of the last 2 published")),
        "prev": ("keep", ("one of the last 2 published",)),
        "old1": ("release", ("retention: keep_last=2, read_within=30 min",)),
        "pinned": ("keep", ("pinned",)),
        "rel": ("keep", ("release atlas-1",)),
        "read": ("keep", ("read 5 min ago",)),
        "stale": ("release", ("retention: keep_last=2, read_within=30 min",)),
        "cold": ("keep", ("archived",)),
        "superseded": ("release", ("retention: keep_last=2, read_within=30 min",)),
        "bad": ("release", ("retention: keep_last=2, read_within=30 min",)),
        "gone": ("none", ("removed",)),
        "broken": ("none", ("failed",)),
        "new": ("keep", ("building",)),
    }


def test_keep_last_zero_keeps_only_the_live_version() -> None:
    facts = [fact("live", S.PUBLISHED, 1, live=True), fact("prev", S.RETIRED, 2)]
    plan = retention_plan(facts, RetentionPolicy(keep_last=0, keep_read_s=0), now=NOW)
    assert plan["live"].reasons == ("live",) and plan["prev"].action == "release"
