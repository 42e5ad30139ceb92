"""The markers view: one-vs-rest marker genes of every group of every grouping, per layer.

From the summary moments alone (no second look at cells): for group g against all other
cells, the Welch t statistic and its two-sided p-value, Benjamini-Hochberg adjusted over all
genes of the group; the log2 fold change of means as the layer's kind allows
(``_layers.fold_change_method``: on log1p values — the normalized layer, or log-normalized
input — of ``expm1(mean)`` as scanpy's ``rank_genes_groups`` does; on counts of the means;
on scaled values none: NaN); and the fractions expressing in and out (NaN on scaled values,
where zero does not mean "not expressed"). Ranking: by t, descending (up-regulated genes
first), ties to the lower gene index, keeping the top ``limit`` (100) per group; a gene
without a t (NaN: no variance in the group or the rest) is not listed. Stored as
``views/markers/<groupby>[.<layer>].parquet``.

A grouping with fewer than two groups (one category, or the synthetic ``all`` grouping of an
input without groupings) has no rest to compare with: it is skipped, and the manifest entry
lists it under ``skipped`` with its number of groups, so that a query for it is a clear 422.
"""

from __future__ import annotations

import itertools
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

__all__ = [
    "ENCODING",
    "MARKERS",
    "MarkersBuilder",
    "MarkersPart",
    "MarkersPiece",
    "MarkersReader",
    "MarkersReader2",
    "Top",
]

ENCODING = ("widecube-markers", "0.2.0")
"""What this code writes: 0.2.0 takes fold changes by the layer's kind and records how, per
layer, in the entry's ``foldchange`` (``expm1``, ``ratio``, or null: withheld). 0.1.0 took them
of ``expm1`` on the normalized layer and of the means themselves on any other; its reader
stays registered (:class:`MarkersReader`) and withholds those of non-count input."""

TOP = 100
FIELDS = ("t", "pval", "logfoldchange", "pct_in", "pct_out")


Key = tuple[str, str]
"""``(layer, grouping)``."""


def _rank(t: np.ndarray, gene: np.ndarray) -> np.ndarray:
    """Per row, the order of ``t`` from best to worst: t descending, a NaN t (no variance
    anywhere: no statistic) after every number (-inf included), ties to the lower gene."""
    nan = np.isnan(t)
    return np.lexsort((gene, -np.where(nan, -np.inf, t), nan), axis=-1)


def _best(t: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` best of ``t`` per row, best first, in :func:`_rank`'s order
    (the columns are genes in ascending order).

    The k-th largest t per row comes from a partition (no full sort); every t above it is
    kept, and as many of those equal to it as there is room for, lowest columns first. A row
    whose k-th best is -inf or NaN (a tiny group: few genes with a statistic) is ranked whole.
    """
    g, n = t.shape
    if n > k:
        score = np.where(np.isnan(t), -np.inf, t)
        kth = -np.partition(-score, k - 1, axis=1)[:, k - 1 : k]
        above = score > kth
        tied = score == kth
        room = k - above.sum(axis=1, keepdims=True)
        cols = np.nonzero(above | (tied & (np.cumsum(tied, axis=1) <= room)))[1].reshape(g, k)
        low = np.flatnonzero(kth[:, 0] == -np.inf)
        if low.size:
            cols[low] = _rank(t[low], np.broadcast_to(np.arange(n), (low.size, n)))[:, :k]
    else:
        cols = np.broadcast_to(np.arange(n), (g, n))
    return np.take_along_axis(cols, _rank(np.take_along_axis(t, cols, axis=1), cols), axis=1)


@dataclass(frozen=True, slots=True)
class Top:
    """The best genes of every group among some genes, best first: by t descending (NaN
    last), then by gene index (:func:`_rank`). That order is total, so the best of a union of
    genes is the best of the parts' best, however the genes were cut (slabs, a cluster's
    tasks): the result never depends on where the cuts fell."""

    gene: np.ndarray
    """(groups, n) gene indices (int64)."""
    fields: dict[str, np.ndarray]
    """``FIELDS``, each (groups, n), for the same genes."""

    @classmethod
    def empty(cls, n_groups: int) -> Top:
        return cls(np.empty((n_groups, 0), np.int64), {f: np.empty((n_groups, 0)) for f in FIELDS})

    @classmethod
    def of(cls, lo: int, fields: dict[str, np.ndarray], k: int) -> Top:
        """The best ``k`` of genes ``lo, lo + 1, …`` whose ``fields`` are given, one column each."""
        cols = _best(fields["t"], k)
        return cls(cols + lo, {f: np.take_along_axis(fields[f], cols, axis=1) for f in FIELDS})

    def join(self, other: Top, k: int) -> Top:
        """The best ``k`` of both (their genes are disjoint)."""
        gene = np.concatenate([self.gene, other.gene], axis=1)
        keep = _rank(np.concatenate([self.fields["t"], other.fields["t"]], axis=1), gene)[:, :k]
        return Top(
            np.take_along_axis(gene, keep, axis=1),
            {
                f: np.take_along_axis(np.concatenate([self.fields[f], other.fields[f]], axis=1), keep, axis=1)
                for f in FIELDS
            },
        )


@dataclass(frozen=True, slots=True)
class MarkersPiece:
    """What the markers need from genes ``lo..hi-1`` (one slab, or a task's slabs joined):
    every p-value (the correction ranks all genes of a group) and the best ``TOP`` genes with
    their statistics, per (layer, grouping). Nothing else of those genes is kept or sent."""

    lo: int
    hi: int
    pvals: dict[Key, np.ndarray]
    """(groups, hi - lo) per key."""
    top: dict[Key, Top]

    @classmethod
    def joined(cls, pieces: list[MarkersPiece], k: int) -> MarkersPiece:
        """Consecutive pieces (each one's ``lo`` the previous one's ``hi``) as one: the
        p-values side by side (one copy), the best ``k`` of their best genes."""
        for a, b in itertools.pairwise(pieces):
            if b.lo != a.hi:
                raise ValueError(f"markers of genes {b.lo}.. do not follow genes ..{a.hi - 1}")
        first = pieces[0]
        top = dict(first.top)
        for piece in pieces[1:]:
            top = {key: t.join(piece.top[key], k) for key, t in top.items()}
        pvals = {key: np.concatenate([piece.pvals[key] for piece in pieces], axis=1) for key in first.pvals}
        return cls(first.lo, pieces[-1].hi, pvals, top)


@dataclass(frozen=True)
class MarkersPart(SlabPart):
    """One slab's one-vs-rest statistics of every group (``FIELDS``, per (layer, grouping)),
    reduced to a :class:`MarkersPiece`: the slab's p-values and its best genes."""

    keys: tuple[Key, ...]
    k: int

    def run(self, stats: SlabStats, put: Put) -> MarkersPiece:
        ctx = stats.ctx
        pvals: dict[Key, np.ndarray] = {}
        top: dict[Key, Top] = {}
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
                fields = {
                    "t": t,
                    "pval": p,
                    "logfoldchange": lfc if method is not None else np.full(s.shape, np.nan),
                    "pct_in": np.full(s.shape, np.nan) if scaled else nnz / n_in,
                    "pct_out": np.full(s.shape, np.nan) if scaled else (nnz_all - nnz) / n_out,
                }
            pvals[layer, key] = p
            top[layer, key] = Top.of(stats.slab.lo, fields, self.k)
        return MarkersPiece(stats.slab.lo, stats.slab.hi, pvals, top)

    def combine(self, results: list[Any]) -> list[Any]:
        """A task's slabs as one piece: its p-values and its best genes only."""
        return [MarkersPiece.joined(results, self.k)] if results else results


class MarkersBuilder(Builder):
    """The best ``TOP`` genes by t of every group so far, and every p-value (for BH)."""

    beside = True  # ranking a slab's genes is single-threaded numpy: beside the quantiles

    def __init__(self, ctx: BuildContext, out: SnapshotWriter) -> None:
        super().__init__(ctx, out)
        self._k = min(TOP, ctx.n_genes)
        self._pvals: dict[Key, np.ndarray] = {}
        self._top: dict[Key, Top] = {}
        self._skipped = {
            key: ctx.grouping(key).n_groups for key in ctx.groupbys if ctx.grouping(key).n_groups < 2
        }
        for layer in ctx.layers:
            for key in ctx.groupbys:
                if key in self._skipped:
                    continue
                g = ctx.grouping(key).n_groups
                self._pvals[layer, key] = np.ones((g, ctx.n_genes))
                self._top[layer, key] = Top.empty(g)

    def part(self) -> MarkersPart:
        return MarkersPart(tuple(self._top), self._k)

    def merge(self, result: MarkersPiece) -> None:
        for key, top in self._top.items():
            self._pvals[key][:, result.lo : result.hi] = result.pvals[key]
            self._top[key] = top.join(result.top[key], self._k)

    def finish(self) -> dict[str, Any]:
        ctx = self.ctx
        layers: dict[str, dict[str, str]] = {layer: {} for layer in ctx.layers}
        gene_names = np.asarray(ctx.var.index.astype(str))
        for (layer, key), top in self._top.items():
            names = ctx.grouping(key).names
            adjusted_all = benjamini_hochberg(self._pvals[layer, key])
            listed = ~np.isnan(top.fields["t"])  # genes without a statistic are no markers
            group, _ = np.nonzero(listed)  # row by row: each group's genes, best first
            genes = top.gene[listed]
            table = pd.DataFrame(
                {
                    "group": pd.Categorical.from_codes(group, categories=names),
                    "rank": np.cumsum(listed, axis=1, dtype=np.int64)[listed],
                    "gene": gene_names[genes],
                    **{f: top.fields[f][listed] for f in FIELDS},
                    "pval_adj": adjusted_all[group, genes],
                }
            )
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
