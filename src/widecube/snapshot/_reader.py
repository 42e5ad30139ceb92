"""Open a finished snapshot: its manifest, tables and decoded arrays.

Arrays are served from the decoded cache (see ``_cache``): local ``.npy`` copies opened with
``mmap``, checked against a checksum the first time a process maps them. Snapshots are
immutable, so the cache never goes stale.

What is served is what was verified: a table's file is checked against its manifest sha256
before it is parsed; an array whose Zarr chunks carry no CRC-32C (snapshots written before
the codec) has its files checked the same way before it is decoded; and any failure to
read a file is checked against the manifest, so a corrupt file raises
:class:`~widecube.errors.SnapshotCorrupt` naming it, never a wrong value or a bare 500.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Callable, Collection, Hashable
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import zarr
from zarr.codecs import Crc32cCodec

from ..errors import SnapshotCorrupt
from ._cache import check_cache, map_cached, touch
from ._integrity import Fault, check_files, corrupt, is_checksum_error
from ._manifest import as_storage, read_manifest
from ._store import Storage

__all__ = ["Snapshot"]

T = TypeVar("T")


class Snapshot:
    """A read-only view of one snapshot (a folder, or a prefix of an object store).

    >>> snap = Snapshot(Path("widecube-data/datasets/pbmc/1f0c..."))   # doctest: +SKIP
    >>> snap.table("dataset/var.parquet").index[:3]

    Arrays are read through the local decoded cache when one is given (``cache``), which
    keeps the hot path on local disk whatever the storage; ``cache_limit`` bounds the whole
    cache folder in bytes (least recently used arrays evicted, see ``_cache``).
    """

    def __init__(
        self, root: Path | Storage, *, cache: Path | None = None, cache_limit: int | None = None
    ) -> None:
        self.files = as_storage(root)
        self.manifest: dict[str, Any] = read_manifest(self.files)
        self._cache = cache / self.version if cache is not None else None
        self._bound = (cache, cache_limit) if cache is not None and cache_limit else None
        self._used: dict[str, float] = {}  # relpath -> monotonic time of the last recorded use
        self._arrays: dict[str, np.ndarray] = {}
        self._tables: dict[str, pd.DataFrame] = {}
        self._lock = threading.Lock()
        self._memo: dict[Hashable, Any] = {}
        self._memo_lock = threading.RLock()
        self._loading: dict[str, threading.Lock] = {}

    @property
    def dataset(self) -> str:
        return str(self.manifest["dataset"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def n_cells(self) -> int:
        return int(self.manifest["n_cells"])

    @property
    def n_genes(self) -> int:
        return int(self.manifest["n_genes"])

    def view(self, name: str) -> dict[str, Any]:
        """The manifest entry of view ``name``."""
        return dict(self.manifest["views"][name])

    @property
    def root(self) -> Path:
        """The snapshot's folder (a local storage only)."""
        if self.files.local is None:
            raise TypeError(f"{self.files.url} is not a local folder")
        return self.files.local

    def file(self, relpath: str) -> Path:
        """The path of a file of the snapshot (a local storage only)."""
        return self.root / relpath

    def group(self, relpath: str) -> zarr.Group:
        """The Zarr group at ``relpath``, opened read-only from the storage."""
        return zarr.open_group(self.files.zarr(relpath), mode="r")

    def table(self, relpath: str) -> pd.DataFrame:
        """A Parquet table of the snapshot, read once."""
        with self._lock:
            if relpath not in self._tables:
                self._tables[relpath] = self._guarded(relpath, lambda: self._read_table(relpath))
            return self._tables[relpath]

    def _read_table(self, relpath: str) -> pd.DataFrame:
        """Read the file once, check those bytes against the manifest (Parquet pages carry no
        checksum we could rely on), then parse the same bytes: one read, not a hash pass and
        a parse pass over the disk."""
        data = self.files.get(relpath)
        listed = self.manifest["files"].get(relpath)
        if listed is None or hashlib.sha256(data).hexdigest() != listed["sha256"]:
            self.require(relpath)  # names the fault (unlisted, missing, changed)
        return pd.read_parquet(io.BytesIO(data), engine="pyarrow")

    @cached_property
    def var_names(self) -> pd.Index:
        return self.table("dataset/var.parquet").index

    def memo(self, key: Hashable, factory: Callable[[], T]) -> T:
        """``factory()``, computed once per snapshot object (decoded tables for queries)."""
        with self._memo_lock:
            if key not in self._memo:
                self._memo[key] = factory()
            return self._memo[key]  # type: ignore[no-any-return]

    def array(self, relpath: str) -> np.ndarray:
        """A Zarr array of the snapshot, decoded; memory-mapped from the cache if one is set."""
        with self._lock:
            arr = self._arrays.get(relpath)
            if arr is not None and (self._bound is None or self._still_cached(relpath)):
                return arr
            self._arrays.pop(relpath, None)
            path_lock = self._loading.setdefault(relpath, threading.Lock())
        with path_lock:  # one thread decodes this array; readers of other arrays go on
            with self._lock:
                arr = self._arrays.get(relpath)
            if arr is None:
                arr = self._load(relpath)
                with self._lock:
                    self._arrays[relpath] = arr
            return arr

    def _still_cached(self, relpath: str) -> bool:
        """With a bounded cache: whether the mapped file is still there (else it was evicted and
        is mapped afresh), recording a use at most once a second per array."""
        assert self._cache is not None
        target = self._cache / (relpath + ".npy")
        now = time.monotonic()
        if now - self._used.get(relpath, 0.0) < 1.0:
            return True
        if not target.exists():
            return False
        self._used[relpath] = now
        touch(target)
        return True

    def _load(self, relpath: str) -> np.ndarray:
        if self._cache is None:
            return self._guarded(relpath, lambda: np.asarray(self._source(relpath)[...]))
        target = self._cache / (relpath + ".npy")
        # the Zarr is opened only when the cache lacks the array (or it failed its checksum)
        return self._guarded(
            relpath, lambda: map_cached(target, lambda: self._source(relpath), bound=self._bound)
        )

    def _source(self, relpath: str) -> zarr.Array[Any]:
        """The Zarr array, its files checked first when its chunks carry no CRC-32C."""
        source = zarr.open_array(self.files.zarr(relpath), mode="r")
        if not any(isinstance(c, Crc32cCodec) for c in getattr(source.metadata, "codecs", ())):
            self.require(relpath)
        return source

    # -- integrity --------------------------------------------------------------------------

    def check(
        self, under: str | None = None, *, copy_to: Path | None = None, uncopied: Collection[str] = ()
    ) -> list[Fault]:
        """Files of the snapshot (all, or those under ``under``) that fail their manifest
        sha256, are missing, or (for the whole snapshot) are not listed; ``copy_to``: each
        file hashed is written there too, but for those under a folder of ``uncopied``
        (:func:`check_files`)."""
        files = self.manifest["files"]
        return check_files(self.files, files, under=under, copy_to=copy_to, uncopied=uncopied)

    def check_cache(self, *, repair: bool = True) -> list[Fault]:
        """Decoded cache files of this version that fail their checksum (removed with
        ``repair``, and forgotten here, so the next read decodes them again)."""
        if self._cache is None:
            return []
        faults = check_cache(self._cache, repair=repair)
        if faults and repair:
            with self._lock:
                for f in faults:
                    self._arrays.pop(f.file.removesuffix(".npy"), None)
        return faults

    def require(self, under: str) -> None:
        """Raise :class:`SnapshotCorrupt` if a file under ``under`` fails its checksum."""
        faults = self.check(under)
        if faults:
            raise corrupt(self.dataset, self.version, faults)

    def _guarded(self, relpath: str, read: Callable[[], T]) -> T:
        """``read()``; a failure is checked against the manifest and becomes
        :class:`SnapshotCorrupt` when a file of ``relpath`` is at fault (or a chunk failed its
        CRC-32C), else it is raised as it is."""
        try:
            return read()
        except SnapshotCorrupt:
            raise
        except Exception as exc:
            faults = self.check(relpath)
            if not faults and is_checksum_error(exc):
                faults = [Fault(relpath, "has a chunk that fails its CRC-32C checksum")]
            if faults:
                raise corrupt(self.dataset, self.version, faults) from exc
            raise
