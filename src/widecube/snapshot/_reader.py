"""Open a finished snapshot: its manifest, tables and decoded arrays.

Arrays are served from a local cache of decoded ``.npy`` files opened with ``mmap``: the
first reader of an array decodes its Zarr once, later requests only index memory. Snapshots
are immutable, so the cache never goes stale. Decoding is

* bounded in memory: a large array (the gene-major matrix holds gigabytes) is decoded a band
  of whole chunks at a time straight into the memory-mapped ``.npy``, never whole in RAM;
* atomic: it is written under a temporary name and renamed into place;
* done once across processes: an exclusive ``flock`` on a lock file next to the target
  makes other workers wait for the decoder and then map its file;
* per array: decoding one array does not hold up readers of the snapshot's other arrays.
"""

from __future__ import annotations

import fcntl
import os
import threading
import uuid
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import zarr

from ._manifest import read_manifest

__all__ = ["Snapshot"]

T = TypeVar("T")

DECODE_BAND_BYTES = 64 * 1024**2
"""Bytes of decoded values held in memory at once while an array is written to the cache."""


class Snapshot:
    """A read-only view of one snapshot folder.

    >>> snap = Snapshot(Path("widecube-data/datasets/pbmc/1f0c..."))   # doctest: +SKIP
    >>> snap.table("dataset/var.parquet").index[:3]
    """

    def __init__(self, root: Path, *, cache: Path | None = None) -> None:
        self.root = root
        self.manifest: dict[str, Any] = read_manifest(root)
        self._cache = cache / self.version if cache is not None else None
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

    def file(self, relpath: str) -> Path:
        return self.root / relpath

    def table(self, relpath: str) -> pd.DataFrame:
        """A Parquet table of the snapshot, read once."""
        with self._lock:
            if relpath not in self._tables:
                self._tables[relpath] = pd.read_parquet(self.file(relpath), engine="pyarrow")
            return self._tables[relpath]

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
            if arr is not None:
                return arr
            path_lock = self._loading.setdefault(relpath, threading.Lock())
        with path_lock:  # one thread decodes this array; readers of other arrays go on
            with self._lock:
                arr = self._arrays.get(relpath)
            if arr is None:
                arr = self._load(relpath)
                with self._lock:
                    self._arrays[relpath] = arr
            return arr

    def _load(self, relpath: str) -> np.ndarray:
        if self._cache is None:
            return np.asarray(zarr.open_array(self.file(relpath), mode="r")[...])
        target = self._cache / (relpath + ".npy")
        if not target.exists():  # the Zarr is opened only when the cache lacks the array
            target.parent.mkdir(parents=True, exist_ok=True)
            with _exclusive(target.with_name(f".{target.name}.lock")):
                if not target.exists():  # another process may have decoded it meanwhile
                    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
                    try:
                        _decode(zarr.open_array(self.file(relpath), mode="r"), tmp)
                        os.replace(tmp, target)
                    finally:
                        tmp.unlink(missing_ok=True)
        # a plain ndarray over the map: np.memmap's __getitem__/__array_finalize__ cost ~90 us
        # per fancy index, more than the indexing itself on the serving path
        return np.load(target, mmap_mode="r").view(np.ndarray)


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock`` (other processes and threads wait)."""
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _decode(source: zarr.Array, path: Path) -> None:
    """Write ``source`` decoded to ``path`` as ``.npy``, a band of whole chunks at a time."""
    shape = tuple(int(n) for n in source.shape)
    dtype = np.dtype(source.dtype)
    if not shape or shape[0] == 0 or dtype.itemsize * int(np.prod(shape)) <= DECODE_BAND_BYTES:
        with open(path, "wb") as f:
            np.save(f, np.asarray(source[...]))
        return
    row_bytes = dtype.itemsize * int(np.prod(shape[1:]))
    chunk_rows = int(source.chunks[0])
    band = max(1, DECODE_BAND_BYTES // max(1, row_bytes * chunk_rows)) * chunk_rows
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    try:
        for lo in range(0, shape[0], band):
            out[lo : lo + band] = source[lo : lo + band]
        out.flush()
    finally:
        del out
