"""The decoded cache's lifecycle: warm a version before it is served, evict versions no
longer served, sweep folders other processes left. Used by the server's upkeep.

Several workers share one cache folder (``Settings.cache``, a folder per version); each
evicts what it opened, and the sweep catches the rest by age.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid

from ..access import ANONYMOUS, SERVER, Actor
from . import _views
from ._index import index_of
from ._reads import Reads
from ._resolve import serving

__all__ = ["CacheUpkeep"]

_VERSION_ID = re.compile(r"^[0-9a-f]{32}$")


class CacheUpkeep(Reads):
    """Warm, evict and sweep the decoded cache of the versions this facade serves (warming
    runs the queries of :class:`Reads`, so it is one)."""

    def live_versions(self, *, actor: Actor = ANONYMOUS) -> dict[str, str]:
        """``{version: dataset}`` of every dataset's published version (one catalog read)."""
        self.door.authorize(actor, "upkeep", SERVER)
        return {d.current.version: d.name for d in self.catalog.datasets() if d.current is not None}

    def opened_versions(self, *, actor: Actor = ANONYMOUS) -> list[str]:
        """Versions whose snapshots this process holds open, least recently used first."""
        self.door.authorize(actor, "upkeep", SERVER)
        with self._lock:
            return list(self._open)

    @serving
    def warm(self, dataset: str, version: str | None = None, *, actor: Actor = ANONYMOUS) -> str:
        """Decode every grouped array of a version (each view, grouping and layer) and the
        gene-major matrix into the cache now, so that no query after a publish pays for it."""
        self.door.authorize(actor, "upkeep", dataset)
        _, snap = self.resolve(dataset, version)
        index = index_of(snap)
        _views.warm_views(snap)
        if index.has_matrix:  # decode X (once, for every worker) and compile the filter kernel
            groupbys = snap.manifest["parameters"].get("groupbys") or []
            if snap.n_genes and groupbys:
                self.aggregate(
                    dataset,
                    genes=[str(snap.var_names[0])],
                    groupby=groupbys[0],
                    stats=["mean", *index.quantile_names][:2],
                    precomputed=False,
                    version=snap.version,
                    actor=actor,
                )
        _ = snap.var_names
        return snap.version

    def evict(self, version: str, *, actor: Actor = ANONYMOUS) -> bool:
        """Forget an opened version and delete its decoded cache; True if anything went.

        Requests still running on it keep their snapshot object and memory maps (an
        unlinked file stays readable while mapped); a later request re-opens it. The folder
        is renamed away before it is deleted, so no reader ever sees it half-removed.
        """
        self.door.authorize(actor, "upkeep", SERVER)
        with self._lock:
            dropped = self._open.pop(version, None) is not None
        return self._remove_cache(version) or dropped

    def sweep_cache(self, keep: set[str], older_than: float, *, actor: Actor = ANONYMOUS) -> list[str]:
        """Delete cache folders of versions not in ``keep`` untouched for ``older_than`` s.

        Catches folders left by other processes or earlier runs (several workers share the
        cache; each only evicts what it opened).
        """
        self.door.authorize(actor, "upkeep", SERVER)
        root = self.settings.cache
        if root is None or not root.is_dir():
            return []
        now = time.time()
        removed = []
        for folder in root.iterdir():
            name = folder.name
            if name.startswith(".") or name in keep or not folder.is_dir():
                continue
            if now - folder.stat().st_mtime >= older_than and self._remove_cache(name):
                removed.append(name)
        return removed

    def _remove_cache(self, version: str) -> bool:
        root = self.settings.cache
        if root is None or not _VERSION_ID.match(version):
            return False
        trash = root / f".evicted-{version}-{uuid.uuid4().hex}"
        try:
            os.rename(root / version, trash)
        except FileNotFoundError:
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return True
