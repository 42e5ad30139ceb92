"""Verify a written snapshot before anyone may publish it.

Checks that every file the manifest lists is there with its checksum and that no other file
is; that every view the snapshot was built with is present (those its manifest's
``parameters.views`` names; every registered view for a snapshot from before ``--views``),
stored in an encoding this widecube reads (the reader is chosen by the stored
``(encoding, encoding_version)``, as for every read); then runs the invariants of each view
the manifest lists through that reader (e.g. group sizes add up to the number of cells).
A view left out on purpose is not checked, and not missed.
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
    built = snap.manifest.get("parameters", {}).get("views")
    expected = [spec.name for spec in views()] if built is None else list(built)
    for name in expected:
        if name not in stored:
            raise VerificationError(f"{where}: view {name!r} is missing")
    extra = sorted(set(stored) - set(expected)) if built is not None else []
    if extra:
        raise VerificationError(f"{where}: view {extra[0]!r} is stored but not among the views built")
    for name in expected:  # registration order: a view is checked after those it requires
        try:
            view = reader(snap, name)
        except UnsupportedEncoding as exc:
            raise VerificationError(str(exc)) from exc
        view.verify()
