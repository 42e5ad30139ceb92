"""Violins: per group, the exact histogram of a gene's non-zero values and the number of zeros.

Read from the gene-major view one gene at a time (memory bounded by the gene's stored values,
never by the number of cells): the values of the kept cells, in float32 as ``/expression``
serves them; bin edges per gene shared by every group, ``numpy.histogram_bin_edges`` of the
gene's non-zero values over all kept cells; then ``numpy.histogram`` per group with those
edges. A plot draws the density of the non-zero values (``counts / (nnz * width)``) and the
fraction of zeros beside it, so a sparse gene is not a line at 0.

    >>> v = histograms(data, mask, codes, n_groups=3, bins=40)      # doctest: +SKIP
    >>> v[0]["counts"].shape
    (3, 40)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .aggregate import GeneData

__all__ = ["histograms"]


def histograms(
    data: GeneData, mask: np.ndarray | None, codes: np.ndarray, *, n_groups: int, bins: int
) -> list[dict[str, Any]]:
    """Per queried gene: ``edges`` (bins + 1; None when no kept cell expresses it), ``counts``
    (n_groups × bins, int64) and ``nnz`` (non-zero values per group)."""
    out = []
    for j in data.genes:
        s, e = int(data.indptr[j]), int(data.indptr[j + 1])
        cells = np.asarray(data.indices[s:e])
        raw = np.asarray(data.data[s:e])
        if mask is not None:
            kept = mask[cells]
            cells, raw = cells[kept], raw[kept]
        if data.scale is None:
            values = raw.astype(np.float32)
        else:
            values = np.log1p(raw.astype(np.float64) * data.scale[cells]).astype(np.float32)
        nonzero = values != 0
        values, groups = values[nonzero].astype(np.float64), codes[cells[nonzero]]
        nnz = np.bincount(groups, minlength=n_groups).astype(np.int64)
        counts = np.zeros((n_groups, bins), dtype=np.int64)
        edges = None
        if values.size:
            edges = np.histogram_bin_edges(values, bins=bins)
            order = np.argsort(groups, kind="stable")
            starts = np.concatenate([[0], np.cumsum(nnz)])
            ordered = values[order]
            for g in np.flatnonzero(nnz):
                counts[g] = np.histogram(ordered[starts[g] : starts[g + 1]], bins=edges)[0]
        out.append({"edges": edges, "counts": counts, "nnz": nnz})
    return out
