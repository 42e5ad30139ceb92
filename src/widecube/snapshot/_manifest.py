"""The snapshot manifest: what a version holds, how each view is encoded, and checksums.

The manifest is ``manifest.json`` at the snapshot root. It is written last, so a folder
without one is never a finished snapshot.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ._store import LocalStorage, Storage

__all__ = [
    "MANIFEST",
    "FORMAT",
    "FORMAT_VERSION",
    "as_storage",
    "checksum_files",
    "read_manifest",
    "sha256_file",
]

MANIFEST = "manifest.json"
FORMAT = "widecube-snapshot"
FORMAT_VERSION = "0.2.0"
"""0.2.0: every Zarr array's chunks end with a CRC-32C (the ``crc32c`` codec); 0.1.0 snapshots,
without it, read the same (Zarr reads the codecs from each array's metadata)."""
_CHUNK = 1 << 22


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def checksum_files(root: Path | Storage, *, threads: int = 4) -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256", "size"}}`` for every file under ``root`` but the manifest,
    each read back from the storage (an object store's objects, not a local copy)."""
    files = as_storage(root)
    sizes = {rel: size for rel, size in sorted(files.list().items()) if rel != MANIFEST}
    with ThreadPoolExecutor(threads) as pool:
        digests = list(pool.map(files.sha256, sizes))
    return {rel: {"sha256": d, "size": sizes[rel]} for rel, d in zip(sizes, digests, strict=True)}


def read_manifest(root: Path | Storage) -> dict[str, Any]:
    """Load ``root/manifest.json``."""
    files = as_storage(root)
    manifest: dict[str, Any] = json.loads(files.get(MANIFEST).decode("utf-8"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{files.url}: not a widecube snapshot manifest")
    return manifest


def as_storage(root: Path | Storage) -> Storage:
    """``root`` as a :class:`Storage` (a path is a local folder)."""
    return root if isinstance(root, Storage) else LocalStorage(root)
