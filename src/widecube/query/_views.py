"""Every call the queries make into the precomputed views, in one place.

The queries never touch a view object elsewhere: how a view is found and read (today the
registered view objects of :mod:`widecube.views`) changes here only.

A version may hold only some views (``widecube ingest --views``): it is described by those
it has, and a read that needs one it lacks is a :class:`~widecube.views.ViewMissing` (422)
naming the ``--views`` that would build it, never an "unknown" statistic.
"""

from __future__ import annotations

from typing import Any, NoReturn

import numpy as np
import pandas as pd

from ..errors import InvalidQuery
from ..snapshot import Snapshot
from ..views import (
    INPUT,
    GenesReader,
    MarkersReader,
    MatrixReader,
    QuantilesReader,
    ViewMissing,
    detect_kind,
    get_view,
    has_view,
    missing_view,
    reader,
    views,
)

__all__ = [
    "ViewMissing",
    "describe",
    "gene_table",
    "has_matrix",
    "input_kind",
    "marker_fold_change",
    "marker_table",
    "matrix_csc",
    "matrix_target_sum",
    "precomputed",
    "quantile_levels",
    "refuse_stats",
    "require",
    "warm_views",
]


def describe(snap: Snapshot) -> dict[str, Any]:
    """``{view name: what it holds}`` of the views the version has, for the dataset detail."""
    return {v.name: v.describe(snap) for v in views() if has_view(snap, v.name)}


def require(snap: Snapshot, name: str, needed_for: str) -> ViewMissing:
    """The 422 (to raise) for a read of view ``name``, which ``snap`` lacks; ``needed_for``
    says why it is needed ("per-cell values read it")."""
    return missing_view(snap, name, needed_for)


def refuse_stats(snap: Snapshot, unknown: list[str], known: list[str]) -> NoReturn:
    """Refuse statistics nothing here serves: a 422 naming the view the version was built
    without that would serve the first of them, else one listing the ``known`` statistics."""
    parameters = snap.manifest.get("parameters", {})
    for view in views():
        if not has_view(snap, view.name):
            planned = view.stats(parameters)
            stat = next((s for s in unknown if s in planned), None)
            if stat is not None:
                raise missing_view(snap, view.name, f"it serves {stat}")
    raise InvalidQuery(f"unknown stat {unknown[0]!r}; known stats: {', '.join(known)}")


def precomputed(
    snap: Snapshot, groupby: str, layer: str, idx: np.ndarray, stats: list[str]
) -> tuple[list[str], dict[str, np.ndarray]]:
    """(groups, {stat: (n_groups, n_genes)}) from the views that serve each stat."""
    served = {stat: view for view in views() for stat in view.served(snap)}
    unknown = [s for s in stats if s not in served]
    if unknown:
        refuse_stats(snap, unknown, list(served))
    groups: list[str] = []
    values: dict[str, np.ndarray] = {}
    for view in dict.fromkeys(served[s] for s in stats):
        asked = [s for s in stats if served[s] is view]
        groups, got = view.query(snap, groupby, layer, idx, asked)
        values.update(got)
    return groups, {s: values[s] for s in stats}


def marker_table(snap: Snapshot, groupby: str, layer: str) -> pd.DataFrame:
    """The markers view's table of one grouping and layer (all groups)."""
    return reader(snap, "markers", MarkersReader).table(groupby, layer)


def marker_fold_change(snap: Snapshot, layer: str) -> str | None:
    """How the markers view took the fold changes of ``layer`` (``expm1``, ``ratio``; None:
    withheld, as on scaled values)."""
    return reader(snap, "markers", MarkersReader).fold_change(layer)


def input_kind(snap: Snapshot) -> str | None:
    """The kind of input the version was built from (counts, log1p, scaled).

    Recorded in the manifest since format 0.3.0. Before, only ``input.counts`` was: count
    input is counts; other input is told apart as ingest would have, from the genes view's
    per-gene minimum of the input layer (a negative: scaled; else log1p); None when the
    version has no genes view to tell.
    """
    given = snap.manifest.get("input", {})
    if given.get("kind"):
        return str(given["kind"])
    if given.get("counts"):
        return "counts"
    if not has_view(snap, "genes"):
        return None
    minimum = reader(snap, "genes", GenesReader).table(INPUT)["min"].to_numpy()
    return detect_kind(negative=bool((minimum < 0).any()), non_integer=True)


def gene_table(snap: Snapshot, layer: str) -> pd.DataFrame:
    """The genes view's per-gene statistics of one layer."""
    return reader(snap, "genes", GenesReader).table(layer)


def has_matrix(snap: Snapshot) -> bool:
    """Whether the version has the gene-major view (per-cell values, filtered aggregates)."""
    return has_view(snap, "matrix")


def matrix_csc(snap: Snapshot) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The gene-major view's ``(indptr, indices, data)``, decoded and memory-mapped."""
    return reader(snap, "matrix", MatrixReader).csc()


def matrix_target_sum(snap: Snapshot) -> float:
    """The library size the normalized layer scales every cell to."""
    return reader(snap, "matrix", MatrixReader).target_sum


def quantile_levels(snap: Snapshot) -> dict[str, float]:
    """``{"median": 0.5, "q10": 0.1, …}`` of the version's quantiles view; without one, those
    its ingest would have stored if the gene-major view can compute them, else none."""
    if has_view(snap, "quantiles"):
        return reader(snap, "quantiles", QuantilesReader).levels()
    if not has_matrix(snap):
        return {}
    levels = [float(q) for q in snap.manifest.get("parameters", {}).get("quantiles") or ()]
    return dict(zip(get_view("quantiles").stats({"quantiles": levels}), levels, strict=True))


def warm_views(snap: Snapshot) -> None:
    """Decode every grouped array of a version (each view, grouping and layer) into the cache."""
    first = np.zeros(1, dtype=np.intp)
    for view in views():
        served = [s for s in view.served(snap) if s != "n_cells"]
        layers = snap.manifest.get("views", {}).get(view.name, {}).get("layers", {})
        if not served or not isinstance(layers, dict):
            continue
        for layer, groupbys in layers.items():
            for groupby in groupbys:
                view.query(snap, groupby, layer, first, served)
