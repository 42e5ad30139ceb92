"""Open a finished snapshot: its manifest, tables and decoded arrays.

Arrays are served from a local cache of decoded ``.npy`` files opened with ``mmap``: the
first reader of an array decodes its Zarr once (atomically, so concurrent processes agree),
later requests only index memory. Snapshots are immutable, so the cache never goes stale.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Hashable
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import zarr

from ._manifest import read_manifest

__all__ = ["Snapshot"]

T = TypeVar("T")


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
            if arr is None:
                arr = self._load(relpath)
                self._arrays[relpath] = arr
            return arr

    def _load(self, relpath: str) -> np.ndarray:
        if self._cache is None:
            return np.asarray(zarr.open_array(self.file(relpath), mode="r")[...])
        target = self._cache / (relpath + ".npy")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            data = np.asarray(zarr.open_array(self.file(relpath), mode="r")[...])
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
            with open(tmp, "wb") as f:
                np.save(f, data)
            os.replace(tmp, target)
        return np.load(target, mmap_mode="r")
