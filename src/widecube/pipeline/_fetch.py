"""Inputs on an object store: staged into the job's work folder, their checksums verified.

``widecube ingest s3://bucket/path/x.h5ad`` (and a watched ``s3://`` inbox) names an object,
or a prefix holding a folder's objects (an MTX folder). The job's *unpack* step copies it into
``<work>/work/<job>/input/`` with :func:`stage_input` before anything opens it, so every
reader, the archive unpacker and the pass-1 tasks of a cluster see a local file, as for any
other input. Staged rather than streamed, because:

* HDF5 inputs (h5ad, 10x h5, Loom) are read by random access: a B-tree and chunk index
  first, then chunks in the order rows need them. Over an object store each of those small
  reads is one ranged GET (tens of ms each), so a streamed HDF5 read is latency-bound, and a
  pass 1 split in row ranges would make every task repeat the index reads. One sequential
  GET runs at the link's bandwidth instead.
* Archives are unpacked into the work folder anyway, and the text formats are copied into a
  binary CSR there at open: a local copy is needed whatever happens.
* A job killed mid-way resumes from its checkpoints; with a local copy it never reads the
  object again, and it reads the bytes it verified, even if the object is replaced later.

What is verified: the copy is hashed (sha256) as it arrives and becomes the input's sha256 in
the manifest, as for a local file. It must have the size the store reports, its MD5 must
equal the ETag of a single-part upload (S3's own checksum of the bytes it holds; not for an
object encrypted with a KMS or a customer's key, whose ETag S3 makes otherwise), and the GET
carries ``If-Match`` with the ETag read first, so an object replaced while it is read is
refused (a transient error: the step is tried again). When a companion object
``<name>.sha256`` exists (``sha256sum`` output), the copy's sha256 must equal it, or the job
fails naming both. The cost is local disk for one input at a time (see ``docs/capacity.md``).

    >>> stage_input("s3://lab/inbox/pbmc.h5ad", Path("/srv/work/job/input"))   # doctest: +SKIP
    Staged(path=PosixPath('/srv/work/job/input/pbmc.h5ad'), sha256='9f2c…', size=…, source='s3://…')
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import InputError, InputNotFound
from ..snapshot import Storage, open_storage

__all__ = ["COMPANION", "Staged", "split_url", "stage_input"]

COMPANION = ".sha256"
"""Suffix of the optional object holding an input's expected sha256 (``x.h5ad.sha256``)."""

_HEX64 = re.compile(r"^([0-9a-fA-F]{64})\b")


@dataclass(frozen=True, slots=True)
class Staged:
    """An input copied from the store: the local file (or folder), the file's sha256 (None for
    a folder of objects), bytes copied, and the URL it came from."""

    path: Path
    sha256: str | None
    size: int
    source: str


def split_url(url: str) -> tuple[Storage, str]:
    """The storage of an object URL's parent prefix, and the object's name in it.

    >>> split_url("s3://lab/inbox/pbmc.h5ad")[1]
    'pbmc.h5ad'
    """
    scheme, _, rest = url.partition("://")
    parent, _, name = rest.rstrip("/").rpartition("/")
    if not parent or not name:
        raise InputError(f"{url}: an input on an object store is {scheme}://bucket/path/name")
    return open_storage(f"{scheme}://{parent}"), name


def stage_input(url: str, dest: Path) -> Staged:
    """Copy the object (or every object under the prefix) at ``url`` into ``dest``, which is
    emptied first (a killed try leaves a part behind); see the module docstring."""
    storage, name = split_url(url)
    shutil.rmtree(dest, ignore_errors=True)
    target = dest / name
    if storage.exists(name):
        try:
            fetched = storage.fetch(name, target)
        except FileNotFoundError:
            raise InputNotFound(f"{url}: no such object (removed while it was read)") from None
        _check_companion(storage, name, fetched.sha256, url)
        return Staged(target, fetched.sha256, fetched.size, url)
    files = storage.scan(name)
    if not files:
        raise InputNotFound(f"{url}: no such object or prefix")
    size = 0
    for f in files:
        rel = PurePosixPath(f.path)
        if rel.is_absolute() or ".." in rel.parts:
            raise InputError(f"{url}: object {f.path!r} would land outside the work folder")
        size += storage.fetch(f.path, dest.joinpath(*rel.parts)).size
    return Staged(target, None, size, url)


def _check_companion(storage: Storage, name: str, sha256: str, url: str) -> None:
    """A ``<name>.sha256`` object beside the input, if any, must name the copy's sha256."""
    try:
        text = storage.get(name + COMPANION).decode("ascii", "replace").strip()
    except FileNotFoundError:
        return
    m = _HEX64.match(text)
    if m is None:
        raise InputError(f"{url}{COMPANION}: does not start with a sha256 (64 hex digits)")
    if m.group(1).lower() != sha256:
        raise InputError(
            f"{url}: sha256 of the copy is {sha256}, but {name}{COMPANION} says {m.group(1).lower()}"
        )
