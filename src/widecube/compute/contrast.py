"""Two sets of cells compared from their moments: the formulas the markers view stores (one
group against the rest) and the on-the-fly comparison computes (any two sets), in one place.

Welch's t and its two-sided p come from the numba kernel :func:`welch_t_p` (set A against
"all minus A", so two disjoint sets A and B are compared by passing A + B as "all"); the log2
fold change of means, where values that are log1p are first mapped back with ``expm1`` (as
scanpy's ``rank_genes_groups`` does); Benjamini-Hochberg adjusted p-values as
``scipy.stats.false_discovery_control`` computes them.

    >>> log_fold_change(np.array([3.0]), np.array([1.0]), log1p=False).round(6).tolist()
    [1.584962]
"""

from __future__ import annotations

import numpy as np

from ._kernels import welch_t_p

__all__ = ["EPS", "benjamini_hochberg", "log_fold_change", "welch"]

EPS = 1e-9
"""Added to both means before their ratio, so a gene absent from one side has a finite fold change."""


def log_fold_change(mean_in: np.ndarray, mean_out: np.ndarray, *, log1p: bool) -> np.ndarray:
    """log2((mean_in + EPS) / (mean_out + EPS)); with ``log1p`` the means are of log1p values
    and are first mapped back with ``expm1``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if log1p:
            mean_in, mean_out = np.expm1(mean_in), np.expm1(mean_out)
        return np.asarray(np.log2((mean_in + EPS) / (mean_out + EPS)))


def benjamini_hochberg(p: np.ndarray, rows: int = 64) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values of each row of a 2-d ``p`` (as scipy's
    false_discovery_control), ``rows`` rows at a time so the sort's temporaries stay small."""
    m = p.shape[1]
    out = np.empty_like(p)
    scale = m / np.arange(1, m + 1)
    for a in range(0, p.shape[0], rows):
        block = p[a : a + rows]
        order = np.argsort(block, axis=1)
        ranked = np.take_along_axis(block, order, axis=1) * scale
        ranked = np.minimum.accumulate(ranked[:, ::-1], axis=1)[:, ::-1]
        np.put_along_axis(out[a : a + rows], order, np.minimum(ranked, 1.0), axis=1)
    return out


def welch(
    n_a: float, s_a: np.ndarray, sq_a: np.ndarray, n_b: float, s_b: np.ndarray, sq_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(t, two-sided p) of Welch's test of set A against a disjoint set B, per gene, from each
    set's size, sums and sums of squares (1-d, one value per gene)."""
    t, p = np.empty((1, s_a.shape[0])), np.empty((1, s_a.shape[0]))
    welch_t_p(
        np.array([n_a], dtype=np.float64),
        np.ascontiguousarray(s_a, dtype=np.float64)[None, :],
        np.ascontiguousarray(sq_a, dtype=np.float64)[None, :],
        float(n_a + n_b),
        np.ascontiguousarray(s_a + s_b, dtype=np.float64),
        np.ascontiguousarray(sq_a + sq_b, dtype=np.float64),
        t,
        p,
    )
    return t[0], p[0]
