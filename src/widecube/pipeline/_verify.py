"""Verify a written snapshot before anyone may publish it.

Checks that every file the manifest lists is there with its checksum and that no other file
is; that every registered view is present with the encoding this widecube writes; then runs
each view's own invariants (e.g. group sizes add up to the number of cells).
"""

from __future__ import annotations

from ..errors import VerificationError
from ..snapshot import Snapshot
from ..views import views

__all__ = ["verify_snapshot"]


def verify_snapshot(snap: Snapshot) -> None:
    """Raise :class:`VerificationError` naming the first problem found in ``snap``."""
    where = f"{snap.dataset}@{snap.version}"
    faults = snap.check()
    if faults:
        raise VerificationError(f"{where}: file {faults[0].file} {faults[0].problem}")
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
