"""The quantiles view: exact per-group median and quantiles, implicit zeros included.

Computed from the gene-major slabs: every gene's stored values are bucketed by group and
only the order statistics the quantiles need are selected (none for a quantile among the
zeros, which are counted, not stored). Values equal
``numpy.quantile(column_of_the_group, q, method="linear")``. Stored per grouping and layer as
``views/quantiles/<groupby>[.<layer>].zarr`` (AnnData: groups × genes, one layer per quantile:
``median``, ``q10``, ``q25``, ``q75``, ``q90`` by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from ..compute import gene_quantiles
from ..errors import VerificationError
from ..snapshot import SnapshotWriter, zarr_array, zarr_group
from ._layout import create_grouped, entry_for, group_table, relpath
from ._registry import ViewSpec, register_read, register_view
from ._spec import INPUT, BuildContext, Builder, Put, SlabPart, SlabStats, ViewReader

__all__ = ["ENCODING", "QUANTILES", "QuantilesBuilder", "QuantilesPart", "QuantilesReader", "quantile_name"]

ENCODING = ("widecube-quantiles", "0.1.0")
"""What this code writes; its reader stays registered when a later encoding replaces it."""


def quantile_name(q: float) -> str:
    """0.5 → ``median``, 0.25 → ``q25``, 0.025 → ``q2.5``."""
    if q == 0.5:
        return "median"
    return f"q{100 * q:g}"


@dataclass(frozen=True)
class QuantilesPart(SlabPart):
    """Writes the quantiles of one slab's genes into every (layer, grouping)."""

    arrays: dict[tuple[str, str], dict[str, zarr.Array[Any]]]
    names: tuple[str, ...]

    def run(self, stats: SlabStats, put: Put) -> None:
        ctx, slab = stats.ctx, stats.slab
        keys = list(ctx.groupbys)
        if not keys:  # nothing to store (the pipeline always gives at least one grouping)
            return
        offsets = np.cumsum([0] + [ctx.grouping(k).n_groups for k in keys])
        codes = ctx.stacked[2][: len(keys)]  # the groupings come first on the stacked axis
        sizes = np.concatenate([ctx.grouping(k).n_cells for k in keys]).astype(np.int64)
        if ctx.layers[0] != INPUT or len(ctx.layers) > 2:
            raise ValueError(f"quantiles are built for the input layer and one more, not {ctx.layers}")
        second = stats.values(ctx.layers[1]) if len(ctx.layers) > 1 else np.empty(0)
        qs = np.asarray(ctx.quantiles, dtype=np.float64)
        # each layer's quantile t of every group, genes along rows: what each array takes
        result = np.empty((len(ctx.layers), len(qs), int(offsets[-1]), slab.width), dtype=np.float32)
        gene_quantiles(slab.indptr, slab.cells, slab.vals, second, codes, offsets, sizes, qs, result)
        region = (slice(None), slice(slab.lo, slab.hi))
        for li, layer in enumerate(ctx.layers):
            for gi, key in enumerate(keys):
                arrays = self.arrays[layer, key]
                for t, name in enumerate(self.names):
                    put(arrays[name], region, result[li, t, offsets[gi] : offsets[gi + 1]])


class QuantilesBuilder(Builder):
    """Fills one AnnData per (layer, grouping) with the quantiles of each slab's genes."""

    def __init__(self, ctx: BuildContext, out: SnapshotWriter) -> None:
        super().__init__(ctx, out)
        self._names = [quantile_name(q) for q in ctx.quantiles]
        self._arrays: dict[tuple[str, str], dict[str, zarr.Array[Any]]] = {}
        for layer in ctx.layers:
            for key in ctx.groupbys:
                self._arrays[layer, key] = create_grouped(
                    out,
                    ctx,
                    relpath(QUANTILES.name, key, layer),
                    ctx.grouping(key),
                    dict.fromkeys(self._names, np.float32),
                    uns={"groupby": key, "layer": layer, "quantiles": list(ctx.quantiles)},
                )

    def part(self) -> QuantilesPart:
        return QuantilesPart(self._arrays, tuple(self._names))

    def finish(self) -> dict[str, Any]:
        layers: dict[str, dict[str, object]] = {}
        for layer, key in self._arrays:
            path = relpath(QUANTILES.name, key, layer)
            layers.setdefault(layer, {})[key] = {"path": path}
        return {"quantiles": list(self.ctx.quantiles), "stats": self._names, "layers": layers}


@register_read("quantiles", *ENCODING)
class QuantilesReader(ViewReader):
    """``quantiles`` (levels), ``stats`` (their names, same order), ``layers: {layer:
    {groupby: {"path"}}}``: an AnnData of groups × genes with one layer per quantile."""

    def levels(self) -> dict[str, float]:
        """``{"median": 0.5, "q10": 0.1, …}``: each stored quantile's name and level."""
        return dict(zip(self.entry["stats"], (float(q) for q in self.entry["quantiles"]), strict=True))

    def verify(self) -> None:
        entry, snap = self.entry, self.snap
        names = entry["stats"]
        for layer, groupbys in entry["layers"].items():
            for key, sub in groupbys.items():
                group = zarr_group(snap.group(sub["path"]), "layers")
                order = np.argsort(entry["quantiles"])
                for lo in range(0, snap.n_genes, 4096):  # a band of genes at a time: bounded memory
                    values = [np.asarray(zarr_array(group, n)[:, lo : lo + 4096]) for n in names]
                    for a, b in zip(order[:-1], order[1:], strict=True):
                        bad = values[a] > values[b] + 1e-6 * np.abs(values[b])
                        if bad.any():
                            g, j = np.argwhere(bad)[0]
                            raise VerificationError(
                                f"{self.where(key, layer)}: {names[a]} > {names[b]} for gene "
                                f"{snap.var_names[lo + j]!r}, group {g}"
                            )

    def served(self) -> list[str]:
        return list(self.entry["stats"])

    def query(
        self, groupby: str, layer: str, gene_idx: np.ndarray, stats: Sequence[str]
    ) -> tuple[list[str], dict[str, np.ndarray]]:
        snap = self.snap
        path = str(entry_for(snap, self.entry, groupby, layer)["path"])
        table = group_table(snap, path)
        values = {
            s: np.ascontiguousarray(snap.array(f"{path}/layers/{s}")[:, gene_idx], dtype=np.float64)
            for s in stats
        }
        return [str(g) for g in table.index], values

    def describe(self) -> dict[str, Any]:
        entry = self.entry
        return {"quantiles": entry["quantiles"], "stats": entry["stats"], "layers": list(entry["layers"])}


def _stats(parameters: Mapping[str, Any]) -> list[str]:
    """The quantiles a build with these manifest ``parameters`` stores (by name)."""
    return [quantile_name(float(q)) for q in parameters.get("quantiles") or ()]


QUANTILES = register_view(ViewSpec("quantiles", *ENCODING, QuantilesBuilder, stats=_stats))
