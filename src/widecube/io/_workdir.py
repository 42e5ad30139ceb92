"""Private scratch folders for opened sources: inside the job's work folder when given.

The pipeline gives every ingest a work folder (``<storage>/work/<version>``) and removes it
when the job ends, whatever happens; readers that spill (text formats) and the archive
unpacker put their files in a fresh folder inside it. Without one (library use), a
temporary folder is used; either way :meth:`Scratch.cleanup` removes it on ``close()``.

    >>> scratch = scratch_folder(Path("work"), "csv")        # doctest: +SKIP
    >>> scratch / "csr"
    PosixPath('work/csv-3k2j1x/csr')
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

__all__ = ["Scratch", "scratch_folder"]


class Scratch:
    """A folder owned by one opened source."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def cleanup(self) -> None:
        """Remove the folder and everything in it (idempotent)."""
        shutil.rmtree(self.path, ignore_errors=True)


def scratch_folder(workdir: Path | None, prefix: str) -> Scratch:
    """A new, empty folder inside ``workdir`` (created if needed), or a temporary one."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return Scratch(Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=workdir)))
    return Scratch(Path(tempfile.mkdtemp(prefix=f"widecube-{prefix}-")))
