"""What the queries derive once per opened snapshot: one typed :class:`SnapshotIndex`.

Decoded tables and lookups (sorted gene names, gene positions, obs codes, cell scale factors,
marker tables by group, embeddings, obs colours) and a small LRU of recent cell selections,
groupings and group counts. One index per :class:`~widecube.snapshot.Snapshot` object, kept
in the snapshot's memo under the class itself, so it lives and dies with the opened version
(an immutable snapshot never invalidates it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from ..compute import ALL_CELLS_GROUP, Grouping, all_cells, cell_scale, make_grouping
from ..errors import InvalidQuery, UnknownGrouping
from ..genenames import GeneNames
from ..snapshot import Snapshot
from ..views import INPUT, LEGACY_RAW, layer_kind, layer_unit, withheld_stats
from . import _views
from .aggregate import Column, GeneData, cell_mask
from .results import CellColor
from .selection import Selection, in_polygon, range_mask

__all__ = ["SnapshotIndex", "index_of"]

T = TypeVar("T")


class _Recent:
    """A small least-recently-used map (filter masks, groupings), safe across threads."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: Any, factory: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]  # type: ignore[no-any-return]
        value = factory()  # outside the lock: a slow factory does not hold up other keys
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


class SnapshotIndex:
    """Lookups of one opened snapshot, each computed on first use (one lock per snapshot,
    re-entrant: one lookup may build on another)."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self._lock = threading.RLock()
        self._built: dict[str, Any] = {}
        self._markers: dict[tuple[str, str], dict[str, pd.DataFrame]] = {}
        self._colors: dict[str, CellColor] = {}
        self._embeddings: dict[str, list[np.ndarray]] = {}
        self._recent = _Recent(64)

    def _once(self, name: str, factory: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._built:
                self._built[name] = factory()
            return self._built[name]  # type: ignore[no-any-return]

    # -- whole-snapshot lookups -----------------------------------------------------------

    @property
    def obs(self) -> pd.DataFrame:
        return self.snap.table("dataset/obs.parquet")

    @property
    def categories(self) -> dict[str, dict[str, list[Any]]]:
        """``{obs column: {"categories", "counts"}}`` of every categorical obs column."""
        return self._once("categories", lambda: _categories(self.obs))

    @property
    def sorted_genes(self) -> tuple[np.ndarray, np.ndarray]:
        """(gene names, lower-cased names) sorted case-insensitively, for prefix search."""
        return self._once("sorted_genes", lambda: _sorted_names(self.snap.var_names))

    @property
    def gene_names(self) -> GeneNames:
        """Symbols and ``gene_ids`` of the version, for resolving typed names."""

        def build() -> GeneNames:
            var = self.snap.table("dataset/var.parquet")
            ids = var["gene_ids"].astype(str).tolist() if "gene_ids" in var.columns else None
            return GeneNames([str(n) for n in var.index], ids)

        return self._once("gene_names", build)

    @property
    def gene_positions(self) -> dict[str, int]:
        # a dict beats pandas' get_indexer ~10x for the tens of genes of a query (profiled: 12 %
        # of a summary request's CPU went to get_indexer)
        return self._once("gene_positions", lambda: {str(g): i for i, g in enumerate(self.snap.var_names)})

    @property
    def obs_columns(self) -> dict[str, Column]:
        """Codes and categories of every categorical obs column (what filters select on)."""

        def build() -> dict[str, Column]:
            obs = self.obs
            return {
                str(c): Column(obs[c].cat.codes.to_numpy(), [str(x) for x in obs[c].cat.categories])
                for c in obs.columns
                if isinstance(obs[c].dtype, pd.CategoricalDtype)
            }

        return self._once("obs_columns", build)

    @property
    def cell_scale(self) -> np.ndarray:
        """Per cell ``target_sum / library size`` (0 for an empty cell), as the ingest computes it."""

        def build() -> np.ndarray:
            total = self.obs["total_counts"].to_numpy(dtype=np.float64)
            return cell_scale(total, _views.matrix_target_sum(self.snap))

        return self._once("cell_scale", build)

    # -- keyed lookups --------------------------------------------------------------------

    def marker_rows(
        self, groupby: str, layer: str, table: Callable[[], pd.DataFrame]
    ) -> dict[str, pd.DataFrame]:
        """The markers table of ``(groupby, layer)`` split by group (``table`` reads it)."""
        with self._lock:
            key = (groupby, layer)
            if key not in self._markers:
                self._markers[key] = dict(list(table().groupby("group", observed=True)))
            return self._markers[key]

    def obs_color(self, column: str, build: Callable[[], CellColor]) -> CellColor:
        with self._lock:
            if column not in self._colors:
                self._colors[column] = build()
            return self._colors[column]

    def embedding(self, key: str, path: str) -> list[np.ndarray]:
        """Embedding ``key`` (stored at ``path``) as contiguous float32 columns."""
        with self._lock:
            if key not in self._embeddings:
                coords = self.snap.array(path)
                self._embeddings[key] = [
                    np.ascontiguousarray(coords[:, i], dtype=np.float32) for i in range(coords.shape[1])
                ]
            return self._embeddings[key]

    # -- recent selections (LRU) ----------------------------------------------------------

    def selection(self, dataset: str, spec: Selection) -> tuple[np.ndarray | None, int]:
        """(mask of the kept cells, or None for all; how many), remembered per selection."""
        snap = self.snap
        if not spec:
            return None, snap.n_cells

        def build() -> tuple[np.ndarray | None, int]:
            mask = self._mask(dataset, spec)
            return mask, int(np.count_nonzero(mask))

        return self._recent.get(("mask", spec), build)

    def _mask(self, dataset: str, spec: Selection) -> np.ndarray:
        n = self.snap.n_cells
        mask = np.ones(n, dtype=bool)
        if spec.categories:
            found = cell_mask(self.obs_columns, spec.categories, dataset=dataset, n_cells=n)
            if found is not None:
                mask &= found
        for column, bounds in spec.ranges.items():
            mask &= range_mask(self.numeric(dataset, column), bounds)
        if spec.lasso is not None:
            x, y = self.coordinates(dataset, spec.lasso.embedding)[:2]
            mask &= in_polygon(x, y, spec.lasso.polygon)
        if spec.group is not None:
            groupby, name = spec.group
            grouping = self.grouping(dataset, groupby)
            if name not in grouping.names:
                raise InvalidQuery(f"groupby {groupby!r} of dataset {dataset!r} has no group {name!r}")
            mask &= grouping.codes == grouping.names.index(name)
        if spec.indices is not None:
            wanted = spec.indices  # sorted: the ends say whether all are in range
            if wanted and (wanted[0] < 0 or wanted[-1] >= n):  # before numpy, which overflows past int64
                bad = wanted[0] if wanted[0] < 0 else wanted[-1]
                raise InvalidQuery(
                    f"dataset {dataset!r} has {n} cells (indices 0–{n - 1}); index {bad} is outside"
                )
            chosen = np.zeros(n, dtype=bool)
            chosen[np.asarray(wanted, dtype=np.int64)] = True  # k writes, not a search of all n
            mask &= chosen
        if spec.cells is not None:
            positions = self.cell_positions
            found_at = np.fromiter((positions.get(c, -1) for c in spec.cells), np.int64, len(spec.cells))
            if (found_at < 0).any():
                missing = [c for c, i in zip(spec.cells, found_at, strict=True) if i < 0]
                raise InvalidQuery(
                    f"dataset {dataset!r} has no cell {missing[0]!r}"
                    + (f" (and {len(missing) - 1} more unknown)" if len(missing) > 1 else "")
                )
            keep = np.zeros(n, dtype=bool)
            keep[found_at] = True
            mask &= keep
        return mask

    @property
    def cell_positions(self) -> dict[str, int]:
        """Obs name (cell id) → obs position."""
        return self._once("cell_positions", lambda: {str(c): i for i, c in enumerate(self.obs.index)})

    @property
    def numeric_columns(self) -> dict[str, dict[str, float | None]]:
        """``{obs column: {"min", "max"}}`` of every numeric (or boolean) obs column."""

        def build() -> dict[str, dict[str, float | None]]:
            obs, out = self.obs, {}
            for c in obs.columns:
                column = obs[c]
                if isinstance(column.dtype, pd.CategoricalDtype) or not (
                    pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype)
                ):
                    continue
                values = column.to_numpy(dtype=np.float64, na_value=np.nan)
                finite = values[np.isfinite(values)]
                lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (None, None)
                out[str(c)] = {"min": lo, "max": hi}
            return out

        return self._once("numeric_columns", build)

    def numeric(self, dataset: str, column: str) -> np.ndarray:
        """The float64 values of numeric obs column ``column`` (NaN where missing)."""
        if column not in self.numeric_columns:
            kind = (
                "categorical (filter it by a list of categories)"
                if column in self.obs_columns
                else "not in obs"
            )
            raise InvalidQuery(
                f"obs column {column!r} of dataset {dataset!r} is {kind}; numeric columns: "
                f"{', '.join(self.numeric_columns) or 'none'}"
            )
        return self._recent.get(
            ("numeric", column), lambda: self.obs[column].to_numpy(dtype=np.float64, na_value=np.nan)
        )

    def coordinates(self, dataset: str, key: str) -> list[np.ndarray]:
        """Embedding ``key`` as float32 columns; an unknown key is refused by name."""
        entries = self.snap.manifest.get("obsm", {})
        if key not in entries:
            raise InvalidQuery(
                f"dataset {dataset!r} has no embedding {key!r}; available: {', '.join(entries) or 'none'}"
            )
        return self.embedding(key, entries[key]["path"])

    def grouping(self, dataset: str, groupby: str) -> Grouping:
        """The grouping of all cells by ``groupby`` (the all-cells one for input without any)."""
        snap = self.snap

        def build() -> Grouping:
            if groupby == snap.manifest["parameters"].get("all_cells_groupby"):  # input without groupings
                return all_cells(snap.n_cells, groupby, ALL_CELLS_GROUP)
            try:
                return make_grouping(self.obs, groupby)
            except UnknownGrouping as exc:
                raise InvalidQuery(f"dataset {dataset!r}: {exc}") from exc

        return self._recent.get(("grouping", groupby), build)

    def group_counts(self, spec: Selection, grouping: Grouping, mask: np.ndarray | None) -> np.ndarray:
        """Kept cells per group (int64)."""
        if mask is None:
            return grouping.n_cells.astype(np.int64)
        return self._recent.get(
            ("counts", spec, grouping.key),
            lambda: np.bincount(grouping.codes[mask], minlength=grouping.n_groups).astype(np.int64),
        )

    # -- checks every query makes ---------------------------------------------------------

    @property
    def default_layer(self) -> str:
        return str(self.snap.manifest.get("default_layer", INPUT))

    def layer(self, dataset: str, layer: str | None) -> str:
        """``layer`` (default: the dataset's), refused by name if the version lacks it (``raw``
        with the name it has now)."""
        layer = layer or self.default_layer
        layers = self.snap.manifest.get("layers", [INPUT])
        if layer not in layers:
            renamed = (
                f" (the values as given are layer {INPUT!r}; 'raw' would be AnnData's raw.X)"
                if layer == LEGACY_RAW
                else ""
            )
            raise InvalidQuery(
                f"dataset {dataset!r} has no layer {layer!r}{renamed}; available: {', '.join(layers)}"
            )
        return layer

    @property
    def input_kind(self) -> str | None:
        """counts, log1p or scaled: what the version's input held (None: unknown)."""
        return self._once("input_kind", lambda: _views.input_kind(self.snap))

    def unit(self, layer: str) -> str:
        """The unit of ``layer``'s values, for every scale that shows them."""
        target = float(self.snap.manifest.get("parameters", {}).get("target_sum") or 1e4)
        return layer_unit(self.input_kind, layer, target)

    def withheld(self, layer: str) -> dict[str, str]:
        """``{stat or marker field: why}`` of what is not defined on ``layer`` (scaled values)."""
        return withheld_stats(self.input_kind, layer)

    def layers(self) -> list[dict[str, Any]]:
        """Every layer of the version: ``name``, ``kind`` (counts, log1p, scaled) and ``unit``."""
        return [
            {"name": name, "kind": layer_kind(self.input_kind, name), "unit": self.unit(name)}
            for name in self.snap.manifest.get("layers", [INPUT])
        ]

    def gene_index(self, dataset: str, genes: list[str]) -> np.ndarray:
        """Positions of ``genes`` in var order; an unknown gene is refused by name."""
        positions = self.gene_positions
        idx = np.fromiter((positions.get(g, -1) for g in genes), dtype=np.int64, count=len(genes))
        if (idx < 0).any():
            missing = [g for g, i in zip(genes, idx, strict=True) if i < 0]
            raise InvalidQuery(
                f"dataset {dataset!r} has no gene {missing[0]!r}"
                + (f" (and {len(missing) - 1} more unknown)" if len(missing) > 1 else "")
            )
        return np.asarray(idx)

    @property
    def has_matrix(self) -> bool:
        """Whether the version has the gene-major view (per-cell values, filtered aggregates)."""
        return _views.has_matrix(self.snap)

    @property
    def quantile_names(self) -> dict[str, float]:
        """``{"median": 0.5, "q10": 0.1, …}`` of the version's quantiles view (empty without one)."""
        return self._once("quantile_names", lambda: _views.quantile_levels(self.snap))

    def gene_data(self, dataset: str, version: str, idx: np.ndarray, layer: str) -> GeneData:
        """The queried genes in the gene-major view's decoded, memory-mapped CSC arrays."""
        snap = self.snap
        if not self.has_matrix:
            raise _views.require(snap, "matrix", "per-cell values and filtered aggregates read it")
        indptr, indices, data = _views.matrix_csc(snap)
        scale = None if layer == INPUT else self.cell_scale
        return GeneData(idx, indptr, indices, data, scale)


def index_of(snap: Snapshot) -> SnapshotIndex:
    """The snapshot's index (made on first use)."""
    return snap.memo(SnapshotIndex, lambda: SnapshotIndex(snap))


def _categories(obs: pd.DataFrame) -> dict[str, dict[str, list[Any]]]:
    out: dict[str, dict[str, list[Any]]] = {}
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
