"""Snapshots: immutable version folders (local or on an object store), their manifest, writer,
reader and verifier.

Its names load on first use (PEP 562), each from its own module: storage, manifests and
checksums need neither zarr nor pandas, which the reader and the writer bring (0.5 CPU-s),
so a job worker waiting for jobs, which only tidies storage, never imports them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._chunksink import ChunkSink, Piece
    from ._integrity import Fault, check_files, corrupt, is_checksum_error
    from ._manifest import MANIFEST, checksum_files, read_manifest, sha256_file
    from ._reader import Snapshot
    from ._store import (
        DIRECT_ALIGN,
        Fetched,
        FileInfo,
        LocalStorage,
        NotThawed,
        ObjectStorage,
        Storage,
        is_object_url,
        open_direct,
        open_storage,
        pwrite_all,
    )
    from ._writer import CHECKSUM, Ledger, SnapshotWriter, absorb_recorded, checked, take_recorded
    from ._zarr import zarr_array, zarr_group

_WHERE = {
    "ChunkSink": "_chunksink",
    "Piece": "_chunksink",
    "Fault": "_integrity",
    "check_files": "_integrity",
    "corrupt": "_integrity",
    "is_checksum_error": "_integrity",
    "MANIFEST": "_manifest",
    "checksum_files": "_manifest",
    "read_manifest": "_manifest",
    "sha256_file": "_manifest",
    "Snapshot": "_reader",
    "DIRECT_ALIGN": "_store",
    "Fetched": "_store",
    "FileInfo": "_store",
    "LocalStorage": "_store",
    "NotThawed": "_store",
    "ObjectStorage": "_store",
    "Storage": "_store",
    "is_object_url": "_store",
    "open_direct": "_store",
    "open_storage": "_store",
    "pwrite_all": "_store",
    "CHECKSUM": "_writer",
    "Ledger": "_writer",
    "SnapshotWriter": "_writer",
    "absorb_recorded": "_writer",
    "checked": "_writer",
    "take_recorded": "_writer",
    "zarr_array": "_zarr",
    "zarr_group": "_zarr",
}
"""Each public name and the module that defines it."""

__all__ = [
    "CHECKSUM",
    "ChunkSink",
    "DIRECT_ALIGN",
    "Fault",
    "Fetched",
    "FileInfo",
    "Ledger",
    "LocalStorage",
    "MANIFEST",
    "NotThawed",
    "ObjectStorage",
    "Piece",
    "Snapshot",
    "SnapshotWriter",
    "Storage",
    "absorb_recorded",
    "check_files",
    "checked",
    "checksum_files",
    "corrupt",
    "is_checksum_error",
    "is_object_url",
    "open_direct",
    "open_storage",
    "pwrite_all",
    "read_manifest",
    "sha256_file",
    "take_recorded",
    "zarr_array",
    "zarr_group",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value
