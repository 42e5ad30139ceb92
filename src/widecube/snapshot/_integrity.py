"""Integrity of a written snapshot: its files against the manifest's sha256, at any time.

The writer records a sha256 per file in the manifest; these checks read the files back and
compare, so that corruption after publish (a flipped bit on disk, a truncated copy) is found
by ``widecube verify``, refused by publish and rollback, and named when a read fails. Faults
name files relative to the snapshot folder, never server paths, because they reach clients.

    >>> [str(f) for f in check_files(root, read_manifest(root)["files"])]   # doctest: +SKIP
    ['views/summary/cell_type.zarr/layers/mean/c/0/0: does not match its checksum']
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SnapshotCorrupt
from ._manifest import MANIFEST, as_storage
from ._store import Storage

__all__ = ["Fault", "check_files", "corrupt", "is_checksum_error"]

MISSING = "is missing"
MISMATCH = "does not match its checksum"
UNLISTED = "is not in the manifest"


@dataclass(frozen=True, slots=True)
class Fault:
    """One file at fault: ``file`` relative to the snapshot (or cache) folder, and why."""

    file: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}"


def check_files(
    root: Path | Storage,
    listed: dict[str, dict[str, Any]],
    *,
    under: str | None = None,
    copy_to: Path | None = None,
    uncopied: Collection[str] = (),
) -> list[Fault]:
    """The faults of the files of ``root`` that the manifest lists (``listed``), sorted; the
    bytes are read from ``root`` itself (for an object store: the objects, over the network).

    ``under`` narrows the check to one file or folder (relative), e.g. one Zarr array when
    only that array failed to read; the whole snapshot also reports files the manifest does
    not list. Sizes are compared before hashing, so a truncated file costs no read; files are
    read :attr:`~Storage.readers` at a time.
    ``copy_to``: every file hashed is also written there, at its relative path, from the same
    read (a file that matches its checksum is then, there, byte for byte what ``root`` holds),
    but for those under a folder of ``uncopied``, which are only hashed.
    """
    files = as_storage(root)
    prefix = None if under is None else under.rstrip("/")
    wanted = {
        rel: entry
        for rel, entry in listed.items()
        if prefix is None or rel == prefix or rel.startswith(prefix + "/")
    }
    faults: list[Fault] = []
    to_hash: list[str] = []
    present = files.list() if prefix is None else None  # one listing, not a request per file
    for rel, entry in wanted.items():
        try:
            size = present[rel] if present is not None else files.size(rel)
        except (OSError, KeyError):
            faults.append(Fault(rel, MISSING))
            continue
        if "size" in entry and size != int(entry["size"]):
            faults.append(Fault(rel, MISMATCH))
        else:
            to_hash.append(rel)

    skipped = tuple(folder.rstrip("/") + "/" for folder in uncopied)

    def matches(rel: str) -> bool:
        target = None if copy_to is None or rel.startswith(skipped) else copy_to
        try:
            return bool(_sha256(files, rel, target) == wanted[rel]["sha256"])
        except OSError:  # unreadable (I/O error on a bad sector) is as bad as wrong
            return False

    with ThreadPoolExecutor(files.readers) as pool:
        for rel, ok in zip(to_hash, pool.map(matches, to_hash), strict=True):
            if not ok:
                faults.append(Fault(rel, MISMATCH))
    if present is not None:
        faults.extend(Fault(rel, UNLISTED) for rel in set(present) - set(listed) - {MANIFEST})
    return sorted(faults, key=lambda f: f.file)


def _sha256(files: Storage, rel: str, copy_to: Path | None) -> str:
    """The file's sha256, read from ``files``; written to ``copy_to / rel`` on the way. Not
    :meth:`Storage.fetch`, made for inputs: a HEAD and a hashing thread per file, here 7,000
    small objects already listed and sized."""
    if copy_to is None:
        return files.sha256(rel)
    target = copy_to / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with open(target, "wb") as out:
        for chunk in files.stream(rel):
            h.update(chunk)
            out.write(chunk)
    return h.hexdigest()


def corrupt(dataset: str, version: str, faults: list[Fault]) -> SnapshotCorrupt:
    """The error that takes ``dataset@version`` out of service, naming the first file at fault."""
    first = faults[0]
    more = f" (and {len(faults) - 1} more files)" if len(faults) > 1 else ""
    return SnapshotCorrupt(
        f"version {version} of dataset {dataset!r} is out of service: file {first.file} "
        f"{first.problem}{more}",
        dataset=dataset,
        version=version,
        files=[f.file for f in faults],
    )


def is_checksum_error(exc: BaseException) -> bool:
    """Whether ``exc`` is Zarr's crc32c codec refusing a chunk (it raises a plain ValueError)."""
    return isinstance(exc, ValueError) and "checksum do not match" in str(exc)
