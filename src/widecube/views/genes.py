"""The genes view: per-gene statistics over all cells (implicit zeros included), per layer.

Stored as ``views/genes/<layer>.parquet``, one row per gene: ``n_cells_expressing``, ``sum``,
``sumsq``, ``mean``, ``var`` (ddof=1), ``min``, ``max`` and ``dispersion`` (var / mean).
The summary verifier checks every grouping against these totals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..compute.groupings import ALL
from ..errors import VerificationError
from ..snapshot import Snapshot, SnapshotWriter
from ._base import BuildContext, SlabStats, View
from ._layout import layer_entry
from ._registry import register_view

__all__ = ["GENE_STATS", "GenesView"]

GENE_STATS = ("n_cells_expressing", "sum", "sumsq", "mean", "var", "min", "max", "dispersion")


def _path(layer: str) -> str:
    return f"views/genes/{layer}.parquet"


@register_view
class GenesView(View):
    name = "genes"
    encoding = "widecube-gene-stats"
    encoding_version = "0.2.0"

    def begin(self, ctx: BuildContext, out: SnapshotWriter) -> None:
        n = ctx.n_genes
        self._cols = {layer: {"sum": np.zeros(n), "sumsq": np.zeros(n), "nnz": np.zeros(n, np.int64),
                              "min": np.zeros(n), "max": np.zeros(n)} for layer in ctx.layers}  # fmt: skip

    def consume(self, ctx: BuildContext, stats: SlabStats, out: SnapshotWriter) -> None:
        lo, hi = stats.slab.lo, stats.slab.hi
        for layer, cols in self._cols.items():
            m = stats.moments(layer)
            s, sq, nnz = m.of(ctx, ALL)
            cols["sum"][lo:hi], cols["sumsq"][lo:hi], cols["nnz"][lo:hi] = s[0], sq[0], nnz[0]
            cols["min"][lo:hi], cols["max"][lo:hi] = m.min, m.max

    def finish(self, ctx: BuildContext, out: SnapshotWriter) -> None:
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
            out.write_table(_path(layer), table)
        out.add_view(self.name, encoding=self.encoding, encoding_version=self.encoding_version,
                     layers={layer: _path(layer) for layer in self._cols},
                     stats=list(GENE_STATS))  # fmt: skip
        del self._cols

    def verify(self, snap: Snapshot) -> None:
        for layer, path in snap.view(self.name)["layers"].items():
            t = snap.table(path)
            where = f"{snap.dataset}@{snap.version} genes[{layer}]"
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

    def table(self, snap: Snapshot, layer: str) -> pd.DataFrame:
        """The per-gene table of ``layer``."""
        return snap.table(str(layer_entry(snap, self.name, layer)))
