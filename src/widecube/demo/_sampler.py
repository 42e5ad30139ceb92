"""Drawing the counts: per-component alias tables, then two numba passes over a block of cells.

:func:`build_sampler` turns the model's programs into alias tables (Vose) and a short list of
dense genes per component; :func:`plan_block` draws each cell's depth, module activity and
cluster counts, :func:`fill_block` draws the clusters and sums them per gene into sorted
(gene, count) pairs, and :func:`compact_block` closes the gaps between cells' slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit, prange

from ._model import SIGMA_DEPTH
from ._rng import gamma, logseries, mix, normal, poisson, uniform

__all__ = ["BIT_OF", "Sampler", "build_sampler", "compact_block", "fill_block", "plan_block"]

_Array = npt.NDArray[Any]

# Finding the set bits of the per-cell gene bitmap in order: isolate the lowest, look it up.
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
BIT_OF = np.zeros(64, dtype=np.int64)  # de Bruijn table: isolated bit -> its position
BIT_OF[[((1 << b) * 0x03F79D71B4CB0A89 % 2**64) >> 58 for b in range(64)]] = np.arange(64)


@dataclass(frozen=True)
class Sampler:
    """Per-component sampling tables at median depth ``depth`` (see :mod:`widecube.demo`).

    Genes expecting more than ``_DENSE`` clusters in a typical cell are drawn directly as
    gamma-Poisson (``dense_*``: mean and NB size at the median depth); the others go through
    an alias table whose rows are ``(threshold, alias, gene, logarithmic p)`` as float32, so
    one draw touches one or two cache lines.
    """

    depth: float
    ptr: _Array  # (n_components + 1,) rows of ``table`` per component
    table: _Array  # (n, 4) float32
    total: _Array  # (n_components,) cluster intensity per unit depth, sparse genes
    dense_ptr: _Array
    dense_gene: _Array
    dense_mean: _Array
    dense_size: _Array


_DENSE = 2.0


def build_sampler(programs: _Array, size: _Array, share: _Array, depth: float) -> Sampler:
    """Build the tables; ``share`` is each component's typical share of a cell's UMIs."""
    n_comp = programs.shape[0]
    sparse, dense = [], []
    for c, p in enumerate(programs):
        g = np.flatnonzero(p)
        is_dense = share[c] * size[g] * np.log1p(depth * p[g] / size[g]) > _DENSE
        sparse.append(g[~is_dense].astype(np.int32))
        dense.append(g[is_dense].astype(np.int32))
    ptr = np.concatenate([[0], np.cumsum([g.size for g in sparse])]).astype(np.int64)
    table = np.empty((ptr[-1], 4), np.float32)
    weights = np.empty(ptr[-1])
    for c, g in enumerate(sparse):
        m = depth * programs[c, g]
        weights[ptr[c] : ptr[c + 1]] = size[g] * np.log1p(m / size[g]) / depth
        table[ptr[c] : ptr[c + 1], 2] = g
        table[ptr[c] : ptr[c + 1], 3] = m / (m + size[g])
    _vose(weights, ptr, table)
    dense_ptr = np.concatenate([[0], np.cumsum([g.size for g in dense])]).astype(np.int64)
    dense_gene = np.concatenate(dense)
    dense_comp = np.repeat(np.arange(n_comp), np.diff(dense_ptr))
    return Sampler(
        depth=depth,
        ptr=ptr,
        table=table,
        total=np.array([weights[ptr[c] : ptr[c + 1]].sum() for c in range(n_comp)]),
        dense_ptr=dense_ptr,
        dense_gene=dense_gene,
        dense_mean=depth * programs[dense_comp, dense_gene],
        dense_size=size[dense_gene],
    )


@njit(nogil=True, cache=True)
def _vose(weights: _Array, ptr: _Array, table: _Array) -> None:
    """Vose's alias method per component, into ``table[:, 0]`` (threshold) and ``table[:, 1]``
    (alias, an index local to the component)."""
    for c in range(ptr.size - 1):
        lo, n = ptr[c], ptr[c + 1] - ptr[c]
        for i in range(n):
            table[lo + i, 0] = 1.0
            table[lo + i, 1] = i
        if n == 0 or weights[lo : lo + n].sum() <= 0.0:
            continue
        scaled = weights[lo : lo + n] * (n / weights[lo : lo + n].sum())
        small = np.empty(n, np.int64)
        large = np.empty(n, np.int64)
        ns = nl = 0
        for i in range(n):
            if scaled[i] < 1.0:
                small[ns] = i
                ns += 1
            else:
                large[nl] = i
                nl += 1
        while ns > 0 and nl > 0:
            ns -= 1
            s = small[ns]
            g = large[nl - 1]
            table[lo + s, 0] = scaled[s]
            table[lo + s, 1] = g
            scaled[g] -= 1.0 - scaled[s]
            if scaled[g] < 1.0:
                nl -= 1
                small[ns] = g
                ns += 1


@njit(parallel=True, nogil=True, cache=True)
def plan_block(
    start: int,
    cell_type: _Array,
    cell_donor: _Array,
    treated: _Array,
    key: np.uint64,
    size_factor: _Array,
    module_prob: _Array,
    module_share: _Array,
    module_shape: _Array,
    ifn_treated: float,
    donor_share: float,
    total: _Array,
    depth: float,
    dense_ptr: _Array,
    n_genes: int,
) -> tuple[_Array, _Array, _Array]:
    """Per cell and component slot (type, modules..., donor): the depth it receives relative
    to the median depth and its number of NB clusters over the sparse genes; and per cell a
    bound on its non-zeros (clusters plus dense genes)."""
    n, n_types = cell_type.size, size_factor.size
    n_mod = module_share.size
    scale = np.zeros((n, n_mod + 2))
    clusters = np.zeros((n, n_mod + 2), np.int64)
    bound = np.zeros(n, np.int64)
    for i in prange(n):
        st = np.empty(1, np.uint64)
        st[0] = mix(key ^ mix(np.uint64(start + i)))
        t, d = cell_type[i], cell_donor[i]
        lib = size_factor[t] * np.exp(SIGMA_DEPTH * normal(st))
        share = scale[i]
        for m in range(n_mod):
            if uniform(st) < module_prob[t, m]:
                level = module_share[m] * gamma(st, module_shape[m]) / module_shape[m]
                share[m + 1] = level * (ifn_treated if m == 1 and treated[d] else 1.0)
        share[n_mod + 1] = donor_share
        rest = share.sum()
        if rest > 0.75:  # the type program keeps at least a quarter of the UMIs
            share *= 0.75 / rest
            rest = 0.75
        share[0] = 1.0 - rest
        for s in range(n_mod + 2):
            c = t if s == 0 else (n_types + s - 1 if s <= n_mod else n_types + n_mod + d)
            share[s] *= lib
            clusters[i, s] = poisson(st, depth * share[s] * total[c])
            if share[s] > 0.0:
                bound[i] += clusters[i, s] + dense_ptr[c + 1] - dense_ptr[c]
        bound[i] = min(bound[i], n_genes)
    return scale, clusters, bound


@njit(parallel=True, nogil=True, cache=True)
def fill_block(
    start: int,
    order: _Array,
    cell_type: _Array,
    cell_donor: _Array,
    scale: _Array,
    clusters: _Array,
    offsets: _Array,
    key: np.uint64,
    n_types: int,
    n_genes: int,
    ptr: _Array,
    table: _Array,
    dense_ptr: _Array,
    dense_gene: _Array,
    dense_mean: _Array,
    dense_size: _Array,
    bit_of: _Array,
    n_chunks: int,
    out_idx: _Array,
    out_val: _Array,
    out_nnz: _Array,
) -> None:
    """Draw each cell's counts, add them up per gene, write sorted (gene, count) pairs.

    Cells are visited in ``order`` (grouped by type, so a type's table stays in cache) and
    written to their own slot ``offsets[i]``; ``out_nnz[i]`` says how much of it is used.
    """
    n, n_slots = clusters.shape
    n_mod = n_slots - 2
    n_words = (n_genes + 63) // 64
    for chunk in prange(n_chunks):
        counts = np.zeros(n_genes, np.int32)
        bitmap = np.zeros(n_words, np.uint64)
        st = np.empty(1, np.uint64)
        for j in range(chunk * n // n_chunks, (chunk + 1) * n // n_chunks):
            i = order[j]
            st[0] = mix(key ^ mix(np.uint64(start + i)))
            t, d = cell_type[i], cell_donor[i]
            for s in range(n_slots):
                if scale[i, s] <= 0.0:
                    continue
                c = t if s == 0 else (n_types + s - 1 if s <= n_mod else n_types + n_mod + d)
                for k in range(dense_ptr[c], dense_ptr[c + 1]):
                    shape = dense_size[k] * scale[i, s]
                    mean = dense_mean[k] * gamma(st, shape) / shape * scale[i, s]
                    x = poisson(st, mean)
                    if x > 0:
                        g = dense_gene[k]
                        if counts[g] == 0:
                            bitmap[g >> 6] |= np.uint64(1) << np.uint64(g & 63)
                        counts[g] += x
                lo, width = ptr[c], ptr[c + 1] - ptr[c]
                for _ in range(clusters[i, s]):
                    u = uniform(st) * width
                    k = int(u)
                    if u - k >= table[lo + k, 0]:
                        k = int(table[lo + k, 1])
                    g = int(table[lo + k, 2])
                    if counts[g] == 0:
                        bitmap[g >> 6] |= np.uint64(1) << np.uint64(g & 63)
                    counts[g] += logseries(st, table[lo + k, 3])
            pos = offsets[i]
            for w in range(n_words):
                word = bitmap[w]
                if word == 0:
                    continue
                bitmap[w] = 0
                while word != 0:
                    low = word & (~word + np.uint64(1))
                    g = w * 64 + bit_of[(low * _DEBRUIJN) >> np.uint64(58)]
                    out_idx[pos] = g
                    out_val[pos] = counts[g]
                    counts[g] = 0
                    pos += 1
                    word ^= low
            out_nnz[i] = pos - offsets[i]


@njit(nogil=True, cache=True)
def compact_block(offsets: _Array, nnz: _Array, idx: _Array, val: _Array) -> int:
    """Close the gaps between the per-cell slots, in place (targets never pass sources)."""
    pos = 0
    for i in range(nnz.size):
        src = offsets[i]
        for j in range(nnz[i]):
            idx[pos + j] = idx[src + j]
            val[pos + j] = val[src + j]
        pos += nnz[i]
    return pos
