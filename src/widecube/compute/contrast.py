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

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import get_num_threads

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


def benjamini_hochberg(p: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values of each row of a 2-d ``p`` (as scipy's
    false_discovery_control), rows on ``threads`` threads (default: as many as the numba
    kernels use; numpy's sort runs free of the GIL).

    A p-value of 1 (a gene absent from a group, or without evidence) is adjusted to 1 whatever
    its rank: each row sorts only its smaller p-values, which come first in the full order,
    so their ranks and adjusted values are those a sort of the whole row gives."""
    m = p.shape[1]
    out = np.ones_like(p)
    scale = m / np.arange(1, m + 1)

    def adjust(i: int) -> None:
        row = p[i]
        below = np.flatnonzero(~(row >= 1.0))  # NaN among them: sorted last, as a whole-row sort does
        order = below[np.argsort(row[below])]
        ranked = row[order] * scale[: order.shape[0]]
        out[i, order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)

    n = threads if threads is not None else get_num_threads()
    if n <= 1 or p.shape[0] < 2:
        for i in range(p.shape[0]):
            adjust(i)
    else:
        with ThreadPoolExecutor(n, thread_name_prefix="widecube-bh") as pool:
            for _ in pool.map(adjust, range(p.shape[0])):
                pass
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
