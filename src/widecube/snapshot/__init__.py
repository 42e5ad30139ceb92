"""Snapshots: immutable version folders (local or on an object store), their manifest, writer,
reader and verifier."""

from ._integrity import Fault, check_files, corrupt, is_checksum_error
from ._manifest import MANIFEST, checksum_files, read_manifest, sha256_file
from ._reader import Snapshot
from ._store import (
    Fetched,
    FileInfo,
    LocalStorage,
    NotThawed,
    ObjectStorage,
    Storage,
    is_object_url,
    open_storage,
)
from ._writer import CHECKSUM, SnapshotWriter, checked
from ._zarr import zarr_array, zarr_group

__all__ = [
    "CHECKSUM",
    "Fault",
    "Fetched",
    "FileInfo",
    "LocalStorage",
    "MANIFEST",
    "NotThawed",
    "ObjectStorage",
    "Snapshot",
    "SnapshotWriter",
    "Storage",
    "check_files",
    "checked",
    "checksum_files",
    "corrupt",
    "is_object_url",
    "open_storage",
    "is_checksum_error",
    "read_manifest",
    "sha256_file",
    "zarr_array",
    "zarr_group",
]
