"""Two sets of cells compared gene by gene, exactly, from the gene-major view.

One pass over the queried genes' stored values (the :func:`~.aggregate.summarize` kernel, bands
of genes on several cores, memory bounded by the number of genes, never by cells) gives each
set's sum, sum of squares and non-zero count per gene; everything else derives from those
moments with the formulas the markers view stores (:mod:`widecube.compute.contrast`): Welch's
t and two-sided p, the log2 fold change of means (``expm1`` first on log1p values), the
fractions expressing, and Benjamini-Hochberg adjusted p over the genes compared.

Sets may overlap: a cell in both counts in both (codes 0 = A only, 1 = B only, 2 = both).

    >>> table = contrast(data, a_mask, b_mask, log1p=True)          # doctest: +SKIP
    >>> table["t"][:3]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..compute import benjamini_hochberg, log_fold_change, welch
from ..errors import InvalidQuery
from ..views import FOLD_EXPM1
from .aggregate import GeneData, summarize

__all__ = ["FIELDS", "contrast", "ranked"]

FIELDS = ("t", "pval", "pval_adj", "logfoldchange", "mean_a", "mean_b", "pct_a", "pct_b")
"""Per gene, in this order, in every answer."""


def contrast(
    data: GeneData, a: np.ndarray, b: np.ndarray, *, fold: str | None, scaled: bool
) -> dict[str, np.ndarray]:
    """``{field: one value per queried gene}`` of set ``a`` against set ``b`` (boolean masks
    over every cell). ``fold``: how fold changes are taken on these values (``views._layers``:
    of ``expm1(mean)`` on log1p values, of the means on counts, None: withheld, NaN);
    ``scaled``: zero does not mean "not expressed", so no percent expressing (NaN)."""
    codes = np.full(a.shape[0], -1, dtype=np.int32)
    codes[a & ~b], codes[b & ~a], codes[a & b] = 0, 1, 2
    keep = codes >= 0
    sizes = np.bincount(codes[keep], minlength=3).astype(np.int64)
    m = summarize(data, keep, np.maximum(codes, 0), sizes, ["sum", "sumsq", "nnz"], quantiles={})
    s, sq, nnz = (m[k][0] + m[k][2] for k in ("sum", "sumsq", "nnz"))
    s_b, sq_b, nnz_b = (m[k][1] + m[k][2] for k in ("sum", "sumsq", "nnz"))
    n_a, n_b = float(sizes[0] + sizes[2]), float(sizes[1] + sizes[2])
    t, p = welch(n_a, s, sq, n_b, s_b, sq_b)
    mean_a, mean_b = s / n_a, s_b / n_b
    lfc = log_fold_change(mean_a, mean_b, log1p=fold == FOLD_EXPM1) if fold is not None else None
    return {
        "t": t,
        "pval": p,
        "pval_adj": benjamini_hochberg(p[None, :])[0] if p.size else p,
        "logfoldchange": np.full(t.shape, np.nan) if lfc is None else lfc,
        "mean_a": mean_a,
        "mean_b": mean_b,
        "pct_a": np.full(t.shape, np.nan) if scaled else nnz / n_a,
        "pct_b": np.full(t.shape, np.nan) if scaled else nnz_b / n_b,
    }


def ranked(t: np.ndarray, rank: str, top: int) -> np.ndarray:
    """Positions of the ``top`` genes by t: ``up`` (largest first), ``down`` (smallest first) or
    ``abs`` (largest magnitude first); NaN t last; ties keep gene order."""
    if rank not in ("up", "down", "abs"):
        raise InvalidQuery(f"rank must be 'up', 'down' or 'abs', not {rank!r}")
    score = {"up": t, "down": -t, "abs": np.abs(t)}[rank]
    score = np.where(np.isnan(score), -np.inf, score)
    return np.argsort(-score, kind="stable")[:top]


def records(genes: np.ndarray, table: dict[str, np.ndarray], rows: np.ndarray) -> list[dict[str, Any]]:
    """One JSON record per row (gene name first, then :data:`FIELDS`; NaN as None)."""

    def value(x: float) -> float | None:
        return None if np.isnan(x) else float(x)

    columns = {f: table[f][rows] for f in FIELDS}
    return [{"gene": str(genes[k]), **{f: value(columns[f][i]) for f in FIELDS}} for i, k in enumerate(rows)]
