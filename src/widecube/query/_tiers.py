"""Storage tiers: archive a version's snapshot to cold storage, restore it, and the one
streamed, checked copy both use.

Archiving (:meth:`Tiers.archive`) copies a verified or retired version's snapshot to the cold
storage, checks the copy against the manifest, marks the version ``archived`` (reads answer
409 saying how to restore it) and leaves the hot copy to be purged after ``gc_grace``.
Restoring copies it back (checked), makes it readable again and deletes the cold copy.

The cold storage is ``WIDECUBE_ARCHIVE_STORAGE`` (a folder or ``s3://`` URL), or, when only a
storage class is set on an ``s3://`` ``WIDECUBE_STORAGE``, that store's prefix ``cold/``. On
an object store the objects are written in a storage class (``WIDECUBE_ARCHIVE_STORAGE_CLASS``
or ``archive(storage_class=…)``); a restore writes them back in the store's default class
(S3 ``STANDARD``). Classes the store must thaw before a read (:data:`THAWED_FIRST`) answer
:class:`~widecube.errors.ArchiveNotThawed` (409) on restore until they are thawed.

Every file goes through :func:`copy_snapshot`: read in chunks of :data:`COPY_CHUNK`, hashed
on the way and written with :meth:`~widecube.snapshot.Storage.put_stream` (multipart on an
object store), so memory does not grow with a file's size, and no single request limit (S3's
5 GB ``CopyObject``) applies. obstore's server-side copy cannot set a storage class, so the
bytes pass through this process.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from ..access import ANONYMOUS, Actor
from ..catalog import VersionRecord, VersionStatus
from ..config import ARCHIVE_STORAGE_CLASSES
from ..errors import ArchiveNotThawed, CatalogError, InvalidQuery
from ..snapshot import MANIFEST, NotThawed, Storage, check_files, open_storage, read_manifest
from ._versions import Admin
from .results_lake import TierMove

__all__ = ["COLD_PREFIX", "COPY_CHUNK", "THAWED_FIRST", "Tiers", "copy_snapshot"]

COPY_CHUNK = 8 << 20
"""Bytes read (and handed to the writer) at a time while a snapshot is copied."""
COLD_PREFIX = "cold"
"""The cold storage inside an object-store ``WIDECUBE_STORAGE`` when only a class is set."""
THAWED_FIRST = frozenset({"GLACIER", "DEEP_ARCHIVE"})
"""S3 storage classes whose objects cannot be read until S3 thaws them (``RestoreObject``)."""
_THREADS = 4


class Tiers(Admin):
    """Archive a version to cold storage and restore it."""

    def archive(
        self, dataset: str, version: str, *, storage_class: str | None = None, actor: Actor = ANONYMOUS
    ) -> TierMove:
        """Move a verified or retired version's snapshot to the cold storage, in
        ``storage_class`` on an object store (default ``WIDECUBE_ARCHIVE_STORAGE_CLASS``);
        reads of it then answer 409 until it is restored. The copy is checked against the
        manifest first.

            >>> wc.archive("pbmc", "3f2a...", storage_class="GLACIER_IR")  # doctest: +SKIP
        """
        with self.door.act(actor, "archive", dataset) as act:
            act.version = version
            cold, cls = self._cold(storage_class)
            record = self.catalog.get_version(dataset, version)
            if record.status not in (VersionStatus.VERIFIED, VersionStatus.RETIRED) or record.path is None:
                raise CatalogError(
                    f"cannot archive version {version} of dataset {dataset!r}: it is {record.status}; only a "
                    "verified or retired version can be (publish another one first if it is live)"
                )
            try:
                size = copy_snapshot(
                    self.storage.sub(record.path), cold.sub(record.path), record, storage_class=cls
                )
            except NotThawed as exc:  # a store's own lifecycle rule moved the hot objects
                raise ArchiveNotThawed(
                    f"cannot archive version {version} of dataset {dataset!r}: file {exc.path} of its "
                    f"hot copy is in {exc.storage_class}, which the store must thaw first; nothing was moved"
                ) from None
            due = datetime.now(UTC) + timedelta(seconds=self.settings.gc_grace)
            by = f"archive by {actor.user or actor.via}"
            self.catalog.lifecycle.archive(dataset, version, url=cold.url, by=by, bytes=size, purge_due=due)
            act.detail.update(bytes=size, storage_class=cls)
            return TierMove(dataset, version, "archived", f"{cold.url}/{record.path}", size, cls)

    def restore(self, dataset: str, version: str, *, actor: Actor = ANONYMOUS) -> TierMove:
        """Bring an archived version back from the cold storage (checked against its manifest,
        written in the store's default class); it is readable again, retired (or verified if
        it was never live). Objects the store has not thawed answer
        :class:`~widecube.errors.ArchiveNotThawed` (409), nothing changed."""
        with self.door.act(actor, "restore", dataset) as act:
            act.version = version
            record = self.catalog.get_version(dataset, version)
            facts = next((f for f in self.catalog.lifecycle.facts(dataset) if f.version == version), None)
            if record.status != VersionStatus.ARCHIVED or facts is None or facts.archive_url is None:
                raise CatalogError(
                    f"cannot restore version {version} of dataset {dataset!r}: "
                    f"it is {record.status}, not archived"
                )
            assert record.path is not None
            cold = open_storage(facts.archive_url)
            # the old hot folder may still wait for its purge: write beside it, never into it
            path = (
                record.path if facts.purge_path is None else f"datasets/{dataset}/{version}-r{time.time_ns()}"
            )
            try:
                size = copy_snapshot(
                    cold.sub(record.path), self.storage.sub(path), record, storage_class=None
                )
            except NotThawed as exc:
                raise ArchiveNotThawed(_thaw_first(dataset, version, cold.sub(record.path), exc)) from None
            status = self.catalog.lifecycle.restore(
                dataset, version, path=path, by=f"restore by {actor.user or actor.via}"
            )
            cold.remove(record.path)
            self._mark_intact(version)
            return TierMove(dataset, version, str(status), f"{self.storage.url}/{path}", size, None)

    def _cold(self, storage_class: str | None) -> tuple[Storage, str | None]:
        """The cold storage and the class to write in (None: the store's default)."""
        cls = storage_class or self.settings.archive_storage_class
        if cls is not None and cls not in ARCHIVE_STORAGE_CLASSES:
            raise InvalidQuery(f"storage class {cls!r}: one of {', '.join(ARCHIVE_STORAGE_CLASSES)}")
        if self.settings.archive_storage is not None:
            cold = open_storage(self.settings.archive_storage)
        elif cls is not None and self.storage.storage_classes:
            cold = self.storage.sub(COLD_PREFIX)
        else:
            raise CatalogError(
                "no cold storage: set WIDECUBE_ARCHIVE_STORAGE to a folder or s3:// URL to archive "
                "(or, with an s3:// WIDECUBE_STORAGE, WIDECUBE_ARCHIVE_STORAGE_CLASS)"
            )
        if cls is not None and not cold.storage_classes:
            raise CatalogError(
                f"storage class {cls}: storage classes are an object store's, and the cold storage "
                f"{cold.url} is a local folder (set WIDECUBE_ARCHIVE_STORAGE to an s3:// URL)"
            )
        return cold, cls


def copy_snapshot(src: Storage, dst: Storage, record: VersionRecord, *, storage_class: str | None) -> int:
    """Copy the snapshot at ``src`` to ``dst`` file by file in chunks of :data:`COPY_CHUNK`
    (never a whole file in memory), hashing each file on the way, then check it: every file's
    bytes as read against the manifest's sha256 and size (``manifest.json`` against the sha256
    the catalog recorded), and the copy read back from ``dst`` (in a class that cannot be read
    before a thaw: its objects' sizes). A copy at fault is removed and refused, naming the
    file. Returns its bytes; raises :class:`~widecube.snapshot.NotThawed` with nothing copied
    where ``src`` cannot be read yet."""
    dataset, version = record.dataset, record.version
    listed: dict[str, dict[str, Any]] = read_manifest(src)["files"]
    wanted = {MANIFEST: {"sha256": record.info.get("manifest_sha256")}, **listed}
    dst.remove()

    def one(rel: str) -> tuple[str, str, int]:
        h, n = hashlib.sha256(), 0

        def chunks() -> Iterator[bytes]:
            nonlocal n
            for chunk in src.stream(rel, COPY_CHUNK):
                h.update(chunk)
                n += len(chunk)
                yield chunk

        try:
            dst.put_stream(rel, chunks(), storage_class=storage_class)
        except FileNotFoundError:
            if n:  # vanished while read: not a missing file
                raise
            return rel, "", -1
        return rel, h.hexdigest(), n

    try:
        with ThreadPoolExecutor(_THREADS) as pool:
            sent = {rel: (digest, n) for rel, digest, n in pool.map(one, sorted(wanted))}
    except BaseException:
        dst.remove()
        raise
    bad = [
        f"{rel} {'is missing' if sent[rel][1] < 0 else 'does not match its checksum'}"
        for rel, entry in sorted(wanted.items())
        if not _matches(entry, *sent[rel])
    ]
    if bad:
        dst.remove()
        more = f" (and {len(bad) - 1} more files)" if len(bad) > 1 else ""
        raise CatalogError(
            f"cannot copy version {version} of dataset {dataset!r}: file {bad[0]} at {src.url}{more}; "
            "nothing was moved (`widecube scrub` checks the stored versions)"
        )
    if storage_class in THAWED_FIRST:  # unreadable until thawed: the store's sizes are what it holds
        held = dst.list()
        faults = [
            f"{rel} is missing" if rel not in held else f"{rel} holds {held[rel]} bytes of {n}"
            for rel, (_, n) in sorted(sent.items())
            if held.get(rel) != n
        ]
    else:
        faults = [str(f) for f in check_files(dst, listed)]
        if not faults and dst.sha256(MANIFEST) != sent[MANIFEST][0]:
            faults = [f"{MANIFEST}: does not match its checksum"]
    if faults:
        dst.remove()
        raise CatalogError(
            f"the copy of version {version} of dataset {dataset!r} to {dst.url} failed its check: "
            f"file {faults[0]}; nothing was moved"
        )
    return sum(n for _, n in sent.values())


def _matches(entry: dict[str, Any], digest: str, n: int) -> bool:
    """Whether bytes that hashed to ``digest`` (``n`` of them) are the file ``entry`` lists
    (no recorded sha256, e.g. the manifest of a version verified before it was recorded: yes)."""
    expected = entry.get("sha256")
    return (expected is None or expected == digest) and ("size" not in entry or int(entry["size"]) == n)


def _thaw_first(dataset: str, version: str, cold: Storage, exc: NotThawed) -> str:
    """What a restore of objects the store has not thawed answers: where, and what to do."""
    cls = exc.storage_class or "an archive storage class"
    bucket, _, key = cold.url.partition("://")[2].partition("/")
    return (
        f"version {version} of dataset {dataset!r} is archived in {cls} at {cold.url}: S3 must thaw "
        f"its objects before they can be read (file {exc.path}: no thaw was asked for, or it is "
        "still under way; GLACIER takes hours, DEEP_ARCHIVE up to 48 hours). Ask S3 to restore every "
        f"object under that prefix (for each KEY under {key}/: aws s3api restore-object --bucket "
        f"{bucket} --key KEY --restore-request Days=7; or one S3 Batch Operations job), then run "
        f"`widecube restore {dataset}@{version}` again"
    )
