"""Releases: a name for an immutable set of dataset versions, and moving several datasets'
pointers in one transaction.

A release names at most one version per dataset; once created it never changes (there is
no update and no delete), so a read pinned to a release is pinned for ever, and garbage
collection keeps every version a release names. Creating one locks every dataset it names
(in name order, so two creations never deadlock) and reads their pointers in the same
transaction: a release of the live versions is a consistent cut across datasets.

:meth:`Releases.publish_together` is the cross-dataset transaction the original system
wished for: the pointers of several datasets move in one commit, or none does.

    >>> catalog.releases.create("atlas-1", {"pbmc": None, "lung": "3f2a..."}, by="ana")  # doctest: +SKIP
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from widecube.catalog import _queries as q
from widecube.catalog._pointer import move_pointer
from widecube.catalog._records import VersionStatus
from widecube.catalog._schema import datasets, release_members, releases
from widecube.errors import CatalogError, NotFound

__all__ = ["ReleaseNotFound", "ReleaseRecord", "Releases"]

Transaction = Callable[[], AbstractContextManager[sa.Connection]]
_MEMBERS = (VersionStatus.PUBLISHED, VersionStatus.RETIRED, VersionStatus.VERIFIED, VersionStatus.ARCHIVED)


class ReleaseNotFound(NotFound):
    """No release of that name (or it names no version of the dataset asked for)."""


@dataclass(frozen=True)
class ReleaseRecord:
    """A release: its name, when and by whom it was made, and ``{dataset: version}``."""

    name: str
    created: datetime
    created_by: str | None
    note: str | None
    members: dict[str, str] = field(hash=False)


class Releases:
    """The releases of one catalog (see the module docstring)."""

    def __init__(self, write: Transaction, read: Transaction) -> None:
        self._write, self._read = write, read

    def create(
        self, name: str, members: Mapping[str, str | None], *, by: str | None, note: str | None = None
    ) -> ReleaseRecord:
        """Record release ``name`` of ``{dataset: version}``; a version None is the dataset's
        live version at this instant. Every version must have a snapshot (verified,
        published, retired or archived)."""
        if not members:
            raise CatalogError(f"release {name!r} names no dataset")
        now = datetime.now(UTC)
        chosen: dict[str, str] = {}
        with self._write() as conn:
            ids = {dataset: q.lock_dataset(conn, dataset) for dataset in sorted(members)}
            for dataset in sorted(members):
                version = members[dataset] or q.pointer(conn, ids[dataset])
                if version is None:
                    raise CatalogError(f"release {name!r}: dataset {dataset!r} has no live version to name")
                ref = q.version_ref(conn, dataset, ids[dataset], version)
                if ref.status not in _MEMBERS:
                    raise CatalogError(
                        f"release {name!r}: version {version} of dataset {dataset!r} is {ref.status}; "
                        "a release names versions with a snapshot (verified, published, retired, archived)"
                    )
                chosen[dataset] = version
            try:
                with conn.begin_nested():
                    key = conn.execute(
                        sa.insert(releases).values(name=name, created_at=now, created_by=by, note=note)
                    ).inserted_primary_key
            except IntegrityError as exc:
                raise CatalogError(f"release {name!r} exists already; a release never changes") from exc
            assert key is not None
            conn.execute(
                sa.insert(release_members),
                [
                    {"release_id": key[0], "dataset_id": ids[dataset], "version_id": version}
                    for dataset, version in chosen.items()
                ],
            )
        return ReleaseRecord(name, now, by, note, chosen)

    def get(self, name: str) -> ReleaseRecord:
        """The release ``name``; :class:`ReleaseNotFound` naming it if there is none."""
        found = self._load(releases.c.name == name)
        if not found:
            raise ReleaseNotFound(f"no release named {name!r} in the catalog")
        return found[0]

    def list(self) -> list[ReleaseRecord]:
        """Every release, newest first."""
        return self._load(sa.true())

    def version_of(self, name: str, dataset: str) -> str:
        """The version of ``dataset`` that release ``name`` names (one small query)."""
        query = (
            sa.select(release_members.c.version_id)
            .select_from(
                release_members.join(releases, releases.c.id == release_members.c.release_id).join(
                    datasets, datasets.c.id == release_members.c.dataset_id
                )
            )
            .where(releases.c.name == name, datasets.c.name == dataset)
        )
        with self._read() as conn:
            found = conn.execute(query).scalar()
            if found is None:
                known = conn.execute(sa.select(releases.c.id).where(releases.c.name == name)).first()
        if found is not None:
            return str(found)
        if known is None:
            raise ReleaseNotFound(f"no release named {name!r} in the catalog")
        raise ReleaseNotFound(f"release {name!r} names no version of dataset {dataset!r}")

    def publish_together(
        self, targets: Mapping[str, str], *, release: str | None = None, by: str | None = None
    ) -> dict[str, str]:
        """Make ``{dataset: version}`` live in ONE transaction: every pointer moves, or none.

        Each version must be verified or retired (as for a publish); any refusal rolls the
        whole transaction back. With ``release``, the same transaction records a release of
        exactly these versions. Returns ``{dataset: the version live before}``."""
        if not targets:
            raise CatalogError("publish --together needs at least one dataset")
        now = datetime.now(UTC)
        before: dict[str, str] = {}
        with self._write() as conn:
            ids = {dataset: q.lock_dataset(conn, dataset) for dataset in sorted(targets)}
            for dataset in sorted(targets):
                target = q.version_ref(conn, dataset, ids[dataset], targets[dataset])
                previous = q.pointer(conn, ids[dataset])
                before[dataset] = previous or ""
                move_pointer(conn, dataset, ids[dataset], target, "publish", now)
            if release is not None:
                try:
                    with conn.begin_nested():
                        key = conn.execute(
                            sa.insert(releases).values(name=release, created_at=now, created_by=by, note=None)
                        ).inserted_primary_key
                except IntegrityError as exc:
                    raise CatalogError(f"release {release!r} exists already; nothing was published") from exc
                assert key is not None
                conn.execute(
                    sa.insert(release_members),
                    [
                        {"release_id": key[0], "dataset_id": ids[d], "version_id": v}
                        for d, v in sorted(targets.items())
                    ],
                )
        return before

    def _load(self, where: sa.ColumnElement[bool]) -> builtins.list[ReleaseRecord]:
        heads = sa.select(releases).where(where).order_by(releases.c.created_at.desc(), releases.c.id.desc())
        members = (
            sa.select(release_members.c.release_id, datasets.c.name, release_members.c.version_id)
            .join(datasets, datasets.c.id == release_members.c.dataset_id)
            .order_by(datasets.c.name)
        )
        with self._read() as conn:
            rows = conn.execute(heads).mappings().all()
            wanted = [row["id"] for row in rows]
            by_release: dict[int, dict[str, str]] = {}
            if wanted:
                for m in conn.execute(members.where(release_members.c.release_id.in_(wanted))):
                    by_release.setdefault(m.release_id, {})[m.name] = m.version_id
        return [
            ReleaseRecord(
                row["name"], row["created_at"], row["created_by"], row["note"], by_release.get(row["id"], {})
            )
            for row in rows
        ]
