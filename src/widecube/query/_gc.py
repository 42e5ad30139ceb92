"""Retention: garbage collection, retention policies and pins, deleting a dataset, inventory.

Garbage collection (:meth:`Lifecycle.gc`) applies each dataset's retention policy (the pure
:func:`~._retention.retention_plan`) and removes, through the snapshot store's interface
(a local folder or an object store alike):

* versions the policy releases: marked ``removed`` in the catalog (when, by which policy;
  the row stays), their hot files purged ``gc_grace`` seconds later;
* hot files of versions removed or archived earlier whose grace is over (*purges*);
* *leftovers*: version folders under ``datasets/<name>/`` that no version needs (a failed or
  killed job's, a version the catalog does not know);
* the decoded cache of versions that are removed, archived or failed.

A reader holding a version while it goes keeps its answers correct: see ``_resolve``.

Archive and restore (the storage tiers) are ``_tiers``'s; their hot files are purged here,
like a removed version's, after the grace.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from ..access import ANONYMOUS, SERVER, Actor
from ..catalog import DEFAULT_POLICY, VersionFacts, VersionStatus
from ..snapshot import Storage
from ._retention import retention_plan
from ._tiers import Tiers
from ._warming import CacheUpkeep
from .results_lake import Deleted, GcItem, GcReport, InventoryRow, Retention

__all__ = ["Lifecycle"]

_FOLDER = re.compile(r"^[0-9a-f]{32}(-r\d+)?$")  # a version's folder (a restored one may carry -rN)
_HOT = (VersionStatus.VERIFIED, VersionStatus.PUBLISHED, VersionStatus.RETIRED, VersionStatus.CORRUPT)
_UNSERVED = (VersionStatus.REMOVED, VersionStatus.ARCHIVED, VersionStatus.FAILED)


class Lifecycle(CacheUpkeep, Tiers):
    """Garbage collection, retention policies, pins and storage tiers of the versions."""

    # -- garbage collection -----------------------------------------------------------------

    def gc(self, dataset: str | None = None, *, dry_run: bool = False, actor: Actor = ANONYMOUS) -> GcReport:
        """Remove what the retention policies release (one dataset: its owners; every
        dataset: admins). ``dry_run`` reports the same without changing anything.

            >>> wc.gc(dry_run=True)["removed"]  # doctest: +SKIP
        """
        self.door.authorize(actor, "gc", dataset or SERVER)
        report = self._collect(dataset, dry_run=dry_run, by=actor.user or actor.via)
        if not dry_run and report.removed:
            self.door.record(
                actor,
                "gc",
                dataset,
                removed=[i.version for i in report.removed if i.kind == "version"],
                bytes_freed=report.bytes_freed,
            )
        return report

    def _collect(self, dataset: str | None, *, dry_run: bool, by: str) -> GcReport:
        self._flush_reads()
        names = [dataset] if dataset is not None else [d.name for d in self.catalog.datasets()]
        # folders first, then the catalog: a folder listed here whose version the catalog
        # does not know yet cannot exist (a version is recorded before anything is written)
        folders = {name: self.storage.names(f"datasets/{name}") for name in names}
        facts = self.catalog.lifecycle.facts(dataset)
        policies = self.catalog.lifecycle.policies()
        now = datetime.now(UTC)
        items: list[GcItem] = []
        kept = 0
        for name in names:
            mine = [f for f in facts if f.dataset == name]
            policy = policies.get(name, DEFAULT_POLICY)
            plan = retention_plan(mine, policy, now=now)
            kept += sum(1 for v in plan.values() if v.action == "keep")
            for f in mine:
                if plan[f.version].action == "release":
                    items += self._release(f, policy.describe(), policy.keep_read_s, now, dry_run)
            items += self._leftovers(name, folders[name], mine, dry_run)
        items += self._purges(dataset, now, dry_run)
        items += self._caches(facts, dry_run)
        freed = sum(i.bytes for i in items if dry_run or i.kind != "version")
        return GcReport(dry_run, items, freed, kept)

    def _release(
        self, f: VersionFacts, why: str, keep_read_s: int, now: datetime, dry_run: bool
    ) -> list[GcItem]:
        assert f.path is not None
        size = self._size(self.storage, f.path)
        item = GcItem("version", f.dataset, f.version, f.path, size, why)
        if dry_run:
            return [item]
        removed = self.catalog.lifecycle.remove(
            f.dataset,
            f.version,
            by=why,
            bytes=size,
            purge_due=now + timedelta(seconds=self.settings.gc_grace),
            read_before=now - timedelta(seconds=keep_read_s),
        )
        return [item] if removed else []

    def _purges(self, dataset: str | None, now: datetime, dry_run: bool) -> list[GcItem]:
        items = []
        for purge in self.catalog.lifecycle.due(now):
            if dataset is not None and purge.dataset != dataset:
                continue
            size = self._size(self.storage, purge.path)
            if not dry_run:
                if not self.catalog.lifecycle.claim_purge(purge):
                    continue  # another process purges it
                with self._lock:
                    self._open.pop(purge.version, None)
                self.storage.remove(purge.path)
                self.catalog.lifecycle.purged(purge)
            items.append(GcItem("purge", purge.dataset, purge.version, purge.path, size, "grace over"))
        return items

    def _leftovers(
        self, name: str, folders: set[str], facts: list[VersionFacts], dry_run: bool
    ) -> list[GcItem]:
        in_use: set[str] = set()
        for f in facts:
            if f.status == VersionStatus.BUILDING:
                in_use.add(f.version)
            if f.path is not None and f.status in _HOT:
                in_use.add(f.path.rsplit("/", 1)[-1])
            if f.purge_path is not None:
                in_use.add(f.purge_path.rsplit("/", 1)[-1])
        known = {f.version: f for f in facts}
        items = []
        for folder in sorted(folders - in_use):
            if not _FOLDER.match(folder):
                continue  # not a version's folder: not ours to remove
            path = f"datasets/{name}/{folder}"
            owner = known.get(folder[:32])
            why = "not in the catalog" if owner is None else f"left by a {owner.status} version"
            items.append(GcItem("leftover", name, folder[:32], path, self._size(self.storage, path), why))
            if not dry_run:
                self.storage.remove(path)
        return items

    def _caches(self, facts: list[VersionFacts], dry_run: bool) -> list[GcItem]:
        root = self.settings.cache
        items = []
        for f in facts:
            folder = root / f.version if root is not None else None
            if f.status not in _UNSERVED or folder is None or not folder.is_dir():
                continue
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())  # the cache is local
            if dry_run or self._remove_cache(f.version):
                items.append(GcItem("cache", f.dataset, f.version, f.version, size, f"version {f.status}"))
        return items

    @staticmethod
    def _size(storage: Storage, path: str) -> int:
        return sum(storage.sub(path).list().values())

    # -- policies and pins --------------------------------------------------------------------

    def retention(
        self,
        dataset: str,
        *,
        keep_last: int | None = None,
        read_within_minutes: float | None = None,
        actor: Actor = ANONYMOUS,
    ) -> Retention:
        """The dataset's retention policy; with ``keep_last`` or ``read_within_minutes`` set it
        first (its owners), the other keeping its current value."""
        if keep_last is None and read_within_minutes is None:
            self.door.authorize(actor, "read", dataset)
            policy = self.catalog.lifecycle.policy(dataset)
        else:
            with self.door.act(actor, "retention", dataset) as act:
                now = self.catalog.lifecycle.policy(dataset)
                last = now.keep_last if keep_last is None else keep_last
                read_s = now.keep_read_s if read_within_minutes is None else round(read_within_minutes * 60)
                policy = self.catalog.lifecycle.set_policy(
                    dataset, keep_last=last, keep_read_s=read_s, by=actor.user
                )
                act.detail.update(keep_last=last, keep_read_s=read_s)
        return Retention(dataset, policy.keep_last, policy.keep_read_s / 60, policy.default)

    def pin(self, dataset: str, version: str, *, pinned: bool = True, actor: Actor = ANONYMOUS) -> None:
        """Pin a version (garbage collection keeps it whatever the policy), or unpin it."""
        with self.door.act(actor, "retention", dataset, pinned=pinned) as act:
            act.version = version
            self.catalog.lifecycle.pin(dataset, version, pinned=pinned)

    # -- deleting a dataset -----------------------------------------------------------------

    def delete(self, dataset: str, *, dry_run: bool = False, actor: Actor = ANONYMOUS) -> Deleted:
        """Delete a dataset (its owners): it answers 404 from the next request on, its versions
        become ``removed`` and their files are purged after ``WIDECUBE_GC_GRACE`` by the next
        garbage collection, its grants, retention policy and metadata go; the catalog keeps the
        versions' rows and the audit log. 409 while a version is being built or a release names
        one. ``dry_run``: the versions it would remove, nothing changed.

            >>> wc.delete("old-pilot", actor=owner)["versions"]  # doctest: +SKIP
        """
        if dry_run:
            self.door.authorize(actor, "delete", dataset)
            return Deleted(dataset, True, self.catalog.lifecycle.deletable(dataset), None)
        purge_after = datetime.now(UTC) + timedelta(seconds=self.settings.gc_grace)
        with self.door.act(actor, "delete", dataset) as act:
            removed = self.catalog.lifecycle.delete_dataset(
                dataset, by=actor.user or actor.via, purge_due=purge_after
            )
            act.detail["removed"] = removed
        return Deleted(dataset, False, removed, purge_after)

    # -- inventory ------------------------------------------------------------------------------

    def inventory(self, dataset: str | None = None, *, actor: Actor = ANONYMOUS) -> list[InventoryRow]:
        """Every version (of one dataset: its owners; of all: admins) with its state, where its
        snapshot is, its bytes and what its retention policy says of it."""
        self.door.authorize(actor, "inventory", dataset or SERVER)
        facts = self.catalog.lifecycle.facts(dataset)
        policies = self.catalog.lifecycle.policies()
        now = datetime.now(UTC)
        plans = {}
        for name in {f.dataset for f in facts}:
            mine = [f for f in facts if f.dataset == name]
            plans.update(retention_plan(mine, policies.get(name, DEFAULT_POLICY), now=now))
        rows = []
        for f in facts:
            verdict = plans[f.version]
            location, size = self._where(f)
            rows.append(
                InventoryRow(
                    dataset=f.dataset,
                    version=f.version,
                    status=str(f.status),
                    live=f.live,
                    created=f.created,
                    location=location,
                    bytes=size,
                    retention=verdict.action,
                    reasons=list(verdict.reasons),
                    releases=list(f.releases),
                    pinned=f.pinned,
                    last_read=f.last_read,
                    changed_at=f.changed_at,
                    changed_by=f.changed_by,
                )
            )
        return rows

    def _where(self, f: VersionFacts) -> tuple[str | None, int | None]:
        if f.status == VersionStatus.ARCHIVED and f.archive_url is not None and f.path is not None:
            return f"{f.archive_url}/{f.path}", f.bytes
        if f.path is not None and f.status in (*_HOT, VersionStatus.BUILDING):
            return f"{self.storage.url}/{f.path}", self._size(self.storage, f.path)
        return None, f.bytes
