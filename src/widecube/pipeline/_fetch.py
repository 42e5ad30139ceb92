"""Inputs on an object store: staged into the job's work folder, their checksums verified.

``widecube ingest s3://bucket/path/x.h5ad`` (and a watched ``s3://`` inbox) names an object,
or a prefix holding a folder's objects (an MTX folder). The job's *unpack* step copies it into
``<work>/work/<job>/input/`` with :func:`stage_input` before anything opens it, so every
reader, the archive unpacker and the pass-1 tasks of a cluster see a local file, as for any
other input. Staged rather than streamed, because:

* HDF5 inputs (h5ad, 10x h5, Loom) are read by random access: a B-tree and chunk index
  first, then chunks in the order rows need them. Over an object store each of those small
  reads is one ranged GET (tens of ms each), so a streamed HDF5 read is latency-bound, and a
  pass 1 split in row ranges would make every task repeat the index reads. A copy runs at
  the link's bandwidth instead: a large object in ranges of 16 MiB, 8 GETs at a time (one
  S3 connection carries about 100 MB/s), each written at its own offset, around the page
  cache where the file system allows it (``ObjectStorage._fetch_ranges``).
* Archives are unpacked into the work folder anyway, and the text formats are copied into a
  binary CSR there at open: a local copy is needed whatever happens.
* A job killed mid-way resumes from its checkpoints; with a local copy it never reads the
  object again, and it reads the bytes it verified, even if the object is replaced later.

What is verified: the copy's sha256 becomes the input's sha256 in the manifest, as for a local
file. It must have the size the store reports, its MD5 must equal the ETag of a single-part
upload (S3's own checksum of the bytes it holds; not for an object encrypted with a KMS or a
customer's key, whose ETag S3 makes otherwise), and the GET carries ``If-Match`` with the
ETag read first, so an object replaced while it is read is refused (a transient error: the
step is tried again). When a companion object ``<name>.sha256`` exists (``sha256sum``
output), the copy's sha256 must equal it, or the job fails naming both. The cost is local
disk for one input at a time (see ``docs/capacity.md``).

When: an ingest's input is copied unhashed (``stage_input(..., hashed=False)``: the GET and
the write alone) and hashed while the job reads it, by the idle-priority child that hashes a
local input (:class:`StagedDigest`, ``_digest``), on the CPU time the ingest leaves idle; its
sha256 and MD5 are checked when the manifest asks for the sha256, before anything is
published, and a copy that differs from the object is fetched again (hashed then) and the
step tried again (:class:`StagedCopyDiffers`, a transient error). Hashing on arrival cost
more than the copy: a 4 GB h5ad from a local S3 server took 10.1-10.3 s copied with sha256
and MD5, 5.7-6.6 s copied alone (sha256 0.54 s and MD5 1.29 s a GiB of one core here).

    >>> stage_input("s3://lab/inbox/pbmc.h5ad", Path("/srv/work/job/input"))   # doctest: +SKIP
    Staged(path=PosixPath('/srv/work/job/input/pbmc.h5ad'), sha256='9f2c…', size=…, source='s3://…')
"""

from __future__ import annotations

import contextlib
import errno
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import InputError, InputNotFound
from ..snapshot import Storage, open_storage
from ._digest import IdleDigest

__all__ = ["COMPANION", "Staged", "StagedCopyDiffers", "StagedDigest", "split_url", "stage_input"]

COMPANION = ".sha256"
"""Suffix of the optional object holding an input's expected sha256 (``x.h5ad.sha256``)."""

_HEX64 = re.compile(r"^([0-9a-fA-F]{64})\b")


@dataclass(frozen=True, slots=True)
class Staged:
    """An input copied from the store: the local file (or folder), the file's sha256 (None for
    a folder of objects, or a file copied unhashed), bytes copied, and the URL it came from;
    for a file copied unhashed, what its hashes must be: ``md5`` (the ETag's) and
    ``companion`` (the companion object's sha256), each None where there is none."""

    path: Path
    sha256: str | None
    size: int
    source: str
    md5: str | None = None
    companion: str | None = None


class StagedCopyDiffers(OSError):
    """A staged copy's MD5 is not the ETag the store gave its object: the bytes were damaged on
    the way (``EIO``: transient, the copy is fetched again)."""

    def __init__(self, source: str, md5: str, etag: str) -> None:
        msg = f"{source}: the copy does not match the store's checksum (MD5 {md5}, ETag {etag})"
        super().__init__(errno.EIO, msg)


class StagedDigest:
    """The sha256 of a copy staged unhashed (``path``, copied from ``source``), hashed by an
    :class:`~._digest.IdleDigest` (with its MD5 when ``md5`` says what it must be); when
    :meth:`result` gives the sha256, the copy has been checked against ``md5``
    (:class:`StagedCopyDiffers`) and ``companion`` (:class:`~widecube.errors.InputError`)."""

    def __init__(self, path: Path, *, source: str, md5: str | None, companion: str | None) -> None:
        self.path, self.source, self._md5, self._companion = path, source, md5, companion
        self._digest = IdleDigest(path, md5=md5 is not None)

    def result(self) -> str:
        sha256 = self._digest.result()
        if self._md5 is not None and self._digest.md5 != self._md5:
            raise StagedCopyDiffers(self.source, str(self._digest.md5), self._md5)
        if self._companion is not None:
            _agree(sha256, self._companion, self.source)
        return sha256

    def paused(self) -> contextlib.AbstractContextManager[None]:
        """The hashing child paused inside (:meth:`~._digest.IdleDigest.paused`)."""
        return self._digest.paused()

    def hasten(self) -> None:
        """The hashing child at the normal policy from now on (:meth:`~._digest.IdleDigest.hasten`)."""
        self._digest.hasten()

    def close(self) -> None:
        self._digest.close()

    def __enter__(self) -> StagedDigest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


def stage_input(url: str, dest: Path, *, hashed: bool = True) -> Staged:
    """Copy the object (or every object under the prefix) at ``url`` into ``dest``, which is
    emptied first (a killed try leaves a part behind); see the module docstring.
    ``hashed=False``: an object is copied unhashed, what its hashes must be comes back in the
    :class:`Staged` (for a :class:`StagedDigest`); a prefix's objects are hashed anyway."""
    storage, name = split_url(url)
    shutil.rmtree(dest, ignore_errors=True)
    target = dest / name
    if storage.exists(name):
        try:
            fetched = storage.fetch(name, target, hashed=hashed)
        except FileNotFoundError:
            raise InputNotFound(f"{url}: no such object (removed while it was read)") from None
        companion = _companion(storage, name, url)
        if fetched.sha256 is None:
            return Staged(target, None, fetched.size, url, fetched.md5, companion)
        if companion is not None:
            _agree(fetched.sha256, companion, url)
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


def _companion(storage: Storage, name: str, url: str) -> str | None:
    """The sha256 a ``<name>.sha256`` object beside the input names, if there is one."""
    try:
        text = storage.get(name + COMPANION).decode("ascii", "replace").strip()
    except FileNotFoundError:
        return None
    m = _HEX64.match(text)
    if m is None:
        raise InputError(f"{url}{COMPANION}: does not start with a sha256 (64 hex digits)")
    return m.group(1).lower()


def _agree(sha256: str, companion: str, url: str) -> None:
    """The copy's sha256 must be the one its companion object names."""
    if sha256 != companion:
        name = url.rpartition("/")[2]
        raise InputError(f"{url}: sha256 of the copy is {sha256}, but {name}{COMPANION} says {companion}")
