"""Hierarchical order of groups, as ``scanpy.tl.dendrogram(var_names=genes)`` makes it for
``scanpy.pl.dotplot(dendrogram=True)``: the Pearson correlation between the groups' mean
expression over the genes, distance ``1 - correlation`` (clipped to [-1, 1] first), complete
linkage (``scipy.cluster.hierarchy.linkage``), and the leaf order of
``scipy.cluster.hierarchy.dendrogram``, with its drawing coordinates for the UI.

    >>> d = dendrogram(np.array([[1.0, 2.0, 3.0], [1.0, 2.1, 2.9], [3.0, 1.0, 0.0]]))
    >>> d["order"]
    [2, 0, 1]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidQuery

__all__ = ["dendrogram"]


def dendrogram(means: np.ndarray) -> dict[str, Any]:
    """``{order, linkage, icoord, dcoord, correlation}`` of groups (rows of ``means``, one column
    per gene). A group whose means are all equal has no correlation with any other: its
    distance to every group is 1 (scanpy would fail on the NaN)."""
    n_groups, n_genes = means.shape
    if n_groups < 2 or n_genes < 2:
        raise InvalidQuery(
            "a dendrogram orders at least 2 groups by their correlation over at least 2 genes "
            f"(here {n_groups} group(s) and {n_genes} gene(s))"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(means)
    corr = np.clip(np.nan_to_num(corr, nan=0.0), -1.0, 1.0)
    np.fill_diagonal(corr, 1.0)
    import scipy.cluster.hierarchy as sch  # here: 0.3 s of imports every server and CLI process skips
    from scipy.spatial import distance

    condensed = distance.squareform(1.0 - corr, checks=False)
    z = sch.linkage(condensed, method="complete", optimal_ordering=False)
    info = sch.dendrogram(z, no_plot=True)
    return {
        "order": [int(i) for i in info["leaves"]],
        "linkage": z.tolist(),
        "icoord": info["icoord"],
        "dcoord": info["dcoord"],
        "correlation": corr.tolist(),
    }
