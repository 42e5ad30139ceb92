"""The library object behind the CLI and the API: resolve versions, answer queries.

Every query resolves the dataset's version exactly once (the live one, or a pinned one)
and then reads only that immutable snapshot, so a publish in the middle of a request can
never mix two versions. Opened snapshots are kept per version.

What is served is what was verified: a read that finds a file at fault raises
:class:`~widecube.errors.SnapshotCorrupt` (503) naming it, and the service remembers the
version as corrupt, answering 503 for it at once until :meth:`Widecube.verify` passes again;
:meth:`Widecube.publish` and :meth:`Widecube.rollback` re-check the target's files first.

    >>> wc = Widecube(Settings())                                         # doctest: +SKIP
    >>> wc.summary("pbmc", genes=["CD3E"], groupby="cell_type", stats=["mean"])["values"]
"""

from __future__ import annotations

import contextvars
import functools
import os
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from .catalog import Catalog, VersionRecord, VersionStatus
from .compute import Grouping, make_grouping
from .compute._kernels import cell_scale
from .compute.aggregate import Column, GeneData, canonical_filter, cell_mask, expression, summarize
from .compute.groupings import ALL_CELLS_GROUP, all_cells
from .config import Settings
from .errors import (
    CatalogError,
    InvalidQuery,
    SnapshotCorrupt,
    UnknownGrouping,
    VersionNotFound,
    WidecubeError,
)
from .genenames import GeneNames
from .snapshot import MANIFEST, Fault, Snapshot, corrupt
from .views import GenesReader, MarkersReader, MatrixReader, QuantilesReader, has_view, reader, views
from .views.summary import SUMMARY_STATS

__all__ = ["Widecube"]

_SERVABLE = {VersionStatus.PUBLISHED, VersionStatus.RETIRED, VersionStatus.VERIFIED}
_reading: contextvars.ContextVar[Snapshot | None] = contextvars.ContextVar("widecube_reading", default=None)
F = TypeVar("F", bound=Callable[..., Any])


def _serving(method: F) -> F:
    """Mark a query: a corrupt file found while it reads takes the version out of service.

    A :class:`SnapshotCorrupt` is remembered; any other unexpected error (e.g. Zarr's CRC-32C
    codec refusing a chunk read outside :meth:`Snapshot.array`) triggers one check of the
    version's files per process, which turns it into :class:`SnapshotCorrupt` if one is at fault.
    """

    @functools.wraps(method)
    def wrapper(self: Widecube, *args: Any, **kwargs: Any) -> Any:
        token = _reading.set(None)
        try:
            return method(self, *args, **kwargs)
        except SnapshotCorrupt as exc:
            self._mark_corrupt(exc)
            raise
        except WidecubeError:
            raise
        except Exception as exc:
            snap = _reading.get()
            if snap is None or not self._first_failure(snap.version):
                raise
            faults = snap.check()
            if not faults:
                raise
            found = corrupt(snap.dataset, snap.version, faults)
            self._mark_corrupt(found)
            raise found from exc
        finally:
            _reading.reset(token)

    return wrapper  # type: ignore[return-value]


class Widecube:
    """Catalog + snapshots, with the queries the API serves."""

    def __init__(self, settings: Settings | None = None, *, keep_open: int = 16) -> None:
        self.settings = settings or Settings()
        self.catalog = Catalog(self.settings.catalog_url)
        self._open: OrderedDict[str, Snapshot] = OrderedDict()
        self._keep = keep_open
        self._lock = threading.Lock()
        self._corrupt: dict[str, SnapshotCorrupt] = {}  # version -> why it is out of service
        self._failed: set[str] = set()  # versions checked after an unexpected read error

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
        bad = self._corrupt.get(record.version)
        if bad is not None:  # a fresh error each time: one shared instance would pile up tracebacks
            raise SnapshotCorrupt(str(bad), dataset=bad.dataset, version=bad.version, files=bad.files)
        snap = self._snapshot(record)
        _reading.set(snap)
        return record, snap

    def _snapshot(self, record: VersionRecord) -> Snapshot:
        with self._lock:
            snap = self._open.get(record.version)
            if snap is not None:
                self._open.move_to_end(record.version)
                return snap
        assert record.path is not None
        try:
            snap = Snapshot(self.settings.storage / record.path, cache=self.settings.cache)
        except (OSError, ValueError) as exc:  # the manifest itself is unreadable
            found = corrupt(record.dataset, record.version, [Fault(MANIFEST, "cannot be read")])
            self._mark_corrupt(found)
            raise found from exc
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

    @_serving
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

    @_serving
    def genes(self, dataset: str, prefix: str = "", limit: int = 20,
              version: str | None = None) -> tuple[str, list[str]]:  # fmt: skip
        """Gene names starting with ``prefix`` (case-insensitive), alphabetically."""
        record, snap = self.resolve(dataset, version)
        names, lowered = snap.memo("genes-sorted", lambda: _sorted_names(snap.var_names))
        p = prefix.lower()
        start = int(np.searchsorted(lowered, p, side="left"))
        stop = int(np.searchsorted(lowered, p + "\U0010ffff", side="left")) if p else len(names)
        return record.version, list(names[start : min(stop, start + limit)])

    @_serving
    def resolve_genes(self, dataset: str, query: list[str], version: str | None = None) -> dict[str, Any]:
        """Canonical names for typed or pasted gene names (symbols or ``gene_ids``, any case),
        in input order, and the unknown ones with "did you mean" suggestions (genenames)."""
        record, snap = self.resolve(dataset, version)

        def build() -> GeneNames:
            var = snap.table("dataset/var.parquet")
            ids = var["gene_ids"].astype(str).tolist() if "gene_ids" in var.columns else None
            return GeneNames([str(n) for n in var.index], ids)

        genes, unknown = snap.memo("gene-names", build).resolve(query)
        return {"dataset": dataset, "version": record.version, "genes": genes, "unknown": unknown}

    @_serving
    def summary(self, dataset: str, *, genes: list[str], groupby: str, stats: list[str],
                layer: str | None = None, version: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Per-group statistics of ``genes`` for ``groupby`` in ``layer`` (default: the
        dataset's default, normalized for count data), from the views serving each stat."""
        record, snap = self.resolve(dataset, version)
        layer = layer or _default_layer(snap)
        idx = _gene_index(snap, dataset, genes)
        groups, values = _precomputed(snap, groupby, layer, idx, stats)
        return {
            "dataset": dataset,
            "version": record.version,
            "groupby": groupby,
            "layer": layer,
            "groups": groups,
            "genes": list(genes),
            "values": values,
        }

    # -- any subset of cells: on-the-fly queries over the gene-major view -----------------

    @_serving
    def expression(self, dataset: str, *, genes: list[str], filter: dict[str, list[str]] | None = None,
                   layer: str | None = None, version: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Per-cell values of ``genes`` (float32), in obs order, of the cells ``filter`` keeps
        (every cell without one), read from the gene-major view: for scatter and violin plots.

        ``filter`` is ``{obs column: [categories]}`` (see :mod:`widecube.compute.aggregate`).

            >>> wc.expression("pbmc", genes=["CD3E"], filter={"donor": ["D1"]})["cells"]  # doctest: +SKIP
            8123
        """
        record, snap = self.resolve(dataset, version)
        layer = _layer(snap, dataset, layer)
        data = _gene_data(snap, dataset, record.version, _gene_index(snap, dataset, genes), layer)
        spec = canonical_filter(filter)
        mask, kept = _selection(snap, dataset, spec)
        return {
            "dataset": dataset,
            "version": record.version,
            "layer": layer,
            "genes": list(genes),
            "filter": {c: list(v) for c, v in spec},
            "cells": kept,
            "values": dict(zip(genes, expression(data, mask, snap.n_cells), strict=True)),
        }

    @_serving
    def aggregate(self, dataset: str, *, genes: list[str], groupby: str, stats: list[str],
                  filter: dict[str, list[str]] | None = None, layer: str | None = None,
                  version: str | None = None, precomputed: bool = True) -> dict[str, Any]:  # fmt: skip
        """The summary of ``genes`` over the cells ``filter`` keeps, grouped by ``groupby``:
        the shape and statistics of :meth:`summary` (quantiles included), for any subset.

        Groups are the grouping's groups over all cells, in its order; a group the filter
        empties has ``n_cells`` 0, ``sum``/``sumsq``/``nnz`` 0 and every other stat NaN.
        When the filter keeps every group whole or drops it entirely (no filter, a filter
        that keeps every cell, a filter on the grouping's own columns) and the grouping is
        precomputed for the layer, the answer comes from the precomputed views
        (``source: "precomputed"``); otherwise it is computed exactly from the gene-major
        view (``source: "computed"``; ``precomputed=False`` forces that path).

            >>> wc.aggregate("pbmc", genes=["CD3E"], groupby="cell_type", stats=["mean"],
            ...              filter={"donor": ["D1", "D2"]})["source"]  # doctest: +SKIP
            'computed'
        """
        record, snap = self.resolve(dataset, version)
        layer = _layer(snap, dataset, layer)
        idx = _gene_index(snap, dataset, genes)
        quantiles = _quantile_names(snap)
        known = [*SUMMARY_STATS, *quantiles]
        unknown = [s for s in stats if s not in known]
        if unknown:
            raise InvalidQuery(f"unknown stat {unknown[0]!r}; known stats: {', '.join(known)}")
        grouping = _grouping(snap, dataset, groupby)
        spec = canonical_filter(filter)
        mask, kept = _selection(snap, dataset, spec)
        counts = _group_counts(snap, spec, grouping, mask)
        values: dict[str, np.ndarray] | None = None
        if precomputed and bool(np.all((counts == 0) | (counts == grouping.n_cells))):
            try:
                groups, stored = _precomputed(snap, groupby, layer, idx, stats)
            except InvalidQuery:  # this grouping or layer is not precomputed
                groups = []
            if groups == grouping.names:
                values = {s: _drop_groups(s, v, counts == 0) for s, v in stored.items()}
        source = "precomputed" if values is not None else "computed"
        if values is None:
            data = _gene_data(snap, dataset, record.version, idx, layer)
            values = summarize(data, mask, grouping.codes, counts, stats, quantiles=quantiles)
        return {
            "dataset": dataset,
            "version": record.version,
            "groupby": groupby,
            "layer": layer,
            "groups": list(grouping.names),
            "genes": list(genes),
            "values": values,
            "filter": {c: list(v) for c, v in spec},
            "cells": kept,
            "source": source,
        }

    @_serving
    def markers(self, dataset: str, *, groupby: str, group: str, layer: str | None = None,
                limit: int = 100, version: str | None = None) -> dict[str, Any]:  # fmt: skip
        """The top marker genes of one group (one-vs-rest), best first."""
        record, snap = self.resolve(dataset, version)
        layer = layer or _default_layer(snap)
        table = reader(snap, "markers", MarkersReader).table(groupby, layer)
        rows = snap.memo(
            ("markers", groupby, layer), lambda: dict(list(table.groupby("group", observed=True)))
        )
        if group not in rows:
            raise InvalidQuery(f"groupby {groupby!r} of dataset {dataset!r} has no group {group!r}")
        top = rows[group].head(limit)
        columns = ["gene", "logfoldchange", "pct_in", "pct_out", "t", "pval", "pval_adj"]
        return {"dataset": dataset, "version": record.version, "groupby": groupby, "group": group,
                "layer": layer, "markers": top[columns].to_dict(orient="records")}  # fmt: skip

    @_serving
    def gene_stats(self, dataset: str, *, genes: list[str], layer: str | None = None,
                   version: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Per-gene statistics over all cells (mean, var, min, max, dispersion, ...)."""
        record, snap = self.resolve(dataset, version)
        layer = layer or _default_layer(snap)
        table = reader(snap, "genes", GenesReader).table(layer)
        idx = _gene_index(snap, dataset, genes)
        rows = table.iloc[idx]
        return {"dataset": dataset, "version": record.version, "layer": layer, "genes": list(genes),
                "stats": {c: rows[c].to_numpy() for c in rows.columns}}  # fmt: skip

    @_serving
    def cell_stats(self, dataset: str, *, version: str | None = None) -> dict[str, Any]:
        """Per-cell library size and detected genes, in obs order."""
        record, snap = self.resolve(dataset, version)
        obs = snap.table("dataset/obs.parquet")
        return {"dataset": dataset, "version": record.version, "n_cells": len(obs),
                "total_counts": obs["total_counts"].to_numpy(),
                "n_genes_by_counts": obs["n_genes_by_counts"].to_numpy()}  # fmt: skip

    # -- serving: embeddings, admin moves, cache upkeep (used by the API) ----------------

    @_serving
    def embeddings(self, dataset: str, version: str | None = None) -> dict[str, Any]:
        """The embeddings (obsm keys) of a version and what can colour them.

        ``colors`` maps each obs column usable as a colour to ``category`` or ``numeric``;
        ``gene_colors`` says whether genes can colour cells (needs the gene-major view).
        """
        record, snap = self.resolve(dataset, version)
        obs = snap.table("dataset/obs.parquet")
        colors = {str(c): kind for c in obs.columns if (kind := _color_kind(obs[c])) is not None}
        return {
            "dataset": dataset,
            "version": record.version,
            "embeddings": {k: {"shape": list(v["shape"])} for k, v in snap.manifest.get("obsm", {}).items()},
            "colors": colors,
            "gene_colors": _has_matrix(snap),
        }

    @_serving
    def embedding(self, dataset: str, key: str, *, color: str | None = None,
                  version: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Coordinates of embedding ``key`` (one float32 array per dimension, obs order).

        ``color`` names an obs column (categorical: ``codes`` into ``categories``, -1 where
        missing; numeric: ``values``) or, when the version has the gene-major view, a gene
        (``values`` per cell). Obs columns win over genes of the same name.

            >>> wc.embedding("pbmc", "X_umap", color="cell_type")["color"]["categories"][:2]  # doctest: +SKIP
        """
        record, snap = self.resolve(dataset, version)
        entries = snap.manifest.get("obsm", {})
        if key not in entries:
            raise InvalidQuery(f"dataset {dataset!r} has no embedding {key!r}; available: "
                               f"{', '.join(entries) or 'none'}")  # fmt: skip
        coords = snap.memo(("embedding", key), lambda: _columns(snap.array(entries[key]["path"])))
        return {
            "dataset": dataset,
            "version": record.version,
            "key": key,
            "n_cells": snap.n_cells,
            "coordinates": coords,
            "color": None if color is None else self._cell_colors(dataset, record, snap, color),
        }

    def versions(self, dataset: str) -> list[dict[str, Any]]:
        """Every version of ``dataset``, newest first, with status and whether it is live."""
        records = self.catalog.versions(dataset)
        current = next((r.version for r in records if r.status == VersionStatus.PUBLISHED), None)
        return [_version_info(r, current=r.version == current) for r in records]

    def publish(self, dataset: str, version: str) -> dict[str, Any]:
        """Make ``version`` (verified or retired) live; new requests see it at once.

        The version's files are re-checked against its manifest first; a corrupt one is
        refused with a :class:`CatalogError` naming the file (409)."""
        self._require_intact(dataset, version, "publish")
        return _version_info(self.catalog.publish(dataset, version), current=True)

    def rollback(self, dataset: str, to: str | None = None) -> dict[str, Any]:
        """Make ``to`` (default: the version live before the current one) live again, after
        re-checking its files like :meth:`publish`."""
        target = to if to is not None else self._rollback_target(dataset)
        if target is not None:
            self._require_intact(dataset, target, "roll back to")
        return _version_info(self.catalog.rollback(dataset, target), current=True)

    def verify(self, dataset: str, version: str | None = None) -> dict[str, Any]:
        """Re-check every file of a version (default: the live one) against its manifest
        sha256, and its decoded cache files against theirs.

        Returns ``{"dataset", "version", "ok", "files", "cache"}``: ``files`` are the snapshot
        files at fault, ``cache`` the decoded cache files that were (they are removed, so the
        next read decodes them again from the snapshot); both relative, ``{"file",
        "problem"}``. A corrupt snapshot is taken out of service; one that passes is put back.

            >>> wc.verify("pbmc")["ok"]  # doctest: +SKIP
            True
        """
        catalog = self.catalog
        record = catalog.current(dataset) if version is None else catalog.get_version(dataset, version)
        if record.path is None:
            raise VersionNotFound(f"version {record.version} of dataset {dataset!r} is {record.status}: "
                                  "it has no snapshot to verify")  # fmt: skip
        try:
            snap = self._snapshot(record)
        except SnapshotCorrupt as exc:  # its manifest cannot be read
            files, cache = [Fault(f, "cannot be read") for f in exc.files], []
        else:
            files = snap.check()
            cache = snap.check_cache(repair=True)
        with self._lock:
            if files:
                self._corrupt[record.version] = corrupt(dataset, record.version, files)
            else:
                self._corrupt.pop(record.version, None)
                self._failed.discard(record.version)
        return {"dataset": dataset, "version": record.version, "ok": not files and not cache,
                "files": [_fault(f) for f in files], "cache": [_fault(f) for f in cache]}  # fmt: skip

    def _require_intact(self, dataset: str, version: str, action: str) -> None:
        record = self.catalog.get_version(dataset, version)
        if record.path is None:
            return  # the catalog refuses a version without a snapshot with its own message
        try:
            faults = self._snapshot(record).check()
        except SnapshotCorrupt as exc:
            raise CatalogError(f"cannot {action} version {version} of dataset {dataset!r}: "
                               f"file {exc.files[0]} cannot be read") from exc  # fmt: skip
        if faults:
            self._mark_corrupt(corrupt(dataset, version, faults))
            more = f" (and {len(faults) - 1} more files)" if len(faults) > 1 else ""
            raise CatalogError(f"cannot {action} version {version} of dataset {dataset!r}: file "
                               f"{faults[0].file} {faults[0].problem}{more}")  # fmt: skip
        with self._lock:
            self._corrupt.pop(version, None)
            self._failed.discard(version)

    def _rollback_target(self, dataset: str) -> str | None:
        """The version :meth:`Catalog.rollback` would pick (the newest retired one older than
        the live one), or None to let the catalog refuse with its own message."""
        records = self.catalog.versions(dataset)  # newest first
        live = next((i for i, r in enumerate(records) if r.status == VersionStatus.PUBLISHED), None)
        if live is None:
            return None
        return next((r.version for r in records[live + 1 :] if r.status == VersionStatus.RETIRED), None)

    def _mark_corrupt(self, exc: SnapshotCorrupt) -> None:
        with self._lock:
            self._corrupt[exc.version] = exc

    def _first_failure(self, version: str) -> bool:
        """True the first time an unexpected read error hits ``version`` in this process."""
        with self._lock:
            if version in self._failed:
                return False
            self._failed.add(version)
            return True

    def live_versions(self) -> dict[str, str]:
        """``{version: dataset}`` of every dataset's published version (one catalog read)."""
        return {d.current.version: d.name for d in self.catalog.datasets() if d.current is not None}

    def opened_versions(self) -> list[str]:
        """Versions whose snapshots this process holds open, least recently used first."""
        with self._lock:
            return list(self._open)

    @_serving
    def warm(self, dataset: str, version: str | None = None) -> str:
        """Decode every grouped array of a version (each view, grouping and layer) and the
        gene-major matrix into the cache now, so that no query after a publish pays for it."""
        _, snap = self.resolve(dataset, version)
        first = np.zeros(1, dtype=np.intp)
        for view in views():
            served = [s for s in view.served(snap) if s != "n_cells"]
            layers = snap.manifest.get("views", {}).get(view.name, {}).get("layers", {})
            if not served or not isinstance(layers, dict):
                continue
            for layer, groupbys in layers.items():
                for groupby in groupbys:
                    view.query(snap, groupby, layer, first, served)
        if _has_matrix(snap):  # decode X (once, for every worker) and compile the filter kernel
            groupbys = snap.manifest["parameters"].get("groupbys") or []
            if snap.n_genes and groupbys:
                self.aggregate(dataset, genes=[str(snap.var_names[0])], groupby=groupbys[0],
                               stats=["mean", *_quantile_names(snap)][:2], precomputed=False,
                               version=snap.version)  # fmt: skip
        _ = snap.var_names
        return snap.version

    def evict(self, version: str) -> bool:
        """Forget an opened version and delete its decoded cache; True if anything went.

        Requests still running on it keep their snapshot object and memory maps (an
        unlinked file stays readable while mapped); a later request re-opens it. The folder
        is renamed away before it is deleted, so no reader ever sees it half-removed.
        """
        with self._lock:
            dropped = self._open.pop(version, None) is not None
        return self._remove_cache(version) or dropped

    def sweep_cache(self, keep: set[str], older_than: float) -> list[str]:
        """Delete cache folders of versions not in ``keep`` untouched for ``older_than`` s.

        Catches folders left by other processes or earlier runs (several workers share the
        cache; each only evicts what it opened).
        """
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

    @_serving
    def gene_values(self, dataset: str, gene: str, *, layer: str | None = None,
                    version: str | None = None) -> tuple[str, np.ndarray]:  # fmt: skip
        """(version, one float32 value per cell in obs order) of ``gene``, read from the
        gene-major view: one contiguous range of its CSC arrays, zeros filled in."""
        record, snap = self.resolve(dataset, version)
        layer = _layer(snap, dataset, layer)
        data = _gene_data(snap, dataset, record.version, _gene_index(snap, dataset, [gene]), layer)
        return record.version, expression(data, None, snap.n_cells)[0]

    def _cell_colors(self, dataset: str, record: VersionRecord, snap: Snapshot,
                     color: str) -> dict[str, Any]:  # fmt: skip
        obs = snap.table("dataset/obs.parquet")
        if color in obs.columns:
            kind = _color_kind(obs[color])
            if kind is None:
                raise InvalidQuery(f"obs column {color!r} of dataset {dataset!r} is neither "
                                   "categorical nor numeric, so it cannot colour cells")  # fmt: skip
            return snap.memo(("obs-color", color), lambda: _obs_color(obs[color], kind))
        if color in snap.var_names:
            if not _has_matrix(snap):
                raise InvalidQuery(
                    f"colouring by gene {color!r} needs the gene-major view, which "
                    f"version {record.version} of dataset {dataset!r} does not have"
                )
            _, values = self.gene_values(dataset, color, version=record.version)
            return {"name": color, "kind": "gene", "values": np.ascontiguousarray(values, np.float32)}
        raise InvalidQuery(f"dataset {dataset!r} has no obs column or gene {color!r}")


def _default_layer(snap: Snapshot) -> str:
    return str(snap.manifest.get("default_layer", "raw"))


def _layer(snap: Snapshot, dataset: str, layer: str | None) -> str:
    layer = layer or _default_layer(snap)
    layers = snap.manifest.get("layers", ["raw"])
    if layer not in layers:
        raise InvalidQuery(f"dataset {dataset!r} has no layer {layer!r}; available: {', '.join(layers)}")
    return layer


def _precomputed(snap: Snapshot, groupby: str, layer: str, idx: np.ndarray,
                 stats: list[str]) -> tuple[list[str], dict[str, np.ndarray]]:  # fmt: skip
    """(groups, {stat: (n_groups, n_genes)}) from the views that serve each stat."""
    served = {stat: view for view in views() for stat in view.served(snap)}
    unknown = [s for s in stats if s not in served]
    if unknown:
        raise InvalidQuery(f"unknown stat {unknown[0]!r}; known stats: {', '.join(served)}")
    groups: list[str] = []
    values: dict[str, np.ndarray] = {}
    for view in dict.fromkeys(served[s] for s in stats):
        asked = [s for s in stats if served[s] is view]
        groups, got = view.query(snap, groupby, layer, idx, asked)
        values.update(got)
    return groups, {s: values[s] for s in stats}


_ADDITIVE = frozenset({"sum", "sumsq", "nnz", "n_cells"})


def _drop_groups(stat: str, values: np.ndarray, dropped: np.ndarray) -> np.ndarray:
    """``values`` with the rows of groups that lost every cell: 0 for counts and sums, else NaN."""
    if not dropped.any():
        return values
    out = np.array(values, dtype=np.float64)
    out[dropped] = 0.0 if stat in _ADDITIVE else np.nan
    return out


def _has_matrix(snap: Snapshot) -> bool:
    return has_view(snap, "matrix")


def _gene_data(snap: Snapshot, dataset: str, version: str, idx: np.ndarray, layer: str) -> GeneData:
    """The queried genes in the gene-major view's decoded, memory-mapped CSC arrays."""
    if not _has_matrix(snap):
        raise InvalidQuery(f"version {version} of dataset {dataset!r} has no gene-major view, "
                           "which per-cell values and filtered aggregates need")  # fmt: skip
    indptr, indices, data = reader(snap, "matrix", MatrixReader).csc()
    scale = None if layer == "raw" else snap.memo("cell-scale", lambda: _cell_scale(snap))
    return GeneData(idx, indptr, indices, data, scale)


def _cell_scale(snap: Snapshot) -> np.ndarray:
    """Per cell ``target_sum / library size`` (0 for an empty cell), as the ingest computes it."""
    total = snap.table("dataset/obs.parquet")["total_counts"].to_numpy(dtype=np.float64)
    return cell_scale(total, reader(snap, "matrix", MatrixReader).target_sum)


def _quantile_names(snap: Snapshot) -> dict[str, float]:
    """``{"median": 0.5, "q10": 0.1, …}`` of the version's quantiles view (empty without one)."""
    return reader(snap, "quantiles", QuantilesReader).levels() if has_view(snap, "quantiles") else {}


class _Recent:
    """A small least-recently-used map (filter masks, groupings), safe across threads."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: Any, factory: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = factory()  # outside the lock: a slow factory does not hold up other keys
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


def _recent(snap: Snapshot) -> _Recent:
    recent: _Recent = snap.memo("recent-queries", lambda: _Recent(64))
    return recent


def _obs_columns(snap: Snapshot) -> dict[str, Column]:
    def build() -> dict[str, Column]:
        obs = snap.table("dataset/obs.parquet")
        return {str(c): Column(obs[c].cat.codes.to_numpy(), [str(x) for x in obs[c].cat.categories])
                for c in obs.columns if isinstance(obs[c].dtype, pd.CategoricalDtype)}  # fmt: skip

    columns: dict[str, Column] = snap.memo("obs-codes", build)
    return columns


def _selection(
    snap: Snapshot, dataset: str, spec: tuple[tuple[str, tuple[str, ...]], ...]
) -> tuple[np.ndarray | None, int]:
    """(mask of the kept cells, or None for all; how many), memoized per (version, filter)."""
    if not spec:
        return None, snap.n_cells

    def build() -> tuple[np.ndarray | None, int]:
        mask = cell_mask(_obs_columns(snap), dict(spec), dataset=dataset, n_cells=snap.n_cells)
        return mask, snap.n_cells if mask is None else int(np.count_nonzero(mask))

    found: tuple[np.ndarray | None, int] = _recent(snap).get(("mask", spec), build)
    return found


def _grouping(snap: Snapshot, dataset: str, groupby: str) -> Grouping:
    def build() -> Grouping:
        if groupby == snap.manifest["parameters"].get("all_cells_groupby"):  # input without groupings
            return all_cells(snap.n_cells, groupby, ALL_CELLS_GROUP)
        try:
            return make_grouping(snap.table("dataset/obs.parquet"), groupby)
        except UnknownGrouping as exc:
            raise InvalidQuery(f"dataset {dataset!r}: {exc}") from exc

    grouping: Grouping = _recent(snap).get(("grouping", groupby), build)
    return grouping


def _group_counts(snap: Snapshot, spec: tuple[tuple[str, tuple[str, ...]], ...], grouping: Grouping,
                  mask: np.ndarray | None) -> np.ndarray:  # fmt: skip
    """Kept cells per group (int64)."""
    if mask is None:
        return grouping.n_cells.astype(np.int64)
    counts: np.ndarray = _recent(snap).get(("counts", spec, grouping.key), lambda: np.bincount(
        grouping.codes[mask], minlength=grouping.n_groups).astype(np.int64))  # fmt: skip
    return counts


def _gene_index(snap: Snapshot, dataset: str, genes: list[str]) -> np.ndarray:
    # a dict beats pandas' get_indexer ~10x for the tens of genes of a query (profiled: 12 %
    # of a summary request's CPU went to get_indexer)
    positions: dict[str, int] = snap.memo(
        "gene-positions", lambda: {str(g): i for i, g in enumerate(snap.var_names)}
    )
    idx = np.fromiter((positions.get(g, -1) for g in genes), dtype=np.int64, count=len(genes))
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


_VERSION_ID = re.compile(r"^[0-9a-f]{32}$")


def _columns(coords: np.ndarray) -> list[np.ndarray]:
    """An (n, d) embedding as d contiguous float32 columns (JSON and Arrow want columns)."""
    return [np.ascontiguousarray(coords[:, i], dtype=np.float32) for i in range(coords.shape[1])]


def _color_kind(column: pd.Series) -> str | None:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype):
        return "numeric"
    return None


def _obs_color(column: pd.Series, kind: str) -> dict[str, Any]:
    if kind == "category":
        cats = column.cat.categories
        dtype = np.int8 if len(cats) < 127 else np.int16 if len(cats) < 32767 else np.int32
        return {"name": str(column.name), "kind": kind, "categories": [str(c) for c in cats],
                "codes": column.cat.codes.to_numpy().astype(dtype)}  # fmt: skip
    return {"name": str(column.name), "kind": kind, "values": column.to_numpy(dtype=np.float32)}


def _fault(f: Fault) -> dict[str, str]:
    return {"file": f.file, "problem": f.problem}


def _version_info(r: VersionRecord, *, current: bool) -> dict[str, Any]:
    return {"version": r.version, "status": str(r.status), "created": r.created, "n_cells": r.n_cells,
            "n_genes": r.n_genes, "reason": r.reason, "current": current}  # fmt: skip
