"""The summary view: per (group, gene) statistics for every grouping and layer.

Stored per grouping and layer as ``views/summary/<groupby>[.<layer>].zarr``, an AnnData
(Zarr v3) with groups as obs (with ``n_cells``), genes as var and one layer per statistic,
like the result of ``scanpy.get.aggregate``::

    >>> a = anndata.read_zarr(f"{snapshot}/views/summary/cell_type.zarr")   # doctest: +SKIP
    >>> a.layers["mean"][a.obs_names.get_loc("B cell"), a.var_names.get_loc("MS4A1")]

``sum``, ``sumsq`` (float64) and ``nnz`` are exact and combine over any union of groups;
``mean``, ``var`` (ddof=1), ``frac_expressing`` and ``mean_expressing`` derive from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from ..compute import BASE_STATS, DERIVED_STATS, SUMMARY_STATS, derive
from ..errors import VerificationError
from ..snapshot import Snapshot, SnapshotWriter, zarr_array, zarr_group
from ._layout import create_grouped, entry_for, group_table, relpath
from ._registry import ViewSpec, reader, register_read, register_view
from ._spec import BuildContext, Builder, Put, SlabPart, SlabStats, ViewReader
from .genes import GenesReader

__all__ = [
    "BASE_STATS",
    "DERIVED_STATS",
    "ENCODING",
    "SUMMARY",
    "SUMMARY_STATS",
    "SummaryBuilder",
    "SummaryPart",
    "SummaryReader",
    "derive",
]

ENCODING = ("widecube-summary", "0.2.0")
"""What this code writes; its reader stays registered when a later encoding replaces it."""

_LAYERS = {
    "sum": np.float64,
    "sumsq": np.float64,
    "nnz": np.int32,
    **dict.fromkeys(DERIVED_STATS, np.float32),
}


_NEEDS: dict[str, set[str]] = {
    "sum": {"sum"},
    "sumsq": {"sumsq"},
    "nnz": {"nnz"},
    "n_cells": {"sum"},
    "mean": {"sum"},
    "var": {"sum", "sumsq"},
    "frac_expressing": {"nnz"},
    "mean_expressing": {"sum", "nnz"},
}
"""The stored moments each statistic is derived from (a query reads only those)."""


@dataclass(frozen=True, slots=True)
class _GroupsKey:
    """The snapshot memo's key for a summary's group names and sizes at ``path``."""

    path: str


def _groups(snap: Snapshot, path: str) -> tuple[tuple[str, ...], np.ndarray]:
    """A grouped view's group names and cell counts (a column), read once per snapshot."""
    table = group_table(snap, path)
    return tuple(str(g) for g in table.index), table["n_cells"].to_numpy()[:, None]


@dataclass(frozen=True)
class SummaryPart(SlabPart):
    """Writes one slab's moments and derived statistics into every (layer, grouping)."""

    arrays: dict[tuple[str, str], dict[str, zarr.Array[Any]]]

    def run(self, stats: SlabStats, put: Put) -> None:
        ctx = stats.ctx
        lo, hi = stats.slab.lo, stats.slab.hi
        for (layer, key), arrays in self.arrays.items():
            s, sq, nnz = stats.moments(layer).of(ctx, key)
            n = ctx.grouping(key).n_cells[:, None]
            region = (slice(None), slice(lo, hi))
            put(arrays["sum"], region, np.ascontiguousarray(s))
            put(arrays["sumsq"], region, np.ascontiguousarray(sq))
            put(arrays["nnz"], region, np.ascontiguousarray(nnz))
            for stat in DERIVED_STATS:
                put(arrays[stat], region, derive(stat, n, s, sq, nnz).astype(np.float32))


class SummaryBuilder(Builder):
    """Fills one AnnData per (layer, grouping) with each slab's moments and derived stats."""

    def __init__(self, ctx: BuildContext, out: SnapshotWriter) -> None:
        super().__init__(ctx, out)
        self._arrays: dict[tuple[str, str], dict[str, zarr.Array[Any]]] = {}
        for layer in ctx.layers:
            for key in ctx.groupbys:
                self._arrays[layer, key] = create_grouped(
                    out,
                    ctx,
                    relpath(SUMMARY.name, key, layer),
                    ctx.grouping(key),
                    _LAYERS,
                    uns={"groupby": key, "layer": layer},
                )

    def part(self) -> SummaryPart:
        return SummaryPart(self._arrays)

    def finish(self) -> dict[str, Any]:
        ctx = self.ctx
        layers: dict[str, dict[str, object]] = {}
        for layer, key in self._arrays:
            path = relpath(SUMMARY.name, key, layer)
            layers.setdefault(layer, {})[key] = {"path": path, "n_groups": ctx.grouping(key).n_groups}
        return {"groupbys": list(ctx.groupbys), "layers": layers, "stats": list(SUMMARY_STATS)}


@register_read("summary", *ENCODING)
class SummaryReader(ViewReader):
    """``groupbys``, ``stats``, ``layers: {layer: {groupby: {"path", "n_groups"}}}``: an
    AnnData of groups (obs, with ``n_cells``) × genes, one layer per stored statistic."""

    def verify(self) -> None:
        snap = self.snap
        genes = reader(snap, "genes", GenesReader)
        for layer, groupbys in self.entry["layers"].items():
            totals = genes.table(layer)
            gene_sum = totals["sum"].to_numpy()
            gene_nnz = totals["n_cells_expressing"].to_numpy()
            for key, entry in groupbys.items():
                group = snap.group(entry["path"])
                n_cells = np.asarray(zarr_array(zarr_group(group, "obs"), "n_cells")[...])
                where = self.where(key, layer)
                if int(n_cells.sum()) != snap.n_cells:
                    raise VerificationError(
                        f"{where}: n_cells over groups is {int(n_cells.sum())}, expected {snap.n_cells}"
                    )
                s = np.asarray(zarr_array(zarr_group(group, "layers"), "sum")[...]).sum(axis=0)
                nnz = np.asarray(zarr_array(zarr_group(group, "layers"), "nnz")[...]).sum(axis=0)
                bad = ~np.isclose(s, gene_sum, rtol=1e-9, atol=1e-9)
                if bad.any():
                    j = int(np.argmax(bad))
                    raise VerificationError(
                        f"{where}: sum over groups of gene {snap.var_names[j]!r} is {s[j]}, "
                        f"but the gene's total is {gene_sum[j]}"
                    )
                if not np.array_equal(nnz, gene_nnz):
                    j = int(np.argmax(nnz != gene_nnz))
                    raise VerificationError(
                        f"{where}: nnz over groups of gene {snap.var_names[j]!r} is {nnz[j]}, "
                        f"expected {gene_nnz[j]}"
                    )

    def served(self) -> list[str]:
        return list(SUMMARY_STATS)

    def query(
        self, groupby: str, layer: str, gene_idx: np.ndarray, stats: Sequence[str]
    ) -> tuple[list[str], dict[str, np.ndarray]]:
        snap = self.snap
        path = str(entry_for(snap, self.entry, groupby, layer)["path"])
        groups, n = snap.memo(_GroupsKey(path), lambda: _groups(snap, path))
        needed = set().union(*(_NEEDS.get(stat, set(BASE_STATS)) for stat in stats))
        base = {k: snap.array(f"{path}/layers/{k}")[:, gene_idx] if k in needed else None for k in BASE_STATS}
        values = {
            stat: np.ascontiguousarray(derive(stat, n, base["sum"], base["sumsq"], base["nnz"]))  # type: ignore[arg-type]
            for stat in stats
        }
        return list(groups), values

    def describe(self) -> dict[str, Any]:
        entry = self.entry
        return {"groupbys": entry["groupbys"], "layers": list(entry["layers"]), "stats": entry["stats"]}


SUMMARY = register_view(
    ViewSpec("summary", *ENCODING, SummaryBuilder, requires=("genes",), stats=lambda _: list(SUMMARY_STATS))
)
"""Requires the genes view: its verifier checks every grouping against the per-gene totals."""
