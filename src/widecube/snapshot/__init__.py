"""Snapshots: immutable version folders, their manifest, writer, reader and verifier."""

from ._manifest import MANIFEST, checksum_files, read_manifest, sha256_file
from ._reader import Snapshot
from ._writer import SnapshotWriter

__all__ = [
    "MANIFEST",
    "Snapshot",
    "SnapshotWriter",
    "checksum_files",
    "read_manifest",
    "sha256_file",
]
