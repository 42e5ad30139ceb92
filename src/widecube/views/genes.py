"""The genes view: per-gene statistics over all cells (implicit zeros included), per layer.

Stored as ``views/genes/<layer>.parquet``, one row per gene: ``n_cells_expressing``, ``sum``,
``sumsq``, ``mean``, ``var`` (ddof=1), ``min``, ``max`` and ``dispersion`` (var / mean).
The summary verifier checks every grouping against these totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..compute.groupings import ALL
from ..errors import VerificationError
from ..snapshot import SnapshotWriter
from ._layout import layer_entry
from ._registry import ViewSpec, register_read, register_view
from ._spec import BuildContext, Builder, Put, SlabPart, SlabStats, ViewReader

__all__ = ["ENCODING", "GENE_STATS", "GENES", "GenesBuilder", "GenesPart", "GenesReader"]

ENCODING = ("widecube-gene-stats", "0.2.0")
"""What this code writes; its reader stays registered when a later encoding replaces it."""
GENE_STATS = ("n_cells_expressing", "sum", "sumsq", "mean", "var", "min", "max", "dispersion")


def _path(layer: str) -> str:
    return f"views/genes/{layer}.parquet"


@dataclass(frozen=True)
class GenesPart(SlabPart):
    """Returns one slab's per-gene moments of every layer (nothing is written per slab)."""

    layers: tuple[str, ...]

    def run(self, stats: SlabStats, put: Put) -> tuple[int, int, dict[str, tuple[np.ndarray, ...]]]:
        cols: dict[str, tuple[np.ndarray, ...]] = {}
        for layer in self.layers:
            m = stats.moments(layer)
            s, sq, nnz = m.of(stats.ctx, ALL)
            cols[layer] = (s[0], sq[0], nnz[0], m.min, m.max)
        return stats.slab.lo, stats.slab.hi, cols


class GenesBuilder(Builder):
    """Per-gene moments of every layer, gathered slab by slab, tabled in :meth:`finish`."""

    def __init__(self, ctx: BuildContext, out: SnapshotWriter) -> None:
        super().__init__(ctx, out)
        n = ctx.n_genes
        self._cols = {
            layer: {
                "sum": np.zeros(n),
                "sumsq": np.zeros(n),
                "nnz": np.zeros(n, np.int64),
                "min": np.zeros(n),
                "max": np.zeros(n),
            }
            for layer in ctx.layers
        }

    def part(self) -> GenesPart:
        return GenesPart(tuple(self._cols))

    def merge(self, result: tuple[int, int, dict[str, tuple[np.ndarray, ...]]]) -> None:
        lo, hi, parts = result
        for layer, (s, sq, nnz, lo_value, hi_value) in parts.items():
            cols = self._cols[layer]
            cols["sum"][lo:hi], cols["sumsq"][lo:hi], cols["nnz"][lo:hi] = s, sq, nnz
            cols["min"][lo:hi], cols["max"][lo:hi] = lo_value, hi_value

    def finish(self) -> dict[str, Any]:
        ctx = self.ctx
        n = float(ctx.n_cells)
        for layer, c in self._cols.items():
            s, sq, nnz = c["sum"], c["sumsq"], c["nnz"]
            implicit_zero = nnz < ctx.n_cells
            with np.errstate(divide="ignore", invalid="ignore"):
                mean = s / n
                var = np.maximum(sq - s * s / n, 0.0) / (n - 1) if n > 1 else np.full_like(s, np.nan)
                dispersion = np.where(mean > 0, var / mean, np.nan)
            lo = np.where(nnz > 0, c["min"], 0.0)
            hi = np.where(nnz > 0, c["max"], 0.0)
            table = pd.DataFrame(
                {
                    "n_cells_expressing": nnz,
                    "sum": s,
                    "sumsq": sq,
                    "mean": mean,
                    "var": var,
                    "min": np.where(implicit_zero, np.minimum(lo, 0.0), lo),
                    "max": np.where(implicit_zero, np.maximum(hi, 0.0), hi),
                    "dispersion": dispersion,
                },
                index=pd.Index(ctx.var.index.astype(str), name="gene"),
            )
            self.out.write_table(_path(layer), table)
        return {"layers": {layer: _path(layer) for layer in self._cols}, "stats": list(GENE_STATS)}


@register_read("genes", *ENCODING)
class GenesReader(ViewReader):
    """``layers: {layer: parquet path}``, one row per gene (index ``gene``), ``GENE_STATS`` columns."""

    def table(self, layer: str) -> pd.DataFrame:
        """The per-gene table of ``layer``, or a 422 naming the layers there are."""
        return self.snap.table(str(layer_entry(self.snap, self.entry, layer)))

    def verify(self) -> None:
        snap = self.snap
        for layer in self.entry["layers"]:
            t = self.table(layer)
            where = self.where(layer)
            if len(t) != snap.n_genes or not t.index.equals(snap.var_names):
                raise VerificationError(f"{where}: rows do not match the dataset's genes")
            nnz = t["n_cells_expressing"].to_numpy()
            if (nnz < 0).any() or (nnz > snap.n_cells).any():
                j = int(np.argmax((nnz < 0) | (nnz > snap.n_cells)))
                raise VerificationError(f"{where}: gene {t.index[j]!r} has {nnz[j]} expressing cells")
            mean, lo, hi = (t[c].to_numpy() for c in ("mean", "min", "max"))
            bad = (lo > mean + 1e-9 * np.abs(mean)) | (mean > hi + 1e-9 * np.abs(hi))
            if bad.any():
                j = int(np.argmax(bad))
                raise VerificationError(f"{where}: gene {t.index[j]!r} has mean outside [min, max]")


GENES = register_view(ViewSpec("genes", *ENCODING, GenesBuilder))
