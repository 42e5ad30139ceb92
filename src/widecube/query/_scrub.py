"""Scrubbing: re-read every stored snapshot and check each file against its manifest's sha256.

A version with a file at fault (changed, missing, unlisted, or a manifest that is not the one
the catalog recorded) is reported with the file's name and marked ``corrupt`` in the catalog
(it answers 503 from then on, in every process). A corrupt *live* version stays live unless
``repair`` is asked: then the dataset rolls back to its newest version that was live before
and whose files pass the same check, in one catalog transaction.

    >>> wc.scrub("pbmc", repair=True)["versions"][0]["files"]  # doctest: +SKIP
    [{'file': 'views/summary/cell_type.zarr/layers/mean/c/0/0', 'problem': 'does not match its checksum'}]
"""

from __future__ import annotations

from ..access import ANONYMOUS, SERVER, Actor
from ..catalog import VersionFacts, VersionStatus
from ..errors import CatalogError, SnapshotCorrupt
from ..snapshot import MANIFEST, Fault, Snapshot, corrupt
from ._resolve import manifest_mismatch
from ._versions import Admin
from .results_lake import ScrubFinding, ScrubReport

__all__ = ["Scrub"]

_STORED = (VersionStatus.VERIFIED, VersionStatus.PUBLISHED, VersionStatus.RETIRED, VersionStatus.CORRUPT)


class Scrub(Admin):
    """Re-check stored snapshots against their manifests (and the manifests against the catalog)."""

    def scrub(
        self, dataset: str | None = None, *, repair: bool = False, actor: Actor = ANONYMOUS
    ) -> ScrubReport:
        """Check every stored version (of one dataset: its owners; of all: admins); mark the
        corrupt ones; with ``repair``, roll a dataset whose live version is corrupt back to its
        newest good one."""
        self.door.authorize(actor, "scrub", dataset or SERVER)
        facts = [f for f in self.catalog.lifecycle.facts(dataset) if f.status in _STORED and f.path]
        findings: list[ScrubFinding] = []
        total = 0
        for f in facts:
            faults, size = self._faults(f)
            total += size
            marked = False
            if faults and f.status != VersionStatus.CORRUPT:
                reason = f"scrub: file {faults[0].file} {faults[0].problem}"
                self.catalog.lifecycle.mark_corrupt(f.dataset, f.version, by="scrub", reason=reason)
                self._mark_corrupt(corrupt(f.dataset, f.version, faults))
                self.door.record(
                    actor,
                    "scrub",
                    f.dataset,
                    version=f.version,
                    outcome="corrupt",
                    files=[x.file for x in faults],
                )
                marked = True
            repaired = None
            if faults and repair and f.live:
                repaired = self._repair(f, actor)
            status = VersionStatus.CORRUPT if faults else f.status
            findings.append(
                ScrubFinding(
                    dataset=f.dataset,
                    version=f.version,
                    status=str(status),
                    ok=not faults,
                    files=[{"file": x.file, "problem": x.problem} for x in faults],
                    marked_corrupt=marked,
                    repaired_to=repaired,
                )
            )
        return ScrubReport(all(x.ok for x in findings), findings, total)

    def _faults(self, f: VersionFacts) -> tuple[list[Fault], int]:
        """The version's files at fault (read from the store) and the bytes read."""
        assert f.path is not None
        files = self.storage.sub(f.path)
        try:
            snap = Snapshot(files)
            manifest = files.get(MANIFEST)
        except (OSError, ValueError):
            return [Fault(MANIFEST, "cannot be read")], 0
        record = self.catalog.get_version(f.dataset, f.version)
        faults = snap.check()
        mismatch = manifest_mismatch(record, snap, manifest)
        if mismatch:
            faults.insert(0, Fault(MANIFEST, mismatch))
        return faults, sum(int(e.get("size", 0)) for e in snap.manifest["files"].values())

    def _repair(self, f: VersionFacts, actor: Actor) -> str | None:
        """Roll ``f``'s dataset back to its newest retired version whose files pass; None if
        there is none (the corrupt version stays live, answering 503)."""
        for candidate in self.catalog.versions(f.dataset):  # newest first
            if candidate.status != VersionStatus.RETIRED:
                continue
            try:
                self._require_intact(f.dataset, candidate.version, "roll back to")
            except (CatalogError, SnapshotCorrupt):
                continue
            with self.door.act(actor, "rollback", f.dataset, repair_of=f.version) as act:
                act.version = candidate.version
                self.catalog.rollback(f.dataset, candidate.version)
            return candidate.version
        return None
