"""Where snapshots live: a local folder or an object-store prefix, behind one small interface.

Everything that writes, checks or reads a snapshot goes through a :class:`Storage`: a files
API (put, get, sha256, size, list, remove) and the Zarr store of a sub-path. Two
implementations, chosen by :func:`open_storage` from ``WIDECUBE_STORAGE``:

* :class:`LocalStorage` — a folder (the default); Zarr gets a plain path, so the files on disk
  are exactly those of earlier releases; a staging folder is moved into place by a rename.
* :class:`ObjectStorage` — ``s3://bucket/prefix`` through obstore (and zarr's
  ``zarr.storage.ObjectStore`` over it). Endpoint, region, credentials and server-side
  encryption come from the standard ``AWS_*`` environment variables (``AWS_ENDPOINT_URL``,
  ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
  ``AWS_SERVER_SIDE_ENCRYPTION``, ``AWS_SSE_KMS_KEY_ID``, ``AWS_ALLOW_HTTP``), read by obstore
  itself: no secret passes through widecube, and :attr:`Storage.url` names only the bucket
  and prefix. An object store cannot rename, so :attr:`Storage.renames` is False and a
  snapshot is written straight under its final prefix (unreachable until the catalog
  pointer names it, as before).

Paths are relative, ``/``-separated; a missing file raises :class:`FileNotFoundError`.
Besides snapshots, the same interface reads inputs from a store and watches an inbox prefix:
:meth:`Storage.fetch` copies a file to local disk (streamed, hashed, checked against the
store's own size and ETag), :meth:`Storage.children` and :meth:`Storage.scan` describe files
with their modification times, :meth:`Storage.copy` and :meth:`Storage.move` file them away.
:meth:`Storage.stream` and :meth:`Storage.put_stream` copy a file between two storages in
chunks (archive and restore: memory does not grow with the file), the latter in a storage
class where :attr:`Storage.storage_classes` (an object store's tiers, e.g. S3 ``GLACIER_IR``);
reading an object the store must thaw first (S3 ``GLACIER``, ``DEEP_ARCHIVE``) raises
:class:`NotThawed`.

    >>> files = open_storage("s3://lab-bucket/widecube")          # doctest: +SKIP
    >>> files.sub("datasets/pbmc/1f0c...").list()                  # doctest: +SKIP
    {'manifest.json': 4210, 'dataset/obs.parquet': 18231, ...}
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import errno
import hashlib
import mmap
import os
import re
import shutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..config import OBJECT_SCHEMES
from ._signed import delete_objects, encrypted_by_key

__all__ = [
    "OBJECT_SCHEMES",
    "FileInfo",
    "Fetched",
    "LocalStorage",
    "NotThawed",
    "ObjectStorage",
    "Storage",
    "is_object_url",
    "open_storage",
    "pwrite_all",
    "sha256_file",
]

_CHUNK = 1 << 22
_PIECE = 1 << 18  # a reused read buffer: below the ingest's mmap threshold, so from the heap
_HASH_AHEAD = 8  # chunks a hash may lag behind the copy (memory: up to this many _CHUNKs)
_RANGE = 16 << 20  # an unhashed fetch of a large object: ranged GETs of this many bytes
_RANGES_IN_FLIGHT = 8
_PART = 8 << 20  # put_stream: one upload below it, multipart parts of it above (S3's minimum is 5 MiB)
_PLAIN_MD5 = re.compile(r'^"?([0-9a-f]{32})"?$')  # a single-part upload's ETag (no "-N" suffix)
_COLD_CLASS = re.compile(r"<StorageClass>([A-Z_]+)</StorageClass>")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a local file (``hashlib.file_digest``: one 256 KiB buffer, reused)."""
    with open(path, "rb", buffering=0) as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _pieces(f: Any) -> Iterator[memoryview]:
    """``f``'s bytes in pieces of up to :data:`_PIECE`, all read into one buffer: each piece is valid
    until the next. A fresh 4 MiB ``bytes`` per piece is a fresh ``mmap`` under the ingest's
    malloc policy (``compute._malloc``), a page fault per 4 KiB read (hashing a 4.2 GB input
    that way beside pass 1 cost a million faults, 83 % of the ingest's)."""
    view = memoryview(bytearray(_PIECE))
    while n := f.readinto(view):
        yield view[:n]


def _copy_hashed(chunks: Iterable[Any], out: Any, hashes: builtins.list[Any]) -> int:
    """Write ``chunks`` (each its own buffer, never reused) to ``out`` and feed each of
    ``hashes`` every chunk in order, each hash in a thread of its own (hashlib lets go of the
    GIL on large updates), at most :data:`_HASH_AHEAD` chunks behind; returns the bytes
    written. One after the other, a copy costs the GET, the write and every hash added up;
    here, about the slowest of them. Hashing a 4 GB file costs 3.3 s for sha256 and 7 s for
    MD5 on one core of this VM, so at a 10 Gb/s link a hash on the receiving thread would
    halve the copy's speed. From moto (4 GB, this noisy VM) the write dominated instead:
    GET alone 7.6-19 s, GET and write 19-29 s (11-19 s of system time), with sha256 in turn
    21-57 s, in a thread 21-29 s."""
    size = 0
    workers = [ThreadPoolExecutor(1, thread_name_prefix="widecube-hash") for _ in hashes]
    waiting: collections.deque[Future[None]] = collections.deque()  # every hash's, in order

    def settle(behind: int) -> None:  # a hash's failure is raised here, by the copying thread
        while len(waiting) > behind * len(hashes):
            waiting.popleft().result()

    try:
        for chunk in chunks:
            out.write(chunk)
            size += len(chunk)
            waiting.extend(w.submit(h.update, chunk) for w, h in zip(workers, hashes, strict=True))
            settle(_HASH_AHEAD)
        settle(0)
    finally:
        for w in workers:
            w.shutdown(cancel_futures=True)
    return size


class NotThawed(OSError):
    """An object the store keeps in a storage class it must thaw before anyone reads it (S3
    ``GLACIER``, ``DEEP_ARCHIVE``: a ``RestoreObject`` request, hours), not thawed yet or still
    thawing. ``path`` is relative to the storage read; ``storage_class`` is the store's word
    for the class (None when it did not say). The message holds no endpoint and no secret."""

    def __init__(self, url: str, path: str, storage_class: str | None) -> None:
        where = f"{url}/{path}"
        cls = storage_class or "an archive storage class"
        super().__init__(errno.EACCES, f"{where} is in {cls}: the store must thaw it before it can be read")
        self.path = path
        self.storage_class = storage_class


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One file of a storage: its path (relative to the storage listed), size, modification
    time (ns; an object store's has a resolution of one second) and ETag (None on a disk)."""

    path: str
    size: int
    mtime_ns: int
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class Fetched:
    """A file copied to local disk by :meth:`Storage.fetch`: where, its sha256 (None when
    fetched unhashed) and size; ``md5``: for a copy fetched unhashed, the MD5 its bytes must
    have (a single-part upload's ETag), which the caller checks; None when there is none."""

    path: Path
    sha256: str | None
    size: int
    md5: str | None = None


def is_object_url(location: str | Path) -> bool:
    """Whether ``location`` names an object store rather than a local folder."""
    return isinstance(location, str) and location.startswith(OBJECT_SCHEMES)


def open_storage(location: str | Path) -> Storage:
    """The storage at ``location``: ``s3://bucket/prefix`` or a local folder."""
    if is_object_url(location):
        return ObjectStorage(str(location))
    return LocalStorage(Path(location))


class Storage(ABC):
    """A root of files addressed by relative path (see the module docstring)."""

    renames: bool = False
    """Whether :meth:`move` is cheap (a folder rename); else snapshots are written in place."""

    storage_classes: bool = False
    """Whether :meth:`put_stream` takes a ``storage_class`` (an object store's tiers)."""

    readers: int = 4
    """How many files are worth reading at once when every file is read (checksums, verify):
    a local disk's reads cost CPU, so a few threads; an object store's cost round trips."""

    @property
    @abstractmethod
    def url(self) -> str:
        """Where this is, for messages and logs: a folder or ``s3://bucket/prefix``, no secret."""

    @property
    def local(self) -> Path | None:
        """The folder, when the files are on a local disk."""
        return None

    @abstractmethod
    def sub(self, relpath: str) -> Storage:
        """The storage rooted at ``relpath`` under this one."""

    @abstractmethod
    def zarr(self, relpath: str = "", *, writable: bool = False) -> Any:
        """What ``zarr.open_group``/``open_array`` take for the Zarr hierarchy at ``relpath``."""

    @abstractmethod
    def put(self, relpath: str, data: bytes) -> None:
        """Write a whole file (replacing any)."""

    @abstractmethod
    def get(self, relpath: str) -> bytes:
        """A whole file's bytes."""

    @abstractmethod
    def stream(self, relpath: str, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        """A file's bytes in chunks of about ``chunk_size`` (the last one shorter), never the
        whole file in memory; an object the store must thaw first raises :class:`NotThawed`."""

    @abstractmethod
    def put_stream(self, relpath: str, chunks: Iterable[bytes], *, storage_class: str | None = None) -> None:
        """Write a file from ``chunks`` without holding it whole (replacing any); it appears
        under its name only once complete. ``storage_class`` (where :attr:`storage_classes`;
        None: the store's default, S3 ``STANDARD``) is the tier it is stored in."""

    @abstractmethod
    def read_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> builtins.list[Any]:
        """The bytes ``start..end-1`` of each ``(relpath, start, end)``, in order, each as a
        buffer (``bytes`` or one the buffer protocol reads without a copy); the ranges are
        read at once, up to :attr:`readers` in flight. A range past a file's end, or a file
        shorter than it, raises ``OSError(EIO)``."""

    @abstractmethod
    def sha256(self, relpath: str) -> str:
        """Hex sha256 of a file, read from the storage itself (streamed, never whole in memory)."""

    @abstractmethod
    def size(self, relpath: str) -> int:
        """A file's size in bytes."""

    @abstractmethod
    def list(self) -> dict[str, int]:
        """``{relative path: size}`` of every file under this root."""

    @abstractmethod
    def remove(self, relpath: str = "") -> None:
        """Remove a file or everything under ``relpath`` (nothing there is no error)."""

    @abstractmethod
    def scan(self, relpath: str = "") -> builtins.list[FileInfo]:
        """Every file under ``relpath`` (a folder or prefix), paths relative to this root."""

    @abstractmethod
    def children(self, relpath: str = "") -> tuple[dict[str, FileInfo], builtins.list[str]]:
        """One level under ``relpath``: its files by name, and the names of its folders."""

    @abstractmethod
    def fetch(self, relpath: str, dest: Path, *, hashed: bool = True) -> Fetched:
        """Copy a file to ``dest`` on local disk, streamed and hashed as it comes; the copy
        appears under its name only once whole. An object that changed while it was read,
        or whose bytes disagree with the size (and, for a single-part upload, the MD5 ETag)
        the store holds for it, raises a transient :class:`OSError` (``EAGAIN``, ``EIO``).
        ``hashed=False`` copies without hashing (the size and the ETag are still checked):
        the caller hashes the copy later and checks its MD5 against :attr:`Fetched.md5`."""

    @abstractmethod
    def copy(self, src: str, dst: str) -> None:
        """Copy one file (on an object store: server side, no bytes through this process)."""

    def names(self, relpath: str = "") -> set[str]:
        """Names of the files and folders directly under ``relpath`` (nothing there: empty)."""
        files, folders = self.children(relpath)
        return set(files) | set(folders)

    def exists(self, relpath: str) -> bool:
        try:
            self.size(relpath)
        except FileNotFoundError:
            return False
        return True

    def move(self, src: str, dst: str) -> None:
        """Move a file, or everything under ``src``, to ``dst`` (cheap only where
        :attr:`renames`; an object store copies each object, then removes the originals)."""
        files = [f.path for f in self.scan(src)] or [src]
        for rel in files:
            self.copy(rel, dst + rel[len(src) :])
        self.remove(src)

    def signed_url(self, relpath: str, expires_in: float) -> str | None:
        """A URL anyone may GET ``relpath`` from for ``expires_in`` seconds (a presigned URL on
        an object store), or None where the store has no such thing (a local folder: the API
        signs its own download route instead)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class LocalStorage(Storage):
    """A local folder; Zarr reads and writes plain paths in it."""

    renames = True

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def url(self) -> str:
        return str(self.root)

    @property
    def local(self) -> Path:
        return self.root

    def sub(self, relpath: str) -> LocalStorage:
        return LocalStorage(self.root / relpath)

    def zarr(self, relpath: str = "", *, writable: bool = False) -> Path:
        path = self.root / relpath if relpath else self.root
        if writable:
            path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def put(self, relpath: str, data: bytes) -> None:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def get(self, relpath: str) -> bytes:
        return (self.root / relpath).read_bytes()

    def stream(self, relpath: str, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        with open(self.root / relpath, "rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def put_stream(self, relpath: str, chunks: Iterable[bytes], *, storage_class: str | None = None) -> None:
        if storage_class is not None:
            raise ValueError(f"{self.url}: a local folder has no storage classes ({storage_class})")
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        try:
            with open(tmp, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    def read_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> builtins.list[Any]:
        out: builtins.list[Any] = []
        for relpath, start, end in ranges:
            with open(self.root / relpath, "rb", buffering=0) as f:
                got = os.pread(f.fileno(), end - start, start) if end > start else b""
            _check_range(f"{self.url}/{relpath}", start, end, len(got))
            out.append(got)
        return out

    def sha256(self, relpath: str) -> str:
        return sha256_file(self.root / relpath)

    def size(self, relpath: str) -> int:
        return (self.root / relpath).stat().st_size

    def list(self) -> dict[str, int]:
        if not self.root.is_dir():
            return {}
        return {
            p.relative_to(self.root).as_posix(): p.stat().st_size for p in self.root.rglob("*") if p.is_file()
        }

    def remove(self, relpath: str = "") -> None:
        path = self.root / relpath if relpath else self.root
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def scan(self, relpath: str = "") -> builtins.list[FileInfo]:
        base = self.root / relpath if relpath else self.root
        found = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        out = []
        for p in found:
            with contextlib.suppress(FileNotFoundError):  # gone while we looked
                st = p.stat()
                out.append(FileInfo(p.relative_to(self.root).as_posix(), st.st_size, st.st_mtime_ns))
        return out

    def children(self, relpath: str = "") -> tuple[dict[str, FileInfo], builtins.list[str]]:
        files, folders = {}, []
        try:
            entries = list(os.scandir(self.root / relpath if relpath else self.root))
        except (FileNotFoundError, NotADirectoryError):
            return {}, []
        for e in entries:
            try:
                if e.is_dir():
                    folders.append(e.name)
                elif e.is_file():
                    st = e.stat()
                    files[e.name] = FileInfo(f"{relpath}/{e.name}".lstrip("/"), st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                continue
        return files, sorted(folders)

    def fetch(self, relpath: str, dest: Path, *, hashed: bool = True) -> Fetched:
        h, size = hashlib.sha256(), 0
        tmp = dest.with_name(f".{dest.name}.part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(self.root / relpath, "rb", buffering=0) as src, open(tmp, "wb") as out:
            for chunk in _pieces(src):
                out.write(chunk)
                if hashed:
                    h.update(chunk)
                size += len(chunk)
        tmp.replace(dest)
        return Fetched(dest, h.hexdigest() if hashed else None, size)

    def copy(self, src: str, dst: str) -> None:
        target = self.root / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.root / src, target)

    def move(self, src: str, dst: str) -> None:
        target = self.root / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        os.rename(self.root / src, target)


class ObjectStorage(Storage):
    """Objects under ``s3://bucket/prefix`` (obstore; configuration from ``AWS_*`` variables)."""

    storage_classes = True
    readers = 16  # round trips in flight (S3 serves a prefix thousands of GETs a second)

    def __init__(self, url: str) -> None:
        scheme, _, rest = url.partition("://")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ValueError(f"{url!r}: an object-store URL names a bucket ({scheme}://bucket/prefix)")
        self._scheme, self._bucket, self._prefix = scheme, bucket, prefix.strip("/")
        self._store = self._open(self._prefix)

    def _open(self, prefix: str) -> Any:
        from obstore.store import from_url  # imported here: local storage never loads it

        return from_url(f"{self._scheme}://{self._bucket}/{prefix}".rstrip("/"))

    @property
    def url(self) -> str:
        return f"{self._scheme}://{self._bucket}/{self._prefix}".rstrip("/")

    def sub(self, relpath: str) -> ObjectStorage:
        return ObjectStorage(f"{self.url}/{relpath.strip('/')}")

    def zarr(self, relpath: str = "", *, writable: bool = False) -> Any:
        store = self._open(f"{self._prefix}/{relpath.strip('/')}".strip("/")) if relpath else self._store
        from ._zarr import ZarrObjects  # imports zarr: local storage and the CLI never do

        return ZarrObjects(store, read_only=not writable)

    def put(self, relpath: str, data: bytes) -> None:
        import obstore

        obstore.put(self._store, relpath, data)

    def get(self, relpath: str) -> bytes:
        import obstore

        with self._thawed(relpath):
            return bytes(obstore.get(self._store, relpath).bytes())

    def stream(self, relpath: str, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        import obstore

        with self._thawed(relpath):
            got = obstore.get(self._store, relpath)
        for chunk in got.stream(min_chunk_size=chunk_size):
            yield bytes(chunk)

    def put_stream(self, relpath: str, chunks: Iterable[bytes], *, storage_class: str | None = None) -> None:
        import obstore

        attributes: Any = {"Storage-Class": storage_class} if storage_class else None
        # obstore's buffered writer: one upload for a file under _PART, else a multipart upload
        # of _PART-sized parts, two in flight (memory bounded by the part size, not the file's,
        # and S3's 5 GB limit of one request does not apply). Written from this thread, unlike
        # put(iterator), which pulls the chunks inside obstore's runtime, where a chunk read
        # from another object store cannot block. An exception leaves no object behind.
        with obstore.open_writer(
            self._store, relpath, attributes=attributes, buffer_size=_PART, max_concurrency=2
        ) as out:
            for chunk in chunks:
                out.write(chunk)

    def read_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> builtins.list[Any]:
        import obstore

        def one(request: tuple[str, int, int]) -> Any:
            relpath, start, end = request
            if end <= start:  # the store refuses an empty range
                return b""
            got = obstore.get_range(self._store, relpath, start=start, end=end)
            _check_range(f"{self.url}/{relpath}", start, end, len(got))
            return got

        if len(ranges) <= 1:
            return [one(r) for r in ranges]
        with ThreadPoolExecutor(min(self.readers, len(ranges)), thread_name_prefix="widecube-ranges") as pool:
            return builtins.list(pool.map(one, ranges))

    def sha256(self, relpath: str) -> str:
        import obstore

        h = hashlib.sha256()
        with self._thawed(relpath):
            got = obstore.get(self._store, relpath)
        for chunk in got.stream(min_chunk_size=_CHUNK):
            h.update(chunk)
        return h.hexdigest()

    @contextlib.contextmanager
    def _thawed(self, relpath: str) -> Iterator[None]:
        """Translate S3's ``InvalidObjectState`` (an archived object not thawed) into
        :class:`NotThawed`; the store's own text, which names the endpoint, stays out."""
        from obstore.exceptions import PermissionDeniedError

        try:
            yield
        except PermissionDeniedError as exc:
            if "InvalidObjectState" not in str(exc):
                raise
            found = _COLD_CLASS.search(str(exc))
            raise NotThawed(self.url, relpath, found.group(1) if found else None) from None

    def size(self, relpath: str) -> int:
        import obstore

        return int(obstore.head(self._store, relpath)["size"])

    def signed_url(self, relpath: str, expires_in: float) -> str:
        import obstore

        return str(obstore.sign(self._store, "GET", relpath, timedelta(seconds=expires_in)))

    def list(self) -> dict[str, int]:
        import obstore

        return {meta["path"]: int(meta["size"]) for page in obstore.list(self._store) for meta in page}

    def remove(self, relpath: str = "") -> None:
        store = self.sub(relpath) if relpath else self
        paths = list(store.list())
        if not paths and relpath:  # a single object, or nothing
            paths, store = [relpath], self
        for lo in range(0, len(paths), 1000):  # S3 deletes at most 1000 keys per request
            delete_objects(store._store, paths[lo : lo + 1000])

    def scan(self, relpath: str = "") -> builtins.list[FileInfo]:
        import obstore

        prefix = f"{relpath.strip('/')}/" if relpath.strip("/") else None
        return [_info(meta) for page in obstore.list(self._store, prefix) for meta in page]

    def children(self, relpath: str = "") -> tuple[dict[str, FileInfo], builtins.list[str]]:
        import obstore

        prefix = f"{relpath.strip('/')}/" if relpath.strip("/") else ""
        listed = obstore.list_with_delimiter(self._store, prefix or None)
        files = {meta["path"][len(prefix) :]: _info(meta) for meta in listed["objects"]}
        folders = sorted(p[len(prefix) :].strip("/") for p in listed["common_prefixes"])
        return files, folders

    def fetch(self, relpath: str, dest: Path, *, hashed: bool = True) -> Fetched:
        import obstore
        from obstore.exceptions import PreconditionError

        meta = obstore.head(self._store, relpath)
        etag, listed = meta.get("e_tag"), int(meta["size"])
        # a single-part upload's ETag is the MD5 of its bytes, unless a KMS or customer key
        # encrypts the object (then it is not, and a check against it would fail every copy)
        plain = _PLAIN_MD5.match(etag or "")
        expected = plain.group(1) if plain and not encrypted_by_key(self._store, relpath) else None
        sha = hashlib.sha256() if hashed else None
        md5 = hashlib.md5(usedforsecurity=False) if hashed and expected else None  # else the caller's
        tmp = dest.with_name(f".{dest.name}.part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        where = f"{self.url}/{relpath}"
        try:
            if sha is None and listed >= 2 * _RANGE:
                size = self._fetch_ranges(relpath, tmp, listed, etag)
            else:
                got = obstore.get(self._store, relpath, options={"if_match": etag} if etag else None)
                with open(tmp, "wb") as out:
                    hashes = [h for h in (sha, md5) if h is not None]
                    size = _copy_hashed(got.stream(min_chunk_size=_CHUNK), out, hashes)
        except PreconditionError:
            tmp.unlink(missing_ok=True)
            raise OSError(errno.EAGAIN, f"{where} changed while it was read; read it again") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if size != listed or (md5 is not None and md5.hexdigest() != expected):
            tmp.unlink(missing_ok=True)
            what = f"{size} bytes arrived of {listed}" if size != listed else "MD5 differs"
            raise OSError(errno.EIO, f"{where}: the copy does not match the store's checksum ({what})")
        tmp.replace(dest)
        if sha is None:
            return Fetched(dest, None, size, expected)
        return Fetched(dest, sha.hexdigest(), size)

    def _fetch_ranges(self, relpath: str, tmp: Path, size: int, etag: str | None) -> int:
        """An unhashed copy of a large object into ``tmp``: ranges of :data:`_RANGE` bytes,
        :data:`_RANGES_IN_FLIGHT` GETs at a time (each with ``If-Match``), each written where
        it belongs as it streams in; the bytes written (short when a range came back short).

        One GET is one TCP stream, and one stream does not fill a link: S3 serves about 100 MB/s
        a connection, which is why its own tools download large objects in parallel ranges.
        Here, a 4 GB h5ad from the local S3 server took 7.5-9.0 s as one streamed GET and
        4.0-5.5 s in ranges of 16 MiB, 4 or 8 at a time (most of it the kernel's page-cache
        writes, whichever way).

        So each range is gathered in an aligned buffer of its thread and written with
        ``O_DIRECT`` where the file system allows it (:func:`open_direct`; the last range
        padded to a whole block, the file cut to its size after): the copy does not go
        through the page cache, where 16 GB pushed out the rest (the store's own copy, the
        spill) and, on a VM whose balloon hands free pages back to the host, paid a first
        touch for every page. B1M from the local S3 server, the S3 ingest alone, alternating
        (an AMD EPYC VM): through the cache 162.8 and 175.0 s (staging 9.7 and 23.1 s), around
        it 162.8 and 153.1 s (staging 7.0 and 6.1 s; pass 1, reading the copy from the disk,
        3-5 s longer). At B100k (nothing presses on memory) no gain: 54.5 s around, 53.5 through."""
        import obstore

        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        fd, direct = (
            open_direct(tmp, flags) if _RANGE % DIRECT_ALIGN == 0 else (os.open(tmp, flags, 0o600), False)
        )
        buffers = threading.local()  # each fetching thread's aligned range, reused

        def one(start: int) -> int:
            end = min(size, start + _RANGE)
            options: Any = {"range": (start, end), **({"if_match": etag} if etag else {})}
            got, at = obstore.get(self._store, relpath, options=options), start
            if not direct:
                for chunk in got.stream(min_chunk_size=_PIECE):
                    at += pwrite_all(fd, chunk, at)
                return at - start
            if getattr(buffers, "range", None) is None:
                buffers.range = _aligned(_RANGE)
            into = buffers.range
            for chunk in got.stream(min_chunk_size=_PIECE):
                n = min(len(chunk), _RANGE - (at - start))
                into[at - start : at - start + n] = memoryview(chunk)[:n]
                at += n
            whole = at - start + (-(at - start)) % DIRECT_ALIGN  # the last range: padded, cut below
            pwrite_all(fd, into[:whole], start)
            return at - start

        try:
            _reserve(fd, size)
            pool = ThreadPoolExecutor(_RANGES_IN_FLIGHT, thread_name_prefix="widecube-fetch")
            try:
                done = sum(pool.map(one, range(0, size, _RANGE)))
            finally:
                pool.shutdown(cancel_futures=True)
            if direct:
                os.ftruncate(fd, done)
            return done
        finally:
            os.close(fd)

    def copy(self, src: str, dst: str) -> None:
        import obstore

        obstore.copy(self._store, src, dst)


def pwrite_all(fd: int, data: Any, offset: int) -> int:
    """Writes every byte of ``data`` (any contiguous buffer) at ``offset`` of the file open as
    ``fd`` and returns how many: ``os.pwrite`` may write fewer than it is given."""
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)
    return done


DIRECT_ALIGN = 4096
"""What ``O_DIRECT`` asks of file offsets, lengths and buffers (a disk's logical block, 512 or
4096 bytes)."""


def open_direct(path: Path, flags: int, mode: int = 0o600) -> tuple[int, bool]:
    """``path`` opened with ``flags`` and ``O_DIRECT`` (around the page cache), and True; or,
    where the platform or the file system has no ``O_DIRECT`` (tmpfs, some network mounts),
    opened without it, and False."""
    direct = getattr(os, "O_DIRECT", 0)
    if direct:
        try:
            return os.open(path, flags | direct, mode), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    return os.open(path, flags, mode), False


def _aligned(n: int) -> memoryview:
    """``n`` writable bytes in an anonymous mapping: page-aligned, as ``O_DIRECT`` asks."""
    return memoryview(mmap.mmap(-1, n + (-n) % mmap.PAGESIZE))[:n]


def _reserve(fd: int, size: int) -> None:
    """Room for ``size`` bytes in the file open as ``fd``, so that a disk too small fails the
    copy at once (``ENOSPC``) instead of after most of it; where the file system or the
    platform cannot reserve, the writes find out."""
    try:
        os.posix_fallocate(fd, 0, size)
    except AttributeError:  # not on this platform
        return
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise


def _check_range(where: str, start: int, end: int, got: int) -> None:
    """A range read that came back short: the file is shorter than its reader was told."""
    if got != end - start:
        raise OSError(errno.EIO, f"{where}: {got} bytes at {start} where {end - start} were expected")


def _info(meta: Any) -> FileInfo:
    """An obstore ``ObjectMeta`` as a :class:`FileInfo`."""
    stamp = meta["last_modified"].timestamp()
    return FileInfo(str(meta["path"]), int(meta["size"]), int(stamp * 1e9), meta.get("e_tag"))
