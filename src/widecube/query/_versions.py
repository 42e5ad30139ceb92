"""Admin moves on versions: list them, publish one, roll back, verify one's files.

Publish and rollback re-check the target's files against its manifest first, so what goes
live is what was verified; a verify that fails takes a version out of service, one that
passes puts it back.
"""

from __future__ import annotations

from ..access import ANONYMOUS, Actor
from ..catalog import VersionRecord, VersionStatus
from ..errors import CatalogError, SnapshotCorrupt, VersionNotFound
from ..snapshot import Fault, corrupt
from ._resolve import Resolver
from .results import Verification, VersionInfo

__all__ = ["Admin"]


class Admin(Resolver):
    """Versions of a dataset and the moves between them."""

    def versions(self, dataset: str, *, actor: Actor = ANONYMOUS) -> list[VersionInfo]:
        """Every version of ``dataset``, newest first, with status and whether it is live."""
        self.door.authorize(actor, "read", dataset)
        records = self.catalog.versions(dataset)
        current = next((r.version for r in records if r.status == VersionStatus.PUBLISHED), None)
        return [_version_info(r, current=r.version == current) for r in records]

    def publish(self, dataset: str, version: str, *, actor: Actor = ANONYMOUS) -> VersionInfo:
        """Make ``version`` (verified or retired) live; new requests see it at once.

        The version's files are re-checked against its manifest first; a corrupt one is
        refused with a :class:`CatalogError` naming the file (409)."""
        with self.door.act(actor, "publish", dataset) as act:
            act.version = version
            self._require_intact(dataset, version, "publish")
            return _version_info(self.catalog.publish(dataset, version), current=True)

    def rollback(self, dataset: str, to: str | None = None, *, actor: Actor = ANONYMOUS) -> VersionInfo:
        """Make ``to`` (default: the version live before the current one) live again, after
        re-checking its files like :meth:`publish`."""
        with self.door.act(actor, "rollback", dataset) as act:
            target = to if to is not None else self._rollback_target(dataset)
            act.version = target
            if target is not None:
                self._require_intact(dataset, target, "roll back to")
            info = _version_info(self.catalog.rollback(dataset, target), current=True)
            act.version = info.version
            return info

    def verify(self, dataset: str, version: str | None = None, *, actor: Actor = ANONYMOUS) -> Verification:
        """Re-check every file of a version (default: the live one) against its manifest
        sha256, and its decoded cache files against theirs.

        Returns ``{"dataset", "version", "ok", "files", "cache"}``: ``files`` are the snapshot
        files at fault, ``cache`` the decoded cache files that were (they are removed, so the
        next read decodes them again from the snapshot); both relative, ``{"file",
        "problem"}``. A corrupt snapshot is taken out of service; one that passes is put back.

            >>> wc.verify("pbmc")["ok"]  # doctest: +SKIP
            True
        """
        self.door.authorize(actor, "verify", dataset)
        catalog = self.catalog
        record = catalog.current(dataset) if version is None else catalog.get_version(dataset, version)
        if record.path is None:
            raise VersionNotFound(
                f"version {record.version} of dataset {dataset!r} is {record.status}: "
                "it has no snapshot to verify"
            )
        try:
            snap = self._snapshot(record)
        except SnapshotCorrupt as exc:  # its manifest cannot be read
            files, cache = [Fault(f, "cannot be read") for f in exc.files], []
        else:
            files = snap.check()
            cache = snap.check_cache(repair=True)
        if files:
            self._mark_corrupt(corrupt(dataset, record.version, files))
        else:
            self._mark_intact(record.version)
        return Verification(
            dataset=dataset,
            version=record.version,
            ok=not files and not cache,
            files=[_fault(f) for f in files],
            cache=[_fault(f) for f in cache],
        )

    def _require_intact(self, dataset: str, version: str, action: str) -> None:
        record = self.catalog.get_version(dataset, version)
        if record.path is None:
            return  # the catalog refuses a version without a snapshot with its own message
        try:
            faults = self._snapshot(record).check()
        except SnapshotCorrupt as exc:
            raise CatalogError(
                f"cannot {action} version {version} of dataset {dataset!r}: "
                f"file {exc.files[0]} cannot be read"
            ) from exc
        if faults:
            self._mark_corrupt(corrupt(dataset, version, faults))
            more = f" (and {len(faults) - 1} more files)" if len(faults) > 1 else ""
            raise CatalogError(
                f"cannot {action} version {version} of dataset {dataset!r}: file "
                f"{faults[0].file} {faults[0].problem}{more}"
            )
        self._mark_intact(version)

    def _rollback_target(self, dataset: str) -> str | None:
        """The version :meth:`Catalog.rollback` would pick (the one live before the live one,
        from the pointer history), or None to let the catalog refuse with its own message."""
        return self.catalog.live_before(dataset)


def _fault(f: Fault) -> dict[str, str]:
    return {"file": f.file, "problem": f.problem}


def _version_info(r: VersionRecord, *, current: bool) -> VersionInfo:
    return VersionInfo(
        version=r.version,
        status=str(r.status),
        created=r.created,
        n_cells=r.n_cells,
        n_genes=r.n_genes,
        reason=r.reason,
        current=current,
    )
