"""Verify a written snapshot before anyone may publish it.

Checks that every file the manifest lists is there with its checksum and that no other file
is; that every registered view is present with the encoding this widecube writes; then runs
each view's own invariants (e.g. group sizes add up to the number of cells).
"""

from __future__ import annotations

from ..errors import VerificationError
from ..snapshot import MANIFEST, Snapshot, checksum_files
from ..views import views

__all__ = ["verify_snapshot"]


def verify_snapshot(snap: Snapshot) -> None:
    """Raise :class:`VerificationError` naming the first problem found in ``snap``."""
    where = f"{snap.dataset}@{snap.version}"
    listed = snap.manifest["files"]
    actual = checksum_files(snap.root)
    for relpath, entry in listed.items():
        found = actual.get(relpath)
        if found is None:
            raise VerificationError(f"{where}: file {relpath} is missing")
        if found["sha256"] != entry["sha256"]:
            raise VerificationError(f"{where}: file {relpath} does not match its checksum")
    extra = sorted(set(actual) - set(listed) - {MANIFEST})
    if extra:
        raise VerificationError(f"{where}: unlisted file {extra[0]} in the snapshot")
    stored = snap.manifest["views"]
    for view in views():
        entry = stored.get(view.name)
        if entry is None:
            raise VerificationError(f"{where}: view {view.name!r} is missing")
        if (entry["encoding"], entry["encoding_version"]) != (view.encoding, view.encoding_version):
            raise VerificationError(
                f"{where}: view {view.name!r} is encoded as {entry['encoding']} "
                f"{entry['encoding_version']}, expected {view.encoding} {view.encoding_version}"
            )
        view.verify(snap)
