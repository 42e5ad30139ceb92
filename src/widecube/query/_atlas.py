"""Cross-dataset gene queries ("where is my gene"): the same genes, grouped the same way, in
every dataset a metadata filter selects, and pooled across them.

Each dataset answers from its precomputed summary view (the live version): per group of
``by`` the exact moments ``n_cells``, ``sum``, ``sumsq``, ``nnz`` of each asked gene. Its
statistics derive from them (:func:`widecube.compute.derive`), and so do the pooled ones,
from the moments summed over datasets (never an average of means): a group's pooled mean is
its total sum over its total cells. Groups are matched by name across datasets.

Genes are matched per dataset by symbol or stable ID (var's ``gene_ids``), any case (see
:mod:`widecube.genenames`); a gene a dataset lacks is listed under its ``absent``, its
statistics null there, and the pooled values of that gene count only the datasets that have
it. A selected dataset that cannot answer at all (no grouping ``by``, no such layer, built
without the summary view, out of service) is listed under ``skipped`` with the reason.

    >>> wc.atlas_expression(genes=["CD3E", "ENSG00000105374"], by="cell_type",
    ...                     filter={"organism": ["Homo sapiens"]})["pooled"]["groups"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..access import ANONYMOUS, SERVER, Actor
from ..compute import derive
from ..errors import DatasetNotFound, InvalidQuery, PermissionDenied, SnapshotCorrupt
from . import _views
from ._index import index_of
from ._resolve import Resolver
from .results import AtlasDataset, AtlasExpression, AtlasPooled

__all__ = ["ATLAS_STATS", "Atlas"]

ATLAS_STATS = ("mean", "frac_expressing", "var", "mean_expressing", "sum", "nnz")
"""What a cross-dataset query can answer besides ``n_cells`` (all derive from the moments)."""
_MOMENTS = ["n_cells", "sum", "sumsq", "nnz"]
_AUDITED = frozenset({"controlled", "phi"})


class Atlas(Resolver):
    """Genes across datasets."""

    def atlas_expression(
        self,
        *,
        genes: Sequence[str],
        by: str = "cell_type",
        filter: Mapping[str, Sequence[str]] | None = None,
        stats: Sequence[str] = ("mean", "frac_expressing"),
        layer: str = "normalized",
        actor: Actor = ANONYMOUS,
    ) -> AtlasExpression:
        """Per dataset and pooled: each group's ``n_cells`` and ``stats`` of ``genes``.

        ``filter`` selects datasets by their metadata: any facet (``organism``, ``tissue``,
        ``assay``, ``disease``, ``tag``) with the values to keep, ``q`` a full-text query,
        ``datasets`` names; without one, every live dataset the caller may read."""
        unknown = [s for s in stats if s not in ATLAS_STATS]
        if unknown:
            raise InvalidQuery(
                f"unknown stat {unknown[0]!r} for a cross-dataset query (stats: {', '.join(ATLAS_STATS)})"
            )
        asked = list(dict.fromkeys(g.strip() for g in genes if g.strip()))
        if not asked:
            raise InvalidQuery("a cross-dataset query needs at least one gene")
        spec = {
            str(k): [str(v) for v in ([vs] if isinstance(vs, str) else vs)]
            for k, vs in (filter or {}).items()
        }
        stats = list(dict.fromkeys(stats))
        selected = self._selected(spec, actor)
        parts: list[AtlasDataset] = []
        moments: list[tuple[AtlasDataset, dict[str, np.ndarray]]] = []
        skipped: list[dict[str, str]] = []
        for name in selected:
            try:
                part, raw = self._one(name, asked, by, layer, stats)
            except SnapshotCorrupt as exc:
                self._mark_corrupt(exc)
                skipped.append({"dataset": name, "reason": str(exc)})
                continue
            except InvalidQuery as exc:
                skipped.append({"dataset": name, "reason": str(exc)})
                continue
            parts.append(part)
            moments.append((part, raw))
        return AtlasExpression(
            genes=asked,
            by=by,
            layer=layer,
            stats=stats,
            filter=spec,
            datasets=parts,
            pooled=_pool(moments, len(asked), stats),
            skipped=skipped,
        )

    def _selected(self, spec: dict[str, list[str]], actor: Actor) -> list[str]:
        """The live datasets the filter selects and the caller may read, by name. Reads of
        controlled and phi data go through :meth:`Door.authorize` one by one (recorded in the
        audit log; phi is refused over plain HTTP), and a refused one is left out."""
        self.door.authorize(actor, "read", SERVER)
        live = [d.name for d in self.catalog.datasets() if d.current is not None]
        shown = self.door.visible(actor, live)
        if "datasets" in spec:
            named = set(spec["datasets"])
            shown = [n for n in shown if n in named]
        text = " ".join(spec.get("q", []))
        facets = {k: v for k, v in spec.items() if k not in ("q", "datasets")}
        hits = self.catalog.metadata.search(text, facets, among=shown).datasets
        policies = self.catalog.access.policies()
        kept = []
        for name in hits:
            policy = policies.get(name)
            if policy is not None and policy.classification in _AUDITED:
                try:
                    self.door.authorize(actor, "read", name)
                except (PermissionDenied, DatasetNotFound):
                    continue
            kept.append(name)
        return kept

    def _one(
        self, dataset: str, asked: list[str], by: str, layer: str, stats: list[str]
    ) -> tuple[AtlasDataset, dict[str, np.ndarray]]:
        """One dataset's answer (its live version) and its raw moments (for pooling)."""
        record, snap = self.resolve(dataset)
        index = index_of(snap)
        groupbys = snap.manifest["parameters"].get("groupbys") or []
        if by not in groupbys:
            raise InvalidQuery(
                f"dataset {dataset!r} has no grouping {by!r} (groupings: {', '.join(groupbys) or 'none'})"
            )
        index.layer(dataset, layer)
        names = index.gene_names
        matched = [names.find(g) for g in asked]
        present = [i for i, m in enumerate(matched) if m is not None]
        positions = index.gene_positions
        idx = np.asarray([positions[matched[i]] for i in present], dtype=np.int64)  # type: ignore[index]
        # with no asked gene present, gene 0 is read for the group sizes alone
        query = idx if len(idx) else np.zeros(1, dtype=np.int64)
        groups, stored = _views.precomputed(snap, by, layer, query, _MOMENTS)
        shape = (len(groups), len(asked))
        raw: dict[str, np.ndarray] = {m: np.zeros(shape) for m in ("sum", "sumsq", "nnz")}
        if present:
            for m in raw:
                raw[m][:, present] = stored[m]
        n_cells = stored["n_cells"][:, 0]
        has = np.zeros(len(asked), dtype=bool)
        has[present] = True
        raw["n_cells"] = np.asarray(n_cells, dtype=np.float64)
        raw["has"] = has
        n = raw["n_cells"][:, None]
        values = {}
        for s in stats:
            v = derive(s, n, raw["sum"], raw["sumsq"], raw["nnz"])
            values[s] = np.where(has[None, :], v, np.nan)
        part = AtlasDataset(
            dataset=dataset,
            version=record.version,
            groups=list(groups),
            genes=matched,
            absent=[g for g, m in zip(asked, matched, strict=True) if m is None],
            n_cells=raw["n_cells"].astype(np.int64),
            values=values,
        )
        return part, raw


def _pool(
    moments: list[tuple[AtlasDataset, dict[str, np.ndarray]]], n_genes: int, stats: list[str]
) -> AtlasPooled:
    """Every group over all datasets, from the summed moments (the cells of a dataset count
    for a gene only where the dataset has the gene)."""
    order: dict[str, int] = {}
    for part, _ in moments:
        for g in part.groups:
            order.setdefault(g, len(order))
    groups = sorted(order)
    at = {g: i for i, g in enumerate(groups)}
    shape = (len(groups), n_genes)
    n = np.zeros(shape)
    total = {m: np.zeros(shape) for m in ("sum", "sumsq", "nnz")}
    datasets = np.zeros(len(groups), dtype=np.int64)
    for part, raw in moments:
        rows = np.asarray([at[g] for g in part.groups], dtype=np.int64)
        if not len(rows):
            continue
        datasets[rows] += 1
        n[rows] += raw["n_cells"][:, None] * raw["has"][None, :]
        for m in total:
            total[m][rows] += raw[m]
    values = {s: derive(s, n, total["sum"], total["sumsq"], total["nnz"]) for s in stats}
    return AtlasPooled(groups=groups, datasets=datasets.tolist(), n_cells=n.astype(np.int64), values=values)
