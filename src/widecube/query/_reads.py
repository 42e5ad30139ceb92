"""The typed queries: datasets, genes, summaries, aggregates over any cells, markers, per-gene
and per-cell statistics, embeddings. Each resolves the version once, then reads that snapshot.

    >>> wc.summary("pbmc", genes=["CD3E"], groupby="cell_type", stats=["mean"])["values"]  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..access import ANONYMOUS, SERVER, Actor
from ..compute import SUMMARY_STATS
from ..errors import InvalidQuery
from ..snapshot import Snapshot
from . import _views
from ._index import SnapshotIndex
from ._resolve import Resolver, serving
from .aggregate import expression, summarize
from .results import (
    Aggregate,
    CategoryColor,
    CellColor,
    CellStats,
    DatasetDetail,
    DatasetInfo,
    Embedding,
    Embeddings,
    Expression,
    GeneStats,
    Markers,
    ResolvedGenes,
    Summary,
    ValueColor,
)
from .selection import selection

__all__ = ["Reads"]

_ADDITIVE = frozenset({"sum", "sumsq", "nnz", "n_cells"})
_COUNTS = frozenset({"nnz", "n_cells"})
_MARKER_COLUMNS = ["gene", "logfoldchange", "pct_in", "pct_out", "t", "pval", "pval_adj"]


class Reads(Resolver):
    """The queries the API and the Python client serve (all keyword ``actor``: the caller)."""

    def datasets(self, *, actor: Actor = ANONYMOUS) -> list[DatasetInfo]:
        """Every dataset with a live version that the caller may read."""
        self.door.authorize(actor, "read", SERVER)
        live = [d for d in self.catalog.datasets() if d.current is not None]
        shown = set(self.door.visible(actor, [d.name for d in live]))
        return [
            DatasetInfo(
                name=d.name,
                version=d.current.version,
                n_cells=d.current.n_cells,
                n_genes=d.current.n_genes,
                groupbys=list(d.current.info.get("groupbys", [])),
                created=d.current.created,
            )
            for d in live
            if d.name in shown and d.current is not None
        ]

    @serving
    def dataset(self, dataset: str, version: str | None = None, *, actor: Actor = ANONYMOUS) -> DatasetDetail:
        """Detail of a dataset version: sizes, categorical obs columns, groupbys, views."""
        self.door.authorize(actor, "read", dataset)
        record, snap, index = self._indexed(dataset, version)
        return DatasetDetail(
            name=dataset,
            version=record.version,
            created=record.created,
            n_cells=snap.n_cells,
            n_genes=snap.n_genes,
            obs=index.categories,
            groupbys=snap.manifest["parameters"]["groupbys"],
            views=_views.describe(snap),
            input_kind=index.input_kind,
            default_layer=index.default_layer,
            layers=index.layers(),
            numeric=index.numeric_columns,
        )

    @serving
    def genes(
        self,
        dataset: str,
        prefix: str = "",
        limit: int = 20,
        version: str | None = None,
        *,
        actor: Actor = ANONYMOUS,
    ) -> tuple[str, list[str]]:
        """Gene names starting with ``prefix`` (case-insensitive), alphabetically."""
        self.door.authorize(actor, "read", dataset)
        record, _, index = self._indexed(dataset, version)
        names, lowered = index.sorted_genes
        p = prefix.lower()
        start = int(np.searchsorted(lowered, p, side="left"))
        stop = int(np.searchsorted(lowered, p + "\U0010ffff", side="left")) if p else len(names)
        return record.version, list(names[start : min(stop, start + limit)])

    @serving
    def var(
        self, dataset: str, version: str | None = None, *, actor: Actor = ANONYMOUS
    ) -> tuple[str, pd.DataFrame]:
        """(version, the gene table in var order: names as index, the input's gene columns
        such as ``gene_ids``), e.g. for an export that keeps var as scanpy does."""
        self.door.authorize(actor, "read", dataset)
        record, snap = self.resolve(dataset, version)
        return record.version, snap.table("dataset/var.parquet").copy()

    @serving
    def resolve_genes(
        self, dataset: str, query: list[str], version: str | None = None, *, actor: Actor = ANONYMOUS
    ) -> ResolvedGenes:
        """Canonical names for typed or pasted gene names (symbols or ``gene_ids``, any case),
        in input order, and the unknown ones with "did you mean" suggestions (genenames)."""
        self.door.authorize(actor, "read", dataset)
        record, _, index = self._indexed(dataset, version)
        genes, unknown = index.gene_names.resolve(query)
        return ResolvedGenes(dataset=dataset, version=record.version, genes=genes, unknown=unknown)

    @serving
    def summary(
        self,
        dataset: str,
        *,
        genes: list[str],
        groupby: str,
        stats: list[str],
        layer: str | None = None,
        version: str | None = None,
        actor: Actor = ANONYMOUS,
    ) -> Summary:
        """Per-group statistics of ``genes`` for ``groupby`` in ``layer`` (default: the
        dataset's default, normalized for count data), from the views serving each stat."""
        self.door.authorize(actor, "read", dataset)
        record, snap, index = self._indexed(dataset, version)
        layer = index.layer(dataset, layer)
        idx = index.gene_index(dataset, genes)
        stats = split_stats(stats)
        groups, values = _views.precomputed(snap, groupby, layer, idx, stats)
        notes = _withhold(_integers(values), index.withheld(layer))
        return Summary(
            dataset=dataset,
            version=record.version,
            groupby=groupby,
            layer=layer,
            groups=groups,
            genes=list(genes),
            values=values,
            unit=index.unit(layer),
            notes=notes,
        )

    # -- any subset of cells: on-the-fly queries over the gene-major view -----------------

    @serving
    def expression(
        self,
        dataset: str,
        *,
        genes: list[str],
        filter: dict[str, Any] | None = None,
        layer: str | None = None,
        version: str | None = None,
        cell_ids: bool = True,
        lasso: dict[str, Any] | None = None,
        actor: Actor = ANONYMOUS,
    ) -> Expression:
        """Per-cell values of ``genes`` (float32), in obs order, of the cells ``filter`` keeps
        (every cell without one), read from the gene-major view: for scatter and violin plots.
        With ``cell_ids`` the kept cells' ids too (obs index, same order).

        ``filter`` is ``{obs column: [categories] | {"min", "max"}}`` and ``lasso``
        ``{"embedding", "polygon"}`` (see :mod:`widecube.query.selection`).

            >>> wc.expression("pbmc", genes=["CD3E"], filter={"donor": ["D1"]})["cells"]  # doctest: +SKIP
            8123
        """
        self.door.authorize(actor, "read", dataset)
        record, snap, index = self._indexed(dataset, version)
        layer = index.layer(dataset, layer)
        data = index.gene_data(dataset, record.version, index.gene_index(dataset, genes), layer)
        spec = selection(filter, lasso=lasso)
        mask, kept = index.selection(dataset, spec)
        return Expression(
            dataset=dataset,
            version=record.version,
            layer=layer,
            genes=list(genes),
            filter=spec.filter_json(),
            cells=kept,
            values=dict(zip(genes, expression(data, mask, snap.n_cells), strict=True)),
            unit=index.unit(layer),
            cell_ids=_kept_ids(index.obs.index, mask) if cell_ids else None,
        )

    @serving
    def aggregate(
        self,
        dataset: str,
        *,
        genes: list[str],
        groupby: str,
        stats: list[str],
        filter: dict[str, Any] | None = None,
        layer: str | None = None,
        version: str | None = None,
        precomputed: bool = True,
        lasso: dict[str, Any] | None = None,
        actor: Actor = ANONYMOUS,
    ) -> Aggregate:
        """The summary of ``genes`` over the cells ``filter`` keeps, grouped by ``groupby``:
        the shape and statistics of :meth:`summary` (quantiles included), for any subset.

        Groups are the grouping's groups over all cells, in its order; a group the filter
        empties has ``n_cells`` 0, ``sum``/``sumsq``/``nnz`` 0 and every other stat NaN.
        When the filter keeps every group whole or drops it entirely (no filter, a filter
        that keeps every cell, a filter on the grouping's own columns) and the grouping is
        precomputed for the layer, the answer comes from the precomputed views
        (``source: "precomputed"``); otherwise it is computed exactly from the gene-major
        view (``source: "computed"``; ``precomputed=False`` forces that path).

            >>> wc.aggregate("pbmc", genes=["CD3E"], groupby="cell_type", stats=["mean"],
            ...              filter={"donor": ["D1", "D2"]})["source"]  # doctest: +SKIP
            'computed'
        """
        self.door.authorize(actor, "read", dataset)
        record, snap, index = self._indexed(dataset, version)
        layer = index.layer(dataset, layer)
        idx = index.gene_index(dataset, genes)
        stats = split_stats(stats)
        quantiles = index.quantile_names
        known = [*SUMMARY_STATS, *quantiles]
        unknown = [s for s in stats if s not in known]
        if unknown:
            _views.refuse_stats(snap, unknown, known)
        grouping = index.grouping(dataset, groupby)
        spec = selection(filter, lasso=lasso)
        mask, kept = index.selection(dataset, spec)
        counts = index.group_counts(spec, grouping, mask)
        values: dict[str, np.ndarray] | None = None
        missing: _views.ViewMissing | None = None
        if precomputed and bool(np.all((counts == 0) | (counts == grouping.n_cells))):
            try:
                groups, stored = _views.precomputed(snap, groupby, layer, idx, stats)
            except InvalidQuery as exc:  # this grouping, layer or view is not precomputed
                groups, missing = [], exc if isinstance(exc, _views.ViewMissing) else None
            if groups == grouping.names:
                values = {s: _drop_groups(s, v, counts == 0) for s, v in stored.items()}
        source = "precomputed" if values is not None else "computed"
        if values is None:
            if missing is not None and not index.has_matrix:  # either view would do: name the first
                raise missing
            data = index.gene_data(dataset, record.version, idx, layer)
            values = summarize(data, mask, grouping.codes, counts, stats, quantiles=quantiles)
        notes = _withhold(_integers(values), index.withheld(layer))
        return Aggregate(
            dataset=dataset,
            version=record.version,
            groupby=groupby,
            layer=layer,
            groups=list(grouping.names),
            genes=list(genes),
            values=values,
            filter=spec.filter_json(),
            cells=kept,
            source=source,
            unit=index.unit(layer),
            notes=notes,
        )

    @serving
    def markers(
        self,
        dataset: str,
        *,
        groupby: str,
        group: str | None = None,
        layer: str | None = None,
        limit: int = 100,
        version: str | None = None,
        actor: Actor = ANONYMOUS,
    ) -> Markers:
        """The top marker genes of one group (one-vs-rest), best first; without ``group``, of
        every group of the grouping at once (its order), each record naming its ``group``."""
        self.door.authorize(actor, "read", dataset)
        record, snap, index = self._indexed(dataset, version)
        layer = index.layer(dataset, layer)
        rows = index.marker_rows(groupby, layer, lambda: _views.marker_table(snap, groupby, layer))
        if group is not None and group not in rows:
            raise InvalidQuery(f"groupby {groupby!r} of dataset {dataset!r} has no group {group!r}")
        notes = self._marker_notes(snap, index, layer)
        records: list[dict[str, Any]] = []
        for name in [group] if group is not None else list(rows):
            top = rows[name].head(limit)[_MARKER_COLUMNS].to_dict(orient="records")
            records += [{"group": name, **r} if group is None else r for r in top]
        for r in records:
            r.update(dict.fromkeys(notes))
        return Markers(
            dataset=dataset,
            version=record.version,
            groupby=groupby,
            group=group,
            layer=layer,
            markers=records,
            unit=index.unit(layer),
            notes=notes,
        )

    @staticmethod
    def _marker_notes(snap: Snapshot, index: SnapshotIndex, layer: str) -> dict[str, str]:
        """``{marker field: why it is null}``: fractions expressing on scaled values, and fold
        changes the markers view did not take as the layer's kind needs."""
        notes = {f: why for f, why in index.withheld(layer).items() if f in _MARKER_COLUMNS}
        if _views.marker_fold_change(snap, layer) is None:
            kind = index.input_kind
            notes["logfoldchange"] = (
                f"withheld: layer {layer!r} holds scaled values (with negatives), whose ratio of "
                "means is no fold change"
                if kind == "scaled"
                else f"withheld: this version was ingested before widecube recorded the kind of "
                f"input, and layer {layer!r} is not counts; ingest it again for fold changes"
            )
        return notes

    @serving
    def gene_stats(
        self,
        dataset: str,
        *,
        genes: list[str],
        layer: str | None = None,
        version: str | None = None,
        actor: Actor = ANONYMOUS,
    ) -> GeneStats:
        """Per-gene statistics over all cells (mean, var, min, max, dispersion, ...)."""
        self.door.authorize(actor, "read", dataset)
        record, snap, index = self._indexed(dataset, version)
        layer = index.layer(dataset, layer)
        table = _views.gene_table(snap, layer)
        rows = table.iloc[index.gene_index(dataset, genes)]
        return GeneStats(
            dataset=dataset,
            version=record.version,
            layer=layer,
            genes=list(genes),
            stats={c: rows[c].to_numpy() for c in rows.columns},
            unit=index.unit(layer),
        )

    @serving
    def cell_stats(self, dataset: str, *, version: str | None = None, actor: Actor = ANONYMOUS) -> CellStats:
        """Per-cell library size and detected genes, in obs order."""
        self.door.authorize(actor, "read", dataset)
        record, _, index = self._indexed(dataset, version)
        obs = index.obs
        return CellStats(
            dataset=dataset,
            version=record.version,
            n_cells=len(obs),
            total_counts=obs["total_counts"].to_numpy(),
            n_genes_by_counts=obs["n_genes_by_counts"].to_numpy(),
        )

    # -- embeddings -----------------------------------------------------------------------

    @serving
    def embeddings(self, dataset: str, version: str | None = None, *, actor: Actor = ANONYMOUS) -> Embeddings:
        """The embeddings (obsm keys) of a version and what can colour them.

        ``colors`` maps each obs column usable as a colour to ``category`` or ``numeric``;
        ``gene_colors`` says whether genes can colour cells (needs the gene-major view).
        """
        self.door.authorize(actor, "read", dataset)
        record, snap, index = self._indexed(dataset, version)
        obs = index.obs
        colors = {str(c): kind for c in obs.columns if (kind := _color_kind(obs[c])) is not None}
        return Embeddings(
            dataset=dataset,
            version=record.version,
            embeddings={k: {"shape": list(v["shape"])} for k, v in snap.manifest.get("obsm", {}).items()},
            colors=colors,
            gene_colors=index.has_matrix,
        )

    @serving
    def embedding(
        self,
        dataset: str,
        key: str,
        *,
        color: str | None = None,
        version: str | None = None,
        actor: Actor = ANONYMOUS,
    ) -> Embedding:
        """Coordinates of embedding ``key`` (one float32 array per dimension, obs order).

        ``color`` names an obs column (categorical: ``codes`` into ``categories``, -1 where
        missing; numeric: ``values``) or, when the version has the gene-major view, a gene
        (``values`` per cell). Obs columns win over genes of the same name.

            >>> wc.embedding("pbmc", "X_umap", color="cell_type")["color"]["categories"][:2]  # doctest: +SKIP
        """
        self.door.authorize(actor, "read", dataset)
        record, snap, index = self._indexed(dataset, version)
        entries = snap.manifest.get("obsm", {})
        if key not in entries:
            raise InvalidQuery(
                f"dataset {dataset!r} has no embedding {key!r}; available: {', '.join(entries) or 'none'}"
            )
        return Embedding(
            dataset=dataset,
            version=record.version,
            key=key,
            n_cells=snap.n_cells,
            coordinates=index.embedding(key, entries[key]["path"]),
            color=None if color is None else self._cell_colors(dataset, record.version, snap, index, color),
        )

    @serving
    def gene_values(
        self,
        dataset: str,
        gene: str,
        *,
        layer: str | None = None,
        version: str | None = None,
        actor: Actor = ANONYMOUS,
    ) -> tuple[str, np.ndarray]:
        """(version, one float32 value per cell in obs order) of ``gene``, read from the
        gene-major view: one contiguous range of its CSC arrays, zeros filled in."""
        self.door.authorize(actor, "read", dataset)
        record, snap, index = self._indexed(dataset, version)
        layer = index.layer(dataset, layer)
        data = index.gene_data(dataset, record.version, index.gene_index(dataset, [gene]), layer)
        return record.version, expression(data, None, snap.n_cells)[0]

    def _cell_colors(
        self, dataset: str, version: str, snap: Snapshot, index: SnapshotIndex, color: str
    ) -> CellColor:
        # the caller was authorized for ``dataset`` by :meth:`embedding`
        obs = index.obs
        if color in obs.columns:
            kind = _color_kind(obs[color])
            if kind is None:
                raise InvalidQuery(
                    f"obs column {color!r} of dataset {dataset!r} is neither "
                    "categorical nor numeric, so it cannot colour cells"
                )
            return index.obs_color(color, lambda: _obs_color(obs[color], kind))
        if color in snap.var_names:
            if not index.has_matrix:
                raise _views.require(snap, "matrix", "colouring cells by a gene reads it")
            _, values = self.gene_values(dataset, color, version=version)
            return ValueColor(name=color, kind="gene", values=np.ascontiguousarray(values, np.float32))
        raise InvalidQuery(f"dataset {dataset!r} has no obs column or gene {color!r}")


def _kept_ids(ids: pd.Index, mask: np.ndarray | None) -> list[str]:
    """The ids of the kept cells (``mask`` None: every cell), in obs order, as strings."""
    kept = ids if mask is None else ids[mask]
    return [str(c) for c in kept]


def split_stats(stats: list[str]) -> list[str]:
    """``["mean,median", "n_cells"]`` → ``["mean", "median", "n_cells"]``: a stat may also be
    given as names joined by commas (``stats=mean,median`` in a URL), in order, once each."""
    return list(dict.fromkeys(s.strip() for part in stats for s in part.split(",") if s.strip()))


def _integers(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Counts (``n_cells``, ``nnz``) as int64, in place, so that JSON says 120, not 120.0."""
    for stat in _COUNTS & values.keys():
        v = np.asarray(values[stat])
        if v.dtype.kind == "f" and np.isfinite(v).all():
            values[stat] = v.astype(np.int64)
    return values


def _withhold(values: dict[str, np.ndarray], withheld: dict[str, str]) -> dict[str, str]:
    """Null (NaN) the asked statistics that the layer's kind does not define, in place;
    ``{stat: why}`` of those."""
    notes = {stat: why for stat, why in withheld.items() if stat in values}
    for stat in notes:
        values[stat] = np.full(np.shape(values[stat]), np.nan)
    return notes


def _drop_groups(stat: str, values: np.ndarray, dropped: np.ndarray) -> np.ndarray:
    """``values`` with the rows of groups that lost every cell: 0 for counts and sums, else NaN."""
    if not dropped.any():
        return values
    out = np.array(values, dtype=np.float64)
    out[dropped] = 0.0 if stat in _ADDITIVE else np.nan
    return out


def _color_kind(column: pd.Series) -> str | None:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype):
        return "numeric"
    return None


def _obs_color(column: pd.Series, kind: str) -> CellColor:
    if kind == "category":
        cats = column.cat.categories
        dtype = np.int8 if len(cats) < 127 else np.int16 if len(cats) < 32767 else np.int32
        return CategoryColor(
            name=str(column.name),
            kind="category",
            categories=[str(c) for c in cats],
            codes=column.cat.codes.to_numpy().astype(dtype),
        )
    return ValueColor(name=str(column.name), kind="numeric", values=column.to_numpy(dtype=np.float32))
