"""The library object behind the CLI and the API: resolve versions, answer queries.

Every query resolves the dataset's version exactly once (the live one, or a pinned one)
and then reads only that immutable snapshot, so a publish in the middle of a request can
never mix two versions. Opened snapshots are kept per version.

    >>> wc = Widecube(Settings())                                         # doctest: +SKIP
    >>> wc.summary("pbmc", genes=["CD3E"], groupby="cell_type", stats=["mean"])["values"]
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd

from .catalog import Catalog, VersionRecord, VersionStatus
from .config import Settings
from .errors import InvalidQuery, VersionNotFound
from .snapshot import Snapshot
from .views import SummaryTable, views

__all__ = ["Widecube"]

_SERVABLE = {VersionStatus.PUBLISHED, VersionStatus.RETIRED, VersionStatus.VERIFIED}


class Widecube:
    """Catalog + snapshots, with the queries the API serves."""

    def __init__(self, settings: Settings | None = None, *, keep_open: int = 16) -> None:
        self.settings = settings or Settings()
        self.catalog = Catalog(self.settings.catalog_url)
        self._open: OrderedDict[str, Snapshot] = OrderedDict()
        self._keep = keep_open
        self._lock = threading.Lock()

    def close(self) -> None:
        self.catalog.close()

    def resolve(self, dataset: str, version: str | None = None) -> tuple[VersionRecord, Snapshot]:
        """The version to read (live, or pinned) and its opened snapshot."""
        if version is None:
            record = self.catalog.current(dataset)
        else:
            record = self.catalog.get_version(dataset, version)
            if record.status not in _SERVABLE or record.path is None:
                raise VersionNotFound(
                    f"version {version} of dataset {dataset!r} is {record.status}, not servable"
                )
        return record, self._snapshot(record)

    def _snapshot(self, record: VersionRecord) -> Snapshot:
        with self._lock:
            snap = self._open.get(record.version)
            if snap is not None:
                self._open.move_to_end(record.version)
                return snap
        assert record.path is not None
        snap = Snapshot(self.settings.storage / record.path, cache=self.settings.cache)
        with self._lock:
            snap = self._open.setdefault(record.version, snap)
            while len(self._open) > self._keep:
                self._open.popitem(last=False)
        return snap

    def datasets(self) -> list[dict[str, Any]]:
        """Every dataset with a live version."""
        out = []
        for d in self.catalog.datasets():
            if d.current is None:
                continue
            out.append({
                "name": d.name,
                "version": d.current.version,
                "n_cells": d.current.n_cells,
                "n_genes": d.current.n_genes,
                "groupbys": d.current.info.get("groupbys", []),
                "created": d.current.created,
            })  # fmt: skip
        return out

    def dataset(self, dataset: str, version: str | None = None) -> dict[str, Any]:
        """Detail of a dataset version: sizes, categorical obs columns, groupbys, views."""
        record, snap = self.resolve(dataset, version)
        return {
            "name": dataset,
            "version": record.version,
            "created": record.created,
            "n_cells": snap.n_cells,
            "n_genes": snap.n_genes,
            "obs": snap.memo("obs-categories", lambda: _categories(snap)),
            "groupbys": snap.manifest["parameters"]["groupbys"],
            "views": {v.name: v.describe(snap) for v in views()},
        }

    def genes(self, dataset: str, prefix: str = "", limit: int = 20,
              version: str | None = None) -> tuple[str, list[str]]:  # fmt: skip
        """Gene names starting with ``prefix`` (case-insensitive), alphabetically."""
        record, snap = self.resolve(dataset, version)
        names, lowered = snap.memo("genes-sorted", lambda: _sorted_names(snap.var_names))
        p = prefix.lower()
        start = int(np.searchsorted(lowered, p, side="left"))
        stop = int(np.searchsorted(lowered, p + "\U0010ffff", side="left")) if p else len(names)
        return record.version, list(names[start : min(stop, start + limit)])

    def summary(self, dataset: str, *, genes: list[str], groupby: str, stats: list[str],
                version: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Per-group statistics of ``genes`` for ``groupby``, from the summary view."""
        record, snap = self.resolve(dataset, version)
        table = SummaryTable.open(snap, groupby)
        idx = _gene_index(snap, dataset, genes)
        values = table.query(idx, stats)
        return {
            "dataset": dataset,
            "version": record.version,
            "groupby": groupby,
            "groups": table.groups.tolist(),
            "genes": list(genes),
            "values": values,
        }


def _gene_index(snap: Snapshot, dataset: str, genes: list[str]) -> np.ndarray:
    var_names = snap.var_names
    idx = var_names.get_indexer(genes)
    if (idx < 0).any():
        missing = [g for g, i in zip(genes, idx, strict=True) if i < 0]
        raise InvalidQuery(
            f"dataset {dataset!r} has no gene {missing[0]!r}"
            + (f" (and {len(missing) - 1} more unknown)" if len(missing) > 1 else "")
        )
    return np.asarray(idx)


def _categories(snap: Snapshot) -> dict[str, dict[str, list[Any]]]:
    obs = snap.table("dataset/obs.parquet")
    out = {}
    for column in obs.columns:
        if isinstance(obs[column].dtype, pd.CategoricalDtype):
            counts = obs[column].value_counts(sort=False)
            out[str(column)] = {
                "categories": [str(c) for c in counts.index],
                "counts": [int(n) for n in counts.to_numpy()],
            }
    return out


def _sorted_names(names: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    lowered = np.asarray([str(n).lower() for n in names])
    order = np.argsort(lowered, kind="stable")
    return np.asarray(names)[order], lowered[order]
