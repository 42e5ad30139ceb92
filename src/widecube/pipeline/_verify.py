"""Verify a written snapshot before anyone may publish it.

Checks that every file the manifest lists is there with its checksum and that no other file
is; that every registered view is present, stored in an encoding this widecube reads (the
reader is chosen by the stored ``(encoding, encoding_version)``, as for every read); then
runs each view's own invariants through that reader (e.g. group sizes add up to the number
of cells).
"""

from __future__ import annotations

from ..errors import UnsupportedEncoding, VerificationError
from ..snapshot import Snapshot
from ..views import reader, views

__all__ = ["verify_snapshot"]


def verify_snapshot(snap: Snapshot) -> None:
    """Raise :class:`VerificationError` naming the first problem found in ``snap``."""
    where = f"{snap.dataset}@{snap.version}"
    faults = snap.check()
    if faults:
        raise VerificationError(f"{where}: file {faults[0].file} {faults[0].problem}")
    stored = snap.manifest["views"]
    for spec in views():
        if spec.name not in stored:
            raise VerificationError(f"{where}: view {spec.name!r} is missing")
        try:
            view = reader(snap, spec.name)
        except UnsupportedEncoding as exc:
            raise VerificationError(str(exc)) from exc
        view.verify()
