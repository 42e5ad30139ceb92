"""The markers view: one-vs-rest marker genes of every group of every grouping, per layer.

From the summary moments alone (no second look at cells): for group g against all other
cells, the Welch t statistic and its two-sided p-value, Benjamini-Hochberg adjusted over all
genes of the group; the log2 fold change of means as the layer's kind allows
(``_layers.fold_change_method``: on log1p values — the normalized layer, or log-normalized
input — of ``expm1(mean)`` as scanpy's ``rank_genes_groups`` does; on counts of the means;
on scaled values none: NaN); and the fractions expressing in and out (NaN on scaled values,
where zero does not mean "not expressed"). Ranking: by t, descending (up-regulated genes
first; NaN t last), keeping the top ``limit`` (100) per group. Stored as
``views/markers/<groupby>[.<layer>].parquet``.

A grouping with fewer than two groups (one category, or the synthetic ``all`` grouping of an
input without groupings) has no rest to compare with: it is skipped, and the manifest entry
lists it under ``skipped`` with its number of groups, so that a query for it is a clear 422.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..compute import benjamini_hochberg, log_fold_change, welch_t_p
from ..compute.groupings import ALL
from ..errors import InvalidQuery, VerificationError
from ..snapshot import SnapshotWriter
from ._layers import FOLD_EXPM1, FOLD_RATIO, NORMALIZED, fold_change_method, layer_kind
from ._layout import entry_for, layer_entry, relpath
from ._registry import ViewSpec, register_read, register_view
from ._spec import BuildContext, Builder, Put, SlabPart, SlabStats, ViewReader

__all__ = ["ENCODING", "MARKERS", "MarkersBuilder", "MarkersPart", "MarkersReader", "MarkersReader2"]

ENCODING = ("widecube-markers", "0.2.0")
"""What this code writes: 0.2.0 takes fold changes by the layer's kind and records how, per
layer, in the entry's ``foldchange`` (``expm1``, ``ratio``, or null: withheld). 0.1.0 took them
of ``expm1`` on the normalized layer and of the means themselves on any other; its reader
stays registered (:class:`MarkersReader`) and withholds those of non-count input."""

TOP = 100
FIELDS = ("t", "pval", "logfoldchange", "pct_in", "pct_out")


def _top(score: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest scores per row, best first (ties: lower index)."""
    if score.shape[1] > k:
        part = np.argpartition(-score, k - 1, axis=1)[:, :k]
        part.sort(axis=1)  # keep index order among equal scores before the stable sort
    else:
        part = np.broadcast_to(np.arange(score.shape[1]), score.shape).copy()
    order = np.argsort(-np.take_along_axis(score, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


Fields = dict[tuple[str, str], dict[str, np.ndarray]]


@dataclass(frozen=True)
class MarkersPart(SlabPart):
    """One slab's one-vs-rest statistics of every group (``FIELDS``, per (layer, grouping));
    the ranking and the correction need every gene, so the builder keeps them."""

    keys: tuple[tuple[str, str], ...]

    def run(self, stats: SlabStats, put: Put) -> tuple[int, int, Fields]:
        ctx = stats.ctx
        out: Fields = {}
        for layer, key in self.keys:
            m = stats.moments(layer)
            s, sq, nnz = m.of(ctx, key)
            s_all, sq_all, nnz_all = (a[0] for a in m.of(ctx, ALL))
            n_in = ctx.grouping(key).n_cells[:, None].astype(np.float64)
            n_out = ctx.n_cells - n_in
            t, p = np.empty(s.shape), np.empty(s.shape)
            welch_t_p(
                n_in[:, 0],
                np.ascontiguousarray(s),
                np.ascontiguousarray(sq),
                float(ctx.n_cells),
                np.ascontiguousarray(s_all),
                np.ascontiguousarray(sq_all),
                t,
                p,
            )
            method = fold_change_method(ctx.input_kind, layer)
            scaled = layer_kind(ctx.input_kind, layer) == "scaled"
            with np.errstate(divide="ignore", invalid="ignore"):
                mean_in, mean_out = s / n_in, (s_all - s) / n_out
                lfc = log_fold_change(mean_in, mean_out, log1p=method == FOLD_EXPM1)
                out[layer, key] = {
                    "t": t,
                    "pval": p,
                    "logfoldchange": lfc if method is not None else np.full(s.shape, np.nan),
                    "pct_in": np.full(s.shape, np.nan) if scaled else nnz / n_in,
                    "pct_out": np.full(s.shape, np.nan) if scaled else (nnz_all - nnz) / n_out,
                }
        return stats.slab.lo, stats.slab.hi, out


class MarkersBuilder(Builder):
    """The running top ``TOP`` genes by t of every group, and all its p-values (for BH)."""

    def __init__(self, ctx: BuildContext, out: SnapshotWriter) -> None:
        super().__init__(ctx, out)
        self._state: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        self._skipped = {
            key: ctx.grouping(key).n_groups for key in ctx.groupbys if ctx.grouping(key).n_groups < 2
        }
        for layer in ctx.layers:
            for key in ctx.groupbys:
                if key in self._skipped:
                    continue
                g = ctx.grouping(key).n_groups
                k = min(TOP, ctx.n_genes)
                state = {f: np.full((g, k), -np.inf if f == "t" else np.nan) for f in FIELDS}
                state["gene"] = np.full((g, k), -1, dtype=np.int64)
                state["pvals"] = np.ones((g, ctx.n_genes))
                self._state[layer, key] = state

    def part(self) -> MarkersPart:
        return MarkersPart(tuple(self._state))

    def merge(self, result: tuple[int, int, Fields]) -> None:
        lo, hi, slab_fields = result
        for (layer, key), state in self._state.items():
            fields = slab_fields[layer, key]
            t = fields["t"]
            state["pvals"][:, lo:hi] = fields["pval"]
            genes = np.broadcast_to(np.arange(lo, hi), t.shape)
            pool_t = np.concatenate([state["t"], np.where(np.isnan(t), -np.inf, t)], axis=1)
            k = state["t"].shape[1]
            keep = _top(pool_t, k)
            for f in FIELDS:
                pool = np.concatenate([state[f], fields[f]], axis=1)
                state[f] = np.take_along_axis(pool, keep, axis=1)
            state["gene"] = np.take_along_axis(np.concatenate([state["gene"], genes], axis=1), keep, axis=1)

    def finish(self) -> dict[str, Any]:
        ctx = self.ctx
        layers: dict[str, dict[str, str]] = {layer: {} for layer in ctx.layers}
        gene_names = np.asarray(ctx.var.index.astype(str))
        for (layer, key), state in self._state.items():
            names = ctx.grouping(key).names
            frames = []
            adjusted_all = benjamini_hochberg(state["pvals"])
            for g, group in enumerate(names):
                sel = state["gene"][g] >= 0
                adjusted = adjusted_all[g]
                genes = state["gene"][g][sel]
                frames.append(
                    pd.DataFrame(
                        {
                            "group": group,
                            "rank": np.arange(1, sel.sum() + 1),
                            "gene": gene_names[genes],
                            **{f: state[f][g][sel] for f in FIELDS},
                            "pval_adj": adjusted[genes],
                        }
                    )
                )
            table = pd.concat(frames, ignore_index=True)
            table["group"] = pd.Categorical(table["group"], categories=names)
            self.out.write_table(relpath(MARKERS.name, key, layer, "parquet"), table)
            layers[layer][key] = relpath(MARKERS.name, key, layer, "parquet")
        return {
            "layers": layers,
            "top": TOP,
            "ranking": "welch t, descending",
            "skipped": self._skipped,
            "foldchange": {layer: fold_change_method(ctx.input_kind, layer) for layer in ctx.layers},
        }


@register_read("markers", "widecube-markers", "0.1.0")
class MarkersReader(ViewReader):
    """``layers: {layer: {groupby: parquet path}}`` (rows: group, rank, gene, FIELDS,
    pval_adj), ``top``, ``ranking``, ``skipped: {groupby: n_groups}``."""

    def table(self, groupby: str, layer: str) -> pd.DataFrame:
        """The stored markers of ``groupby`` in ``layer``, or a 422 saying why there are none."""
        snap = self.snap
        skipped = self.entry.get("skipped", {})
        if groupby in skipped:
            layer_entry(snap, self.entry, layer)  # an unknown layer is named first
            n = int(skipped[groupby])
            raise InvalidQuery(
                f"dataset {snap.dataset!r}: groupby {groupby!r} has {n} group{'s' if n != 1 else ''}; "
                "markers compare a group with the rest of the cells, so they need at least 2 groups"
            )
        return snap.table(str(entry_for(snap, self.entry, groupby, layer)))

    def verify(self) -> None:
        for layer, paths in self.entry["layers"].items():
            for key, path in paths.items():
                t = self.snap.table(path)
                where = self.where(key, layer)
                p, padj = t["pval"].to_numpy(), t["pval_adj"].to_numpy()
                if ((p < 0) | (p > 1) | (padj < p - 1e-12) | (padj > 1)).any():
                    raise VerificationError(f"{where}: p-values out of range")
                if not t["gene"].isin(self.snap.var_names).all():
                    raise VerificationError(f"{where}: unknown gene names")

    def fold_change(self, layer: str) -> str | None:
        """How the stored fold changes of ``layer`` were taken: ``expm1`` or ``ratio``; None
        when they are not fold changes. 0.1.0 took ``expm1`` on the normalized layer and a
        ratio of the means on the input layer, right only for counts."""
        if layer == NORMALIZED:
            return FOLD_EXPM1
        counts = bool(self.snap.manifest.get("input", {}).get("counts"))
        return FOLD_RATIO if counts else None

    def describe(self) -> dict[str, Any]:
        entry = self.entry
        return {
            "layers": list(entry["layers"]),
            "top": entry["top"],
            "ranking": entry["ranking"],
            "skipped": dict(entry.get("skipped", {})),
            "foldchange": {layer: self.fold_change(layer) for layer in entry["layers"]},
        }


@register_read("markers", *ENCODING)
class MarkersReader2(MarkersReader):
    """0.2.0: as 0.1.0, with the fold change method of each layer in ``foldchange``."""

    def fold_change(self, layer: str) -> str | None:
        method = self.entry.get("foldchange", {}).get(layer)
        return None if method is None else str(method)


MARKERS = register_view(ViewSpec("markers", *ENCODING, MarkersBuilder))
