"""The snapshot manifest: what a version holds, how each view is encoded, and checksums.

The manifest is ``manifest.json`` at the snapshot root. It is written last, so a folder
without one is never a finished snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ._store import LocalStorage, Storage, sha256_file

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
FORMAT_VERSION = "0.3.0"
"""0.3.0: the layer of the values as given is named ``input`` (it was ``raw``, which collides
with AnnData's ``raw``) and ``input.kind`` records the kind of input (counts, log1p, scaled);
older manifests are read with the layer renamed (:func:`read_manifest`). 0.2.0: every Zarr
array's chunks end with a CRC-32C (the ``crc32c`` codec); 0.1.0 snapshots, without it, read the
same (Zarr reads the codecs from each array's metadata)."""
_LEGACY_LAYER, _LAYER = "raw", "input"


def checksum_files(
    root: Path | Storage, *, sent: Mapping[str, tuple[str, int]] | None = None
) -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256", "size"}}`` for every file under ``root`` but the manifest.

    ``sent``: ``{path: (sha256, size)}`` of the files as a writer sent them (its ``Ledger``);
    a listed file found there with the size the storage reports takes that checksum, every
    other file is read back from the storage (an object store's objects, not a local copy)
    and hashed, :attr:`~Storage.readers` at a time.
    """
    files = as_storage(root)
    sizes = {rel: size for rel, size in sorted(files.list().items()) if rel != MANIFEST}
    known = {
        rel: digest for rel, (digest, size) in (sent or {}).items() if rel in sizes and sizes[rel] == size
    }
    unknown = [rel for rel in sizes if rel not in known]
    with ThreadPoolExecutor(files.readers) as pool:
        known.update(zip(unknown, pool.map(files.sha256, unknown), strict=True))
    return {rel: {"sha256": known[rel], "size": size} for rel, size in sizes.items()}


def read_manifest(root: Path | Storage) -> dict[str, Any]:
    """Load ``root/manifest.json``."""
    files = as_storage(root)
    manifest: dict[str, Any] = json.loads(files.get(MANIFEST).decode("utf-8"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{files.url}: not a widecube snapshot manifest")
    return _renamed_layer(manifest)


def _renamed_layer(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest of format < 0.3.0 as 0.3.0 names things: its layer ``raw`` (the values as
    given) is ``input`` in ``layers``, ``default_layer`` and every view's ``layers``; the files
    keep their stored paths (the paths are read from the manifest, never rebuilt)."""
    if _LEGACY_LAYER not in manifest.get("layers", []):
        return manifest

    def rename(layers: Any) -> Any:
        if isinstance(layers, dict):
            return {(_LAYER if k == _LEGACY_LAYER else k): v for k, v in layers.items()}
        if isinstance(layers, list):
            return [_LAYER if k == _LEGACY_LAYER else k for k in layers]
        return layers

    manifest["layers"] = rename(manifest["layers"])
    if manifest.get("default_layer") == _LEGACY_LAYER:
        manifest["default_layer"] = _LAYER
    for entry in manifest.get("views", {}).values():
        if isinstance(entry, dict) and "layers" in entry:
            entry["layers"] = rename(entry["layers"])
    return manifest


def as_storage(root: Path | Storage) -> Storage:
    """``root`` as a :class:`Storage` (a path is a local folder)."""
    return root if isinstance(root, Storage) else LocalStorage(root)
