"""Releases and ``publish --together``: several datasets at once.

A release names a version of each of several datasets and never changes; reads accept
``release=NAME`` and answer each dataset at the version the release names
(:meth:`Releasing.release_version`, which the API's dataset routes call). ``publish
--together`` re-checks every target's files first and then moves every pointer in one
catalog transaction: a failed check (or any refusal) publishes nothing.

    >>> wc.publish_together(["pbmc", "lung@3f2a..."], release="atlas-1")  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..access import ANONYMOUS, SERVER, Actor
from ..catalog import NAME_PATTERN, ReleaseNotFound, ReleaseRecord, VersionStatus
from ..errors import CatalogError, InvalidQuery, NotFound, WidecubeError
from ._versions import Admin
from .results_lake import ReleaseInfo, Together

__all__ = ["Releasing", "parse_targets"]

_NAME = re.compile(NAME_PATTERN)


def parse_targets(targets: Sequence[str]) -> dict[str, str | None]:
    """``["a", "b@3f2a..."]`` → ``{"a": None, "b": "3f2a..."}``; a dataset named twice is refused.

    >>> parse_targets(["a", "b@v1"])
    {'a': None, 'b': 'v1'}
    """
    found: dict[str, str | None] = {}
    for target in targets:
        dataset, _, version = target.partition("@")
        if not _NAME.fullmatch(dataset):
            raise InvalidQuery(f"{target!r} is not DATASET or DATASET@VERSION")
        if dataset in found:
            raise InvalidQuery(f"dataset {dataset!r} is named twice")
        found[dataset] = version or None
    return found


class Releasing(Admin):
    """Releases (create, list, show, read through) and several datasets published together."""

    def create_release(
        self, name: str, datasets: Sequence[str], *, note: str | None = None, actor: Actor = ANONYMOUS
    ) -> ReleaseInfo:
        """Record release ``name`` of ``datasets`` (``a`` for its live version, ``a@VERSION``);
        the caller owns every dataset named."""
        if not _NAME.fullmatch(name):
            raise InvalidQuery(f"release name {name!r} must match {NAME_PATTERN}")
        members = parse_targets(datasets)
        with self._acts(actor, "release", members, release=name) as versions:
            record = self.catalog.releases.create(name, members, by=actor.user or actor.via, note=note)
            versions.update(record.members)
        return _info(record)

    def releases(self, *, actor: Actor = ANONYMOUS) -> list[ReleaseInfo]:
        """Every release whose datasets the caller may all read, newest first."""
        self.door.authorize(actor, "read", SERVER)
        found = self.catalog.releases.list()
        names = {d for r in found for d in r.members}
        shown = set(self.door.visible(actor, sorted(names)))
        return [_info(r) for r in found if set(r.members) <= shown]

    def release(self, name: str, *, actor: Actor = ANONYMOUS) -> ReleaseInfo:
        """One release (404 unless the caller may read every dataset it names)."""
        record = self.catalog.releases.get(name)
        try:
            for dataset in record.members:
                self.door.authorize(actor, "read", dataset)
        except NotFound as exc:
            raise ReleaseNotFound(f"no release named {name!r} in the catalog") from exc
        return _info(record)

    def release_version(self, release: str, dataset: str, *, actor: Actor = ANONYMOUS) -> str:
        """The version of ``dataset`` that ``release`` names (a read of ``release=NAME``)."""
        self.door.authorize(actor, "read", dataset)
        return self.catalog.releases.version_of(release, dataset)

    def publish_together(
        self, datasets: Sequence[str], *, release: str | None = None, actor: Actor = ANONYMOUS
    ) -> Together:
        """Make a verified version of each dataset live in ONE catalog transaction (``a``: its
        newest verified version not yet published; ``a@VERSION``). Every target's files are
        re-checked against its manifest first; a failure of any check, or any refusal,
        publishes nothing. With ``release``, the same transaction records that release."""
        if release is not None and not _NAME.fullmatch(release):
            raise InvalidQuery(f"release name {release!r} must match {NAME_PATTERN}")
        asked = parse_targets(datasets)
        with self._acts(actor, "publish", asked, together=sorted(asked), release=release) as versions:
            targets = {d: v if v is not None else self._waiting(d) for d, v in asked.items()}
            versions.update(targets)
            for dataset, version in sorted(targets.items()):
                self._require_intact(dataset, version, "publish")
            before = self.catalog.releases.publish_together(
                targets, release=release, by=actor.user or actor.via
            )
        return Together(targets, {d: v or None for d, v in before.items()}, release)

    def _waiting(self, dataset: str) -> str:
        """The newest verified version of ``dataset`` (freshly ingested, not yet published)."""
        found = next((r for r in self.catalog.versions(dataset) if r.status == VersionStatus.VERIFIED), None)
        if found is None:
            raise CatalogError(
                f"dataset {dataset!r} has no verified version waiting to be published (ingest one with "
                "--no-publish, or name a version: DATASET@VERSION); nothing was published"
            )
        return found.version

    @contextmanager
    def _acts(
        self, actor: Actor, action: str, members: dict[str, str | None], **detail: Any
    ) -> Iterator[dict[str, str]]:
        """Authorize ``action`` on every dataset first (the caller must own each), run the block,
        and record one audit row per dataset with how it ended and its version."""
        for dataset in sorted(members):
            self.door.authorize(actor, action, dataset)  # type: ignore[arg-type]
        versions: dict[str, str] = {}
        try:
            yield versions
        except WidecubeError as exc:
            for dataset in sorted(members):
                self.door.record(
                    actor,
                    action,
                    dataset,
                    version=versions.get(dataset),
                    outcome="failed",
                    error=type(exc).__name__,
                    **detail,
                )
            raise
        for dataset in sorted(members):
            self.door.record(actor, action, dataset, version=versions.get(dataset), **detail)


def _info(record: ReleaseRecord) -> ReleaseInfo:
    return ReleaseInfo(record.name, record.created, record.created_by, record.note, dict(record.members))
