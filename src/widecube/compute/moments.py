"""Per-group statistics from raw moments: the formulas the summary view stores and the
on-the-fly aggregate computes, in one place below both (views and queries import compute).

``sum``, ``sumsq`` (float64) and ``nnz`` are exact and combine over any union of groups;
``mean``, ``var`` (ddof=1), ``frac_expressing`` and ``mean_expressing`` derive from them.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidQuery

__all__ = ["BASE_STATS", "DERIVED_STATS", "SUMMARY_STATS", "derive"]

BASE_STATS = ("sum", "sumsq", "nnz")
DERIVED_STATS = ("mean", "var", "frac_expressing", "mean_expressing")
SUMMARY_STATS = (*BASE_STATS, *DERIVED_STATS, "n_cells")


def derive(stat: str, n_cells: np.ndarray, s: np.ndarray, sq: np.ndarray, nnz: np.ndarray) -> np.ndarray:
    """Statistic ``stat`` from raw moments; ``n_cells`` is a column (n_groups, 1)."""
    n = n_cells.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if stat in ("sum", "sumsq", "nnz"):
            return np.asarray({"sum": s, "sumsq": sq, "nnz": nnz}[stat], dtype=np.float64)
        if stat == "n_cells":
            return np.broadcast_to(n, np.shape(s)).astype(np.float64)
        if stat == "mean":
            return s / n
        if stat == "var":
            return np.where(n > 1, np.maximum(sq - s * s / n, 0.0) / (n - 1), np.nan)
        if stat == "frac_expressing":
            return nnz / n
        if stat == "mean_expressing":
            return np.where(nnz > 0, s / np.maximum(nnz, 1), np.nan)
    raise InvalidQuery(f"unknown stat {stat!r}")
