"""The genes view: per-gene statistics over all cells (implicit zeros included).

Stored as ``views/genes/genes.parquet``, one row per gene: ``n_cells_expressing``, ``sum``,
``sumsq``, ``mean``, ``var`` (ddof=1), ``min``, ``max`` and ``dispersion`` (var / mean).
The summary verifier checks every grouping against these totals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..compute import Moments
from ..compute.groupings import ALL
from ..errors import VerificationError
from ..snapshot import Snapshot, SnapshotWriter
from ._base import BuildContext, View
from ._registry import register_view

__all__ = ["GenesView"]

PATH = "views/genes/genes.parquet"


@register_view
class GenesView(View):
    name = "genes"
    encoding = "widecube-gene-stats"
    encoding_version = "0.1.0"

    def needs(self, ctx: BuildContext) -> list[str]:
        return [ALL]

    def write(self, ctx: BuildContext, moments: Moments, out: SnapshotWriter) -> None:
        gm = moments.groups[ALL]
        n = float(ctx.n_cells)
        s, sq, nnz = gm.sum[0], gm.sumsq[0], gm.nnz[0]
        implicit_zero = nnz < ctx.n_cells
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = s / n
            var = np.maximum(sq - s * s / n, 0.0) / (n - 1) if n > 1 else np.full_like(s, np.nan)
            dispersion = np.where(mean > 0, var / mean, np.nan)
        lo = np.where(nnz > 0, moments.gene_min, 0.0)
        hi = np.where(nnz > 0, moments.gene_max, 0.0)
        table = pd.DataFrame(
            {
                "n_cells_expressing": nnz.astype(np.int64),
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
        out.write_table(PATH, table)
        out.add_view(self.name, encoding=self.encoding, encoding_version=self.encoding_version,
                     path=PATH)  # fmt: skip

    def verify(self, snap: Snapshot) -> None:
        t = snap.table(PATH)
        where = f"{snap.dataset}@{snap.version} genes"
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
