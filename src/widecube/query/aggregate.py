"""Summaries over any subset of cells, computed exactly on the fly from gene-major data.

A *filter* keeps the cells whose value in each named categorical obs column is one of the
listed categories: AND across columns, OR within a column; ``"(missing)"`` names the cells
with no value; an empty list keeps no cell. :func:`cell_mask` turns it into a boolean mask
and rejects unknown columns and categories by name (numeric ranges, lassos and other parts of
a selection: :mod:`widecube.query.selection`).

:func:`summarize` answers the same statistics as the precomputed ``summary`` and
``quantiles`` views, with the same semantics, for the kept cells grouped by a grouping:
float64 moments accumulated over each gene's stored values in the same order as the ingest
(so a subset that is all cells gives the very same sums), ``var`` with ddof=1, quantiles with
the zeros included, ``numpy.quantile(method="linear")`` with the ingest kernel's own
interpolation, rounded to float32 as the stored view is. One numba kernel reads the
memory-mapped CSC arrays directly (bands of genes on several cores for large queries): per
gene one pass filters, normalizes and accumulates; a second places the values of only those
groups whose requested quantiles fall outside their zeros, and selects the needed order
statistics among those (the ingest kernel's own helper).
Groups keep the grouping's names and order; a group with no kept cell has ``n_cells`` 0,
``sum``/``sumsq``/``nnz`` 0 and every other statistic NaN (JSON null).

    >>> mask = cell_mask(columns, {"donor": ["D1", "D2"]}, dataset="pbmc")   # doctest: +SKIP
    >>> summarize(genes, mask, grouping, ["mean", "median"], quantiles={"median": 0.5})
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from numba import njit

from ..compute import COUNT_RANGE as _COUNT_RANGE
from ..compute import MISSING, derive, group_quantiles
from ..errors import InvalidQuery

__all__ = ["Column", "GeneData", "cell_mask", "expression", "summarize"]


class Column(NamedTuple):
    """A categorical obs column: integer codes per cell (-1: missing) and its categories."""

    codes: np.ndarray
    categories: list[str]


class GeneData(NamedTuple):
    """The queried genes in the gene-major (CSC) arrays.

    ``indptr``/``indices``/``data`` are the whole CSC arrays (memory-mapped: only the
    queried genes' ranges are read); ``scale`` is per cell ``target_sum / library size``
    (0 for an empty cell) when the layer is normalized (``log1p(x * scale)``), else None.
    """

    genes: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    scale: np.ndarray | None


def cell_mask(
    columns: Mapping[str, Column], filter: Mapping[str, Iterable[str]] | None, *, dataset: str, n_cells: int
) -> np.ndarray | None:
    """The cells ``filter`` keeps (None: every cell, for an empty filter).

    ``columns`` holds the dataset's categorical obs columns. Raises :class:`InvalidQuery`
    naming the unknown columns, or a column's unknown categories.
    """
    spec = tuple(sorted((str(c), tuple(sorted(set(map(str, v))))) for c, v in (filter or {}).items()))
    unknown = [c for c, _ in spec if c not in columns]
    if unknown:
        raise InvalidQuery(
            f"dataset {dataset!r} has no categorical obs column {', '.join(map(repr, unknown))} to filter "
            f"on; available: {', '.join(columns) or 'none'}"
        )
    mask: np.ndarray | None = None
    for name, kept in spec:
        column = columns[name]
        position = {c: i for i, c in enumerate(column.categories)}
        missing = [c for c in kept if c not in position and c != MISSING]
        if missing:
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise InvalidQuery(
                f"obs column {name!r} of dataset {dataset!r} has no category "
                f"{', '.join(map(repr, missing[:10]))}{more}"
            )
        # one lookup per cell; code -1 (missing) reads the table's last slot
        table = np.zeros(len(column.categories) + 1, dtype=bool)
        table[[position[c] for c in kept if c != MISSING]] = True
        table[-1] = MISSING in kept
        keep = table[column.codes]
        mask = keep if mask is None else np.logical_and(mask, keep, out=mask)
    if mask is not None and mask.shape != (n_cells,):
        raise AssertionError("obs codes do not cover every cell")
    return mask


def expression(data: GeneData, mask: np.ndarray | None, n_cells: int) -> list[np.ndarray]:
    """Per gene, one float32 value per kept cell, in obs order (zeros filled in)."""
    out = []
    for j in data.genes:
        s, e = int(data.indptr[j]), int(data.indptr[j + 1])
        cells, raw = np.asarray(data.indices[s:e]), np.asarray(data.data[s:e])
        values = np.zeros(n_cells, dtype=np.float32)
        if data.scale is None:
            values[cells] = raw
        else:
            values[cells] = np.log1p(raw.astype(np.float64) * data.scale[cells])
        out.append(values if mask is None else values[mask])
    return out


def summarize(
    data: GeneData,
    mask: np.ndarray | None,
    codes: np.ndarray,
    group_cells: np.ndarray,
    stats: Sequence[str],
    *,
    quantiles: Mapping[str, float],
) -> dict[str, np.ndarray]:
    """``{stat: (n_groups, n_genes)}`` over the kept cells, grouped by ``codes``.

    ``codes`` (int32 per cell) is the grouping, ``group_cells`` the kept cells per group;
    ``quantiles`` maps the quantile statistics' names to their q (``{"median": 0.5}``).
    """

    n_groups, n_genes = len(group_cells), len(data.genes)
    want_q = [s for s in stats if s in quantiles]
    qs = np.asarray([quantiles[s] for s in want_q], dtype=np.float64)
    sums, sumsq = np.zeros((n_genes, n_groups)), np.zeros((n_genes, n_groups))
    nnz = np.zeros((n_genes, n_groups), dtype=np.int64)
    qvals = np.zeros((n_genes, n_groups, len(qs)))
    genes = np.asarray(data.genes, dtype=np.int64)
    indptr = np.asarray(data.indptr)
    sizes = np.asarray(group_cells, dtype=np.int64)
    starts, ends = indptr[genes], indptr[genes + 1]
    keep = np.zeros(0, dtype=bool) if mask is None else mask
    scale = np.zeros(0) if data.scale is None else data.scale
    shared = (
        np.asarray(data.indices),
        np.asarray(data.data),
        keep,
        np.ascontiguousarray(codes, dtype=np.int32),
        scale,
        sizes,
        qs,
    )

    def run(lo: int, hi: int) -> None:
        filtered_summary(
            starts[lo:hi], ends[lo:hi], *shared, sums[lo:hi], sumsq[lo:hi], nnz[lo:hi], qvals[lo:hi]
        )

    bands = _bands(ends - starts)
    if len(bands) == 1:
        run(*bands[0])
    else:  # the kernel releases the GIL: bands of genes run on several cores
        for future in [_pool().submit(run, lo, hi) for lo, hi in bands]:
            future.result()
    n = sizes[:, None]
    out: dict[str, np.ndarray] = {}
    for stat in stats:
        if stat in quantiles:
            value = qvals[:, :, want_q.index(stat)].T.astype(np.float32).astype(np.float64)
            value[sizes == 0] = np.nan
        else:
            value = derive(stat, n, sums.T, sumsq.T, nnz.T)
        out[stat] = np.ascontiguousarray(value, dtype=np.float64)
    return out


PARALLEL_VALUES = 200_000
"""Below this many stored values a query runs on one thread (a thread hop costs more)."""

_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="aggregate")
    return _POOL


def _bands(sizes: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous bands of genes with about equal stored values, one per core (or one)."""
    total = int(sizes.sum())
    n = min(len(sizes), os.cpu_count() or 1, max(1, total // (PARALLEL_VALUES // 2)))
    if n <= 1:
        return [(0, len(sizes))]
    cuts = np.searchsorted(np.cumsum(sizes), np.arange(1, n) * total / n)
    edges = sorted({0, *(int(c) + 1 for c in cuts), len(sizes)})
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


@njit(nogil=True, cache=False)
def filtered_summary(
    starts: np.ndarray,
    ends: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    keep: np.ndarray,
    codes: np.ndarray,
    scale: np.ndarray,
    sizes: np.ndarray,
    qs: np.ndarray,
    out_sum: np.ndarray,
    out_sumsq: np.ndarray,
    out_nnz: np.ndarray,
    out_q: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Per queried gene ``j`` (stored range ``starts[j]:ends[j]`` of the CSC arrays) and group:
    sum, sum of squares and non-zeros of the kept cells, and quantiles ``qs`` with zeros.

    ``keep`` is a mask per cell (empty: every cell), ``codes`` the group of each cell,
    ``scale`` per cell for the normalized layer (empty: raw values), ``sizes`` the kept cells
    per group. Outputs are zeroed, ``(n_genes, n_groups)`` and ``(n_genes, n_groups, len(qs))``.
    """
    n_groups = sizes.shape[0]
    n_q = qs.shape[0]
    filtered = keep.shape[0] > 0
    normalize = scale.shape[0] > 0
    ranks = np.empty(4 * n_q + 4, dtype=np.int64)
    stack = np.empty((130, 5), dtype=np.int64)
    hist = np.empty(_COUNT_RANGE, dtype=np.int64)
    for j in range(starts.shape[0]):
        s, e = starts[j], ends[j]
        negative = np.zeros(n_groups, dtype=np.int64)
        kept_values = np.empty(e - s if n_q else 0, dtype=np.float64)  # for the second pass
        kept_groups = np.empty(e - s if n_q else 0, dtype=np.int32)
        n_kept = 0
        for k in range(s, e):
            c = indices[k]
            if filtered and not keep[c]:
                continue
            v = np.float64(data[k])
            if normalize:
                v = np.log1p(v * scale[c])
            g = codes[c]
            out_sum[j, g] += v
            out_sumsq[j, g] += v * v
            out_nnz[j, g] += 1
            if v < 0.0:
                negative[g] += 1
            if n_q:
                kept_values[n_kept] = v
                kept_groups[n_kept] = g
                n_kept += 1
        if n_q == 0:
            continue
        # only groups with a requested rank outside their zeros need their stored values
        start = np.zeros(n_groups + 1, dtype=np.int64)
        for g in range(n_groups):
            n, m, n_neg = sizes[g], out_nnz[j, g], negative[g]
            need = False
            if n > 0 and m > 0:
                for t in range(n_q):
                    pos = qs[t] * (n - 1)
                    lo = int(np.floor(pos))
                    hi = lo + 1 if pos - lo > 0.0 and lo + 1 < n else lo
                    if lo < n_neg or hi >= n - m + n_neg:
                        need = True
            start[g + 1] = start[g] + (m if need else 0)
        bucket = np.empty(start[n_groups], dtype=np.float64)
        fill = start[:n_groups].copy()
        for i in range(n_kept):
            g = kept_groups[i]
            if start[g + 1] > start[g]:
                bucket[fill[g]] = kept_values[i]
                fill[g] += 1
        for g in range(n_groups):
            n = sizes[g]
            if n == 0:
                continue
            part = bucket[start[g] : start[g + 1]]  # empty when only zeros are needed
            group_quantiles(part, n, negative[g], qs, out_q[j, g], ranks, stack, hist)
