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

__all__ = ["MANIFEST", "FORMAT", "FORMAT_VERSION", "checksum_files", "read_manifest", "sha256_file"]

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


def checksum_files(root: Path, *, threads: int = 4) -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256", "size"}}`` for every file under ``root`` but the manifest."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() != MANIFEST)
    with ThreadPoolExecutor(threads) as pool:
        digests = list(pool.map(sha256_file, files))
    return {
        p.relative_to(root).as_posix(): {"sha256": d, "size": p.stat().st_size}
        for p, d in zip(files, digests, strict=True)
    }


def read_manifest(root: Path) -> dict[str, Any]:
    """Load ``root/manifest.json``."""
    with open(root / MANIFEST, encoding="utf-8") as f:
        manifest: dict[str, Any] = json.load(f)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{root}: not a widecube snapshot manifest")
    return manifest
