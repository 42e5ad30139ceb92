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

import contextlib
import json
import shutil
from pathlib import Path

from ..errors import UnsupportedEncoding, VerificationError
from ..snapshot import MANIFEST, Snapshot
from ..views import reader, views

__all__ = ["verify_snapshot"]


def verify_snapshot(snap: Snapshot, *, scratch: Path | None = None) -> None:
    """Raise :class:`VerificationError` naming the first problem found in ``snap``.

    ``scratch``: a local folder for a snapshot on an object store. Each object is then read
    once: hashed and written there from the same read, and the views' invariants read those
    copies (which match the manifest's checksums, as the objects do), not the store a second
    time: on a local S3 server, B100k's verify read 1.9 GB and 7,000 objects twice. Files no
    invariant reads (:meth:`~widecube.views.ViewReader.unread_by_verify`: the matrix view's
    values) are hashed without a copy, so the scratch holds the views, not the whole snapshot.
    The copies are removed before this returns."""
    mirror = None if scratch is None or snap.files.local is not None else scratch / f"verify-{snap.version}"
    try:
        _check(snap, mirror)
    finally:
        if mirror is not None:
            shutil.rmtree(mirror, ignore_errors=True)


def _unread(snap: Snapshot) -> list[str]:
    """Folders no view's invariants read (copied for nothing: B1M's matrix values, 3 GB)."""
    folders: list[str] = []
    for name in snap.manifest["views"]:
        with contextlib.suppress(UnsupportedEncoding):  # named by the checks below
            folders.extend(reader(snap, name).unread_by_verify())
    return folders


def _check(snap: Snapshot, mirror: Path | None) -> None:
    """The files of ``snap`` (copied into ``mirror`` on the way, if given), then its views'
    presence and invariants, read from the copies where there are some."""
    where = f"{snap.dataset}@{snap.version}"
    if mirror is not None:
        shutil.rmtree(mirror, ignore_errors=True)  # a killed run's copies
    faults = snap.check(copy_to=mirror, uncopied=_unread(snap) if mirror is not None else ())
    if faults:
        raise VerificationError(f"{where}: file {faults[0].file} {faults[0].problem}")
    local = snap
    if mirror is not None:  # the manifest the copies were checked against
        (mirror / MANIFEST).write_text(json.dumps(snap.manifest))
        local = Snapshot(mirror)
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
            view = reader(local, name)
        except UnsupportedEncoding as exc:
            raise VerificationError(str(exc)) from exc
        view.verify()
