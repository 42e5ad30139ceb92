"""One streaming pass: per-(group, gene) n_cells, nnz, sum and sum of squares.

Every grouping is stacked on one group axis, so a single sweep over the blocks feeds all
of them. Accumulators take ``n_groups_total × n_genes × 20`` bytes, whatever the number of
cells; if that exceeds half the memory budget the genes are split into windows, one pass
each, and results land in memory-mapped files in the job's work folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from ..errors import InvalidValue
from ..io import Block, MatrixSource
from .groupings import Grouping
from .kernels import accumulate_moments
from .stream import prefetch

__all__ = ["GroupMoments", "Moments", "compute_moments"]

Progress = Callable[[float], None]


@dataclass(frozen=True)
class GroupMoments:
    """Raw moments of one grouping: arrays of shape (n_groups, n_genes)."""

    grouping: Grouping
    sum: np.ndarray
    sumsq: np.ndarray
    nnz: np.ndarray


@dataclass(frozen=True)
class Moments:
    """The result of the pass: moments for every grouping, plus per-gene min and max."""

    groups: dict[str, GroupMoments]
    gene_min: np.ndarray  # over stored non-zero values; +inf where a gene has none
    gene_max: np.ndarray  # -inf where a gene has none


def _check_finite(
    source: MatrixSource, obs_names: Sequence[str], var_names: Sequence[str]
) -> Callable[[Block], None]:
    def check(block: Block) -> None:
        data = block.matrix.data
        if data.dtype.kind != "f":
            return
        finite = np.isfinite(data)
        if finite.all():
            return
        k = int(np.argmin(finite))
        row = int(np.searchsorted(block.matrix.indptr, k, side="right")) - 1 + block.row_start
        col = int(block.matrix.indices[k]) + block.col_start
        what = "NaN" if np.isnan(data[k]) else "infinite value"
        raise InvalidValue(
            f"{source.path.name}: {what} found at row {row} (cell {obs_names[row]!r}), "
            f"column {col} (gene {var_names[col]!r})"
        )

    return check


def _windows(n_genes: int, n_groups: int, budget: int) -> list[tuple[int, int]]:
    per_gene = max(1, n_groups) * 20
    width = max(1, min(n_genes, (budget // 2) // per_gene))
    return [(lo, min(n_genes, lo + width)) for lo in range(0, n_genes, width)]


def compute_moments(
    source: MatrixSource,
    groupings: Sequence[Grouping],
    *,
    obs_names: Sequence[str],
    var_names: Sequence[str],
    memory: int,
    block_nnz: int,
    workdir: Path,
    threads: int = 0,
    progress: Progress | None = None,
) -> Moments:
    """Stream ``source`` once per gene window and return the moments of all groupings."""
    n_cells, n_genes = source.shape
    offsets = np.cumsum([0] + [g.n_groups for g in groupings])
    n_total = int(offsets[-1])
    codes = np.empty((len(groupings), n_cells), dtype=np.int32)
    for i, g in enumerate(groupings):
        codes[i] = g.codes + offsets[i]
    finest = int(np.argmax([g.n_groups for g in groupings]))
    windows = _windows(n_genes, n_total, memory)
    if len(windows) == 1:
        sums = np.zeros((n_total, n_genes))
        sumsq = np.zeros((n_total, n_genes))
        nnz = np.zeros((n_total, n_genes), dtype=np.int32)
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        sums, sumsq, nnz = (
            np.lib.format.open_memmap(workdir / f"moments-{k}.npy", "w+", dt, (n_total, n_genes))
            for k, dt in (("sum", np.float64), ("sumsq", np.float64), ("nnz", np.int32))
        )
    gmin = np.full(n_genes, np.inf)
    gmax = np.full(n_genes, -np.inf)
    n_threads = threads or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    check = _check_finite(source, obs_names, var_names)
    for lo, hi in windows:
        parts = min(hi - lo, 8 * n_threads)
        bounds = np.linspace(lo, hi, parts + 1).astype(np.int64)
        w_sum = np.zeros((n_total, hi - lo)) if len(windows) > 1 else sums
        w_sq = np.zeros((n_total, hi - lo)) if len(windows) > 1 else sumsq
        w_nnz = np.zeros((n_total, hi - lo), dtype=np.int32) if len(windows) > 1 else nnz
        for block in prefetch(source.iter_blocks(block_nnz=block_nnz, columns=(lo, hi)), check=check):
            m = block.matrix
            r0, r1 = block.row_start, block.row_start + m.shape[0]
            block_codes = np.ascontiguousarray(codes[:, r0:r1])
            order = np.argsort(block_codes[finest], kind="stable")
            accumulate_moments(
                m.indptr, m.indices, m.data, order, block_codes,
                block.col_start, bounds, lo, w_sum, w_sq, w_nnz, gmin[lo:hi], gmax[lo:hi],
            )  # fmt: skip
            if progress is not None:
                area = m.shape[0] * min(m.shape[1], hi - lo)
                progress(area / (n_cells * (hi - lo) * len(windows)))
        if len(windows) > 1:
            sums[:, lo:hi], sumsq[:, lo:hi], nnz[:, lo:hi] = w_sum, w_sq, w_nnz
    groups = {
        g.key: GroupMoments(g, *(a[offsets[i] : offsets[i + 1]] for a in (sums, sumsq, nnz)))
        for i, g in enumerate(groupings)
    }
    return Moments(groups, gmin, gmax)


