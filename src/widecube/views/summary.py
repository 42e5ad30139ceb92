"""The summary view: per (group, gene) statistics for every grouping of cells.

Stored per grouping as ``views/summary/<groupby>.zarr``, an AnnData (Zarr v3) with groups as
obs (with ``n_cells``), genes as var and one layer per statistic, like the result of
``scanpy.get.aggregate``::

    >>> a = anndata.read_zarr(f"{snapshot}/views/summary/cell_type.zarr")   # doctest: +SKIP
    >>> a.layers["mean"][a.obs_names.get_loc("B cell"), a.var_names.get_loc("MS4A1")]

``sum``, ``sumsq`` (float64) and ``nnz`` are exact and combine over any union of groups;
``mean``, ``var`` (ddof=1), ``frac_expressing`` and ``mean_expressing`` derive from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anndata
import numpy as np
import pandas as pd
import zarr

from ..compute import Moments
from ..compute.groupings import ALL
from ..errors import InvalidQuery, VerificationError
from ..snapshot import Snapshot, SnapshotWriter
from ._base import BuildContext, View
from ._registry import register_view

__all__ = ["BASE_STATS", "DERIVED_STATS", "STATS", "SummaryTable", "SummaryView", "derive"]

BASE_STATS = ("sum", "sumsq", "nnz")
DERIVED_STATS = ("mean", "var", "frac_expressing", "mean_expressing")
STATS = (*BASE_STATS, *DERIVED_STATS, "n_cells")
_SLAB = 4096  # genes per written slab (and per chunk)


def derive(stat: str, n_cells: np.ndarray, s: np.ndarray, sq: np.ndarray, nnz: np.ndarray) -> np.ndarray:
    """Statistic ``stat`` from raw moments; ``n_cells`` is a column (n_groups, 1)."""
    n = n_cells.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if stat == "sum":
            return np.asarray(s, dtype=np.float64)
        if stat == "sumsq":
            return np.asarray(sq, dtype=np.float64)
        if stat == "nnz":
            return np.asarray(nnz, dtype=np.float64)
        if stat == "n_cells":
            return np.broadcast_to(n, np.shape(s)).astype(np.float64)
        if stat == "mean":
            return s / n
        if stat == "var":
            return np.where(n > 1, np.maximum(sq - s * s / n, 0.0) / (n - 1), np.nan)
        if stat == "frac_expressing":
            return nnz / n
        if stat == "mean_expressing":
            return np.where(nnz > 0, s / np.maximum(nnz, 1), np.nan)
    raise InvalidQuery(f"unknown stat {stat!r}; known stats: {', '.join(STATS)}")


def _relpath(groupby: str) -> str:
    return f"views/summary/{groupby}.zarr"


@register_view
class SummaryView(View):
    name = "summary"
    encoding = "widecube-summary"
    encoding_version = "0.1.0"

    def needs(self, ctx: BuildContext) -> list[str]:
        return [*ctx.groupbys, ALL]

    def write(self, ctx: BuildContext, moments: Moments, out: SnapshotWriter) -> None:
        genes = pd.DataFrame(index=pd.Index(ctx.var.index.astype(str), name=None))
        for key in ctx.groupbys:
            gm = moments.groups[key]
            obs = gm.grouping.table.copy()
            obs.index = obs.index.astype(str)
            path = _relpath(key)
            out.write_anndata(path, anndata.AnnData(obs=obs, var=genes, uns={"groupby": key}))
            shape = gm.sum.shape
            n = gm.grouping.n_cells[:, None]
            for stat, dtype in (("sum", np.float64), ("sumsq", np.float64), ("nnz", np.int32)):
                raw = getattr(gm, stat)
                out.write_columns(f"{path}/layers/{stat}", shape, dtype,
                                  ((lo, np.asarray(raw[:, lo : lo + _SLAB])) for lo in
                                   range(0, shape[1], _SLAB)))  # fmt: skip
            for stat in DERIVED_STATS:
                slabs = (
                    (lo, derive(stat, n, *(np.asarray(a[:, lo : lo + _SLAB]) for a in
                                           (gm.sum, gm.sumsq, gm.nnz))).astype(np.float32))
                    for lo in range(0, shape[1], _SLAB)
                )  # fmt: skip
                out.write_columns(f"{path}/layers/{stat}", shape, np.float32, slabs)
            out.consolidate(path)
        out.add_view(
            self.name,
            encoding=self.encoding,
            encoding_version=self.encoding_version,
            groupbys={k: {"path": _relpath(k), "n_groups": moments.groups[k].grouping.n_groups}
                      for k in ctx.groupbys},
            stats=list(STATS),
        )  # fmt: skip

    def verify(self, snap: Snapshot) -> None:
        totals = snap.table("views/genes/genes.parquet")
        gene_sum = totals["sum"].to_numpy()
        gene_nnz = totals["n_cells_expressing"].to_numpy()
        for key, entry in snap.view(self.name)["groupbys"].items():
            group = zarr.open_group(snap.file(entry["path"]), mode="r")
            n_cells = np.asarray(group["obs"]["n_cells"][...])
            where = f"{snap.dataset}@{snap.version} summary[{key}]"
            if int(n_cells.sum()) != snap.n_cells:
                raise VerificationError(
                    f"{where}: n_cells over groups is {int(n_cells.sum())}, expected {snap.n_cells}"
                )
            s = np.asarray(group["layers"]["sum"][...]).sum(axis=0)
            nnz = np.asarray(group["layers"]["nnz"][...]).sum(axis=0)
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

    def describe(self, snap: Snapshot) -> dict[str, Any]:
        entry = snap.view(self.name)
        return {"groupbys": list(entry["groupbys"]), "stats": entry["stats"]}


@dataclass(frozen=True)
class SummaryTable:
    """The decoded summary of one grouping, ready for queries (arrays are memory-mapped)."""

    groupby: str
    groups: pd.Index
    n_cells: np.ndarray
    sum: np.ndarray
    sumsq: np.ndarray
    nnz: np.ndarray

    @classmethod
    def open(cls, snap: Snapshot, groupby: str) -> SummaryTable:
        entries = snap.view("summary")["groupbys"]
        if groupby not in entries:
            raise InvalidQuery(
                f"dataset {snap.dataset!r} has no groupby {groupby!r}; "
                f"available: {', '.join(entries)}"
            )
        path = entries[groupby]["path"]

        def load() -> SummaryTable:
            obs = anndata.io.read_elem(zarr.open_group(snap.file(path), mode="r")["obs"])
            return cls(
                groupby,
                obs.index,
                obs["n_cells"].to_numpy(),
                *(snap.array(f"{path}/layers/{k}") for k in BASE_STATS),
            )

        table: SummaryTable = snap.memo(("summary", groupby), load)
        return table

    def query(self, gene_idx: np.ndarray, stats: Sequence[str]) -> dict[str, np.ndarray]:
        """``{stat: array (n_groups, len(gene_idx))}`` for the given gene columns."""
        unknown = [s for s in stats if s not in STATS]
        if unknown:
            raise InvalidQuery(f"unknown stat {unknown[0]!r}; known stats: {', '.join(STATS)}")
        s, sq, nnz = (a[:, gene_idx] for a in (self.sum, self.sumsq, self.nnz))
        n = self.n_cells[:, None]
        return {stat: np.ascontiguousarray(derive(stat, n, s, sq, nnz)) for stat in stats}

