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

    >>> files = open_storage("s3://lab-bucket/widecube")          # doctest: +SKIP
    >>> files.sub("datasets/pbmc/1f0c...").list()                  # doctest: +SKIP
    {'manifest.json': 4210, 'dataset/obs.parquet': 18231, ...}
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from ..config import OBJECT_SCHEMES

__all__ = ["OBJECT_SCHEMES", "LocalStorage", "ObjectStorage", "Storage", "is_object_url", "open_storage"]

_CHUNK = 1 << 22


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

    def children(self, relpath: str = "") -> set[str]:
        """Names of the files and folders directly under ``relpath`` (one level down; nothing
        there is an empty set). This default lists everything below; stores list one level."""
        base = relpath.strip("/")
        return {rel.split("/", 1)[0] for rel in (self.sub(base) if base else self).list()}

    def exists(self, relpath: str) -> bool:
        try:
            self.size(relpath)
        except FileNotFoundError:
            return False
        return True

    def move(self, src: str, dst: str) -> None:
        """Move everything under ``src`` to ``dst`` (only where :attr:`renames`)."""
        raise NotImplementedError(f"{self.url} cannot rename; write in place instead")

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

    def sha256(self, relpath: str) -> str:
        h = hashlib.sha256()
        with open(self.root / relpath, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest()

    def size(self, relpath: str) -> int:
        return (self.root / relpath).stat().st_size

    def list(self) -> dict[str, int]:
        if not self.root.is_dir():
            return {}
        return {
            p.relative_to(self.root).as_posix(): p.stat().st_size for p in self.root.rglob("*") if p.is_file()
        }

    def children(self, relpath: str = "") -> set[str]:
        try:
            return {entry.name for entry in os.scandir(self.root / relpath if relpath else self.root)}
        except (FileNotFoundError, NotADirectoryError):
            return set()

    def remove(self, relpath: str = "") -> None:
        path = self.root / relpath if relpath else self.root
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def move(self, src: str, dst: str) -> None:
        target = self.root / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        os.rename(self.root / src, target)


class ObjectStorage(Storage):
    """Objects under ``s3://bucket/prefix`` (obstore; configuration from ``AWS_*`` variables)."""

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
        from zarr.storage import ObjectStore

        store = self._open(f"{self._prefix}/{relpath.strip('/')}".strip("/")) if relpath else self._store
        return ObjectStore(store, read_only=not writable)

    def put(self, relpath: str, data: bytes) -> None:
        import obstore

        obstore.put(self._store, relpath, data)

    def get(self, relpath: str) -> bytes:
        import obstore

        return bytes(obstore.get(self._store, relpath).bytes())

    def sha256(self, relpath: str) -> str:
        import obstore

        h = hashlib.sha256()
        for chunk in obstore.get(self._store, relpath).stream(min_chunk_size=_CHUNK):
            h.update(chunk)
        return h.hexdigest()

    def size(self, relpath: str) -> int:
        import obstore

        return int(obstore.head(self._store, relpath)["size"])

    def list(self) -> dict[str, int]:
        import obstore

        return {meta["path"]: int(meta["size"]) for page in obstore.list(self._store) for meta in page}

    def children(self, relpath: str = "") -> set[str]:
        import obstore

        prefix = relpath.strip("/")
        found = obstore.list_with_delimiter(self._store, prefix or None)
        names = {p.rstrip("/").rsplit("/", 1)[-1] for p in found["common_prefixes"]}
        return names | {meta["path"].rsplit("/", 1)[-1] for meta in found["objects"]}

    def remove(self, relpath: str = "") -> None:
        import obstore

        store = self.sub(relpath) if relpath else self
        paths = list(store.list())
        if not paths and relpath:  # a single object, or nothing
            paths, store = [relpath], self
        for lo in range(0, len(paths), 1000):  # S3 deletes at most 1000 keys per request
            with contextlib.suppress(FileNotFoundError):
                obstore.delete(store._store, paths[lo : lo + 1000])
