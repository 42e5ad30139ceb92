"""The queries that analyse any set of cells on the fly, from the gene-major view: two sets
compared gene by gene, violins, the hierarchical order of groups, the cells of a selection and
one cell's metadata. Each resolves the version once, as :mod:`._reads` does.

    >>> b_cells = {"group": {"groupby": "cell_type", "group": "B"}}
    >>> wc.compare("pbmc", a=b_cells)["results"][0]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..access import ANONYMOUS, Actor
from ..errors import InvalidQuery
from ..views import fold_change_method, layer_kind
from ._reads import Reads
from ._resolve import serving
from .compare import contrast, ranked, records
from .dendrogram import dendrogram as order_groups
from .results import Cell, CellSelection, Comparison, Dendrogram, Violins
from .selection import selection, selection_of
from .violin import histograms

__all__ = ["Analyses"]


class Analyses(Reads):
    """Comparisons, violins, dendrograms and cell selections (keyword ``actor``: the caller)."""

    @serving
    def compare(
        self,
        dataset: str,
        *,
        a: Mapping[str, Any],
        b: Mapping[str, Any] | None = None,
        within: Mapping[str, Any] | None = None,
        genes: list[str] | None = None,
        top: int = 100,
        rank: str = "up",
        layer: str | None = None,
        version: str | None = None,
        actor: Actor = ANONYMOUS,
    ) -> Comparison:
        """Set ``a`` against set ``b`` (default: the rest, every other cell), both inside
        ``within`` (default: every cell), gene by gene: Welch's t, p, BH-adjusted p, log2 fold
        change, means and fractions expressing (:mod:`widecube.query.compare`).

        Each set is a cell set of :func:`~widecube.query.selection.selection_of`: a group, a
        filter, a lasso, obs positions or cell ids. Without ``genes`` every gene is compared and
        the ``top`` best by ``rank`` (``up``: largest t first, ``down``, ``abs``) are returned;
        with ``genes``, those, in their order, adjusted over them.

            >>> wc.compare("pbmc", a={"group": {"groupby": "cell_type", "group": "B"}},
            ...            b={"group": {"groupby": "cell_type", "group": "T"}}, top=5)  # doctest: +SKIP
        """
        self.door.authorize(actor, "read", dataset)
        record, snap, index = self._indexed(dataset, version)
        layer = index.layer(dataset, layer)
        sets = {"a": selection_of(a), "b": selection_of(b), "within": selection_of(within)}
        n = snap.n_cells
        mask = {}
        for name, spec in sets.items():
            found, _ = index.selection(dataset, spec)
            mask[name] = np.ones(n, dtype=bool) if found is None else found
        a_mask = mask["a"] & mask["within"]
        b_mask = (mask["b"] if b else ~mask["a"]) & mask["within"]
        described = {
            "a": {**sets["a"].describe(), "cells": int(a_mask.sum())},
            "b": {**(sets["b"].describe() if b else {"rest": True}), "cells": int(b_mask.sum())},
        }
        for name, info in described.items():
            if (kept := info["cells"]) < 2:
                raise InvalidQuery(
                    f"dataset {dataset!r}: set {name} keeps {kept} cell{'' if kept == 1 else 's'}; "
                    "Welch's t needs at least 2 cells in each set"
                )
        idx = np.arange(snap.n_genes) if genes is None else index.gene_index(dataset, genes)
        data = index.gene_data(dataset, record.version, idx, layer)
        table = contrast(
            data,
            a_mask,
            b_mask,
            fold=fold_change_method(index.input_kind, layer),
            scaled=layer_kind(index.input_kind, layer) == "scaled",
        )
        rows = np.arange(len(idx)) if genes is not None else ranked(table["t"], rank, top)
        names = np.asarray(snap.var_names.astype(str))[idx]
        return Comparison(
            dataset=dataset,
            version=record.version,
            layer=layer,
            a=described["a"],
            b=described["b"],
            genes_tested=len(idx),
            rank=rank if genes is None else "given",
            results=records(names, table, rows),
        )

    @serving
    def violin(
        self,
        dataset: str,
        *,
        genes: list[str],
        groupby: str,
        bins: int = 40,
        filter: dict[str, Any] | None = None,
        lasso: dict[str, Any] | None = None,
        layer: str | None = None,
        version: str | None = None,
        actor: Actor = ANONYMOUS,
    ) -> Violins:
        """Per group of ``groupby`` over the kept cells: the histogram of each gene's non-zero
        values (``bins`` bins shared by the groups) and the cell counts (:mod:`.violin`)."""
        self.door.authorize(actor, "read", dataset)
        record, _, index = self._indexed(dataset, version)
        layer = index.layer(dataset, layer)
        spec = selection(filter, lasso=lasso)
        mask, kept = index.selection(dataset, spec)
        grouping = index.grouping(dataset, groupby)
        counts = index.group_counts(spec, grouping, mask)
        data = index.gene_data(dataset, record.version, index.gene_index(dataset, genes), layer)
        found = histograms(data, mask, grouping.codes, n_groups=grouping.n_groups, bins=bins)
        return Violins(
            dataset=dataset,
            version=record.version,
            groupby=groupby,
            layer=layer,
            groups=list(grouping.names),
            genes=list(genes),
            n_cells=counts,
            violins=[{"gene": g, **h} for g, h in zip(genes, found, strict=True)],
            filter=spec.filter_json(),
            cells=kept,
        )

    def dendrogram(
        self,
        dataset: str,
        *,
        genes: list[str],
        groupby: str,
        filter: dict[str, Any] | None = None,
        lasso: dict[str, Any] | None = None,
        layer: str | None = None,
        version: str | None = None,
        actor: Actor = ANONYMOUS,
    ) -> Dendrogram:
        """The groups with kept cells in hierarchical order by their mean expression of
        ``genes`` (:mod:`.dendrogram`, as ``scanpy.pl.dotplot(dendrogram=True)``)."""
        means = self.aggregate(
            dataset,
            genes=genes,
            groupby=groupby,
            stats=["mean", "n_cells"],
            filter=filter,
            lasso=lasso,
            layer=layer,
            version=version,
            actor=actor,
        )
        keep = np.asarray(means["values"]["n_cells"])[:, 0] > 0
        groups = [g for g, k in zip(means["groups"], keep, strict=True) if k]
        tree = order_groups(np.asarray(means["values"]["mean"])[keep])
        return Dendrogram(
            dataset=dataset,
            version=means["version"],
            groupby=groupby,
            layer=means["layer"],
            genes=list(genes),
            groups=groups,
            order=tree["order"],
            ordered=[groups[i] for i in tree["order"]],
            linkage=tree["linkage"],
            icoord=tree["icoord"],
            dcoord=tree["dcoord"],
        )

    @serving
    def cells(
        self,
        dataset: str,
        *,
        select: Mapping[str, Any] | None = None,
        version: str | None = None,
        actor: Actor = ANONYMOUS,
    ) -> CellSelection:
        """The obs positions (0-based, ascending) of the cells a cell set keeps (every cell
        for none): what the UI dims and highlights in the embedding."""
        self.door.authorize(actor, "read", dataset)
        record, snap, index = self._indexed(dataset, version)
        mask, kept = index.selection(dataset, selection_of(select))
        found = np.arange(snap.n_cells) if mask is None else np.flatnonzero(mask)
        return CellSelection(
            dataset=dataset,
            version=record.version,
            n_cells=snap.n_cells,
            cells=kept,
            indices=found.astype(np.int64),
        )

    @serving
    def cell(
        self, dataset: str, position: int, *, version: str | None = None, actor: Actor = ANONYMOUS
    ) -> Cell:
        """One cell's id and obs values (categories as text, numbers as numbers, missing as None)."""
        self.door.authorize(actor, "read", dataset)
        record, snap, index = self._indexed(dataset, version)
        if not 0 <= position < snap.n_cells:
            raise InvalidQuery(
                f"dataset {dataset!r} has {snap.n_cells} cells (indices 0–{snap.n_cells - 1}); "
                f"index {position} is outside"
            )
        obs = index.obs
        row = obs.iloc[position]
        return Cell(
            dataset=dataset,
            version=record.version,
            index=position,
            id=str(obs.index[position]),
            obs={str(c): _plain(row[c]) for c in obs.columns},
        )


def _plain(value: Any) -> Any:
    """A JSON value: None for missing, Python numbers and text otherwise."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    return value if isinstance(value, bool | int | float | str) else str(value)
