"""A realistic single-cell demo dataset, generated sparse and streamed to ``.h5ad``.

The counts follow a per-cell-type expression model: a heavy-tailed baseline profile (MALAT1,
ribosomal and mitochondrial genes on top, most genes low), lineage programs shared by related
types, 20-50 strongly up-regulated markers per type, mild per-type and per-lineage noise, and
shared modules whose activity varies from cell to cell (cell cycle, interferon response, higher
in treated donors, dissociation stress, mitochondrial load) plus a per-donor component (XIST or
the Y-chromosome genes, a few donor-specific genes). Library sizes are log-normal.

Sampling without ever forming a dense row: a negative binomial NB(mean m, size r) is a compound
Poisson sum — ``N ~ Poisson(r·log(1 + m/r))`` clusters, each of ``Logarithmic(m/(m + r))``
UMIs. Each component ``c`` of a cell (its type program, each module, its donor) has gene
probabilities ``p_cg``. A cell of depth ``L`` giving share ``a_c`` to the component gets
NB(mean ``L·a_c·p_cg``, size ``r_g·L·a_c/L0``): at the median depth ``L0`` the usual NB with
gene size ``r_g``, and the size scales with depth, so the cluster intensity is ``L·a_c·w_cg``
with ``w_cg = r_g·log1p(L0·p_cg/r_g)/L0`` and the cluster size law is the same in every cell.
Per component we then draw ``K ~ Poisson(L·a_c·Σ_g w_cg)`` genes from a precomputed alias table
over ``w_cg`` and a Logarithmic size for each — exact NB counts in O(non-zeros) time, summed per
gene through a scratch count array and a bitmap that yields the genes in sorted order. The few
hundred genes per type that expect more than two clusters per cell (housekeeping, ribosomal,
markers) are drawn directly as gamma-Poisson instead, which is cheaper for them. ``L0`` is
solved so that the expected non-zeros per cell (Gauss-Hermite over the depth law) match the
target.

Each cell has its own counter-based random stream (splitmix64 keyed by seed and cell number),
so the output does not depend on the number of threads or on ``block_cells``; within a block
cells are processed grouped by type, so that type's table stays in cache.

Example::

    >>> from widecube.demo import make_demo
    >>> path = make_demo("pbmc_demo.h5ad", n_cells=5_000, n_genes=2_000)  # doctest: +SKIP
    >>> anndata.read_h5ad(path).obs["cell_type"].value_counts().head(3)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anndata
import h5py
import numba
import numpy as np
import numpy.typing as npt
import pandas as pd
from numba import njit, prange
from scipy.optimize import brentq

from widecube import _genes

__all__ = ["make_demo"]

_Array = npt.NDArray[Any]

_SIGMA_DEPTH = 0.45  # log-normal sd of library size; CV about 0.47
_MODULES = ("cell cycle", "interferon", "stress", "mitochondrial")
# Mean share of a cell's UMIs taken by each module when active, and the gamma shape of its
# activity from cell to cell (small shape = a few cells with a lot).
_MODULE_SHARE = np.array([0.08, 0.006, 0.012, 0.03])
_MODULE_SHAPE = np.array([4.0, 2.0, 0.6, 2.5])
_IFN_TREATED = 5.0  # fold increase of the interferon module in treated donors
_DONOR_SHARE = 0.02
_CHUNK = 1 << 18  # HDF5 chunk, in elements, of X/data and X/indices


@dataclass(frozen=True)
class _Model:
    """Everything decided before streaming; O(n_types × n_genes + n_cells)."""

    type_names: list[str]
    lineage: _Array  # (n_types,) lineage id per type
    proportions: _Array  # (n_types,)
    programs: _Array  # (n_types + n_modules + n_donors, n_genes); rows sum to 1
    size: _Array  # (n_genes,) NB size at the median depth
    size_factor: _Array  # (n_types,) relative library size per type
    module_prob: _Array  # (n_types, n_modules) chance that a module is on in a cell
    symbols: list[str]


def make_demo(
    path: str | os.PathLike[str],
    *,
    n_cells: int = 50_000,
    n_genes: int = 20_000,
    n_types: int = 24,
    n_donors: int = 6,
    nnz_per_cell: int | None = None,
    type_key: str = "cell_type",
    seed: int = 0,
    block_cells: int = 20_000,
    compression: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> pathlib.Path:
    """Write a synthetic but realistic single-cell dataset to ``path`` (.h5ad) and return it.

    ``X`` holds integer UMI counts as float32 CSR; ``obs`` has ``type_key`` (cell type),
    ``donor``, ``sex`` and ``condition`` as categoricals and 10x-style barcodes as index;
    ``var`` has gene symbols as index, ``gene_ids`` and ``feature_types``; ``obsm["X_umap"]``
    is a 2-D embedding with one blob per type. ``nnz_per_cell`` is the mean number of
    non-zeros per cell (default 5 % of ``n_genes``). Memory is O(block_cells × nnz_per_cell
    + n_types × n_genes + n_cells); the same seed gives the same file.

    >>> make_demo("demo.h5ad", n_cells=2_000, n_genes=1_000, seed=1)  # doctest: +SKIP
    PosixPath('demo.h5ad')
    """
    target = _check(n_cells, n_genes, n_types, n_donors, nnz_per_cell, type_key, block_cells)
    seeds = np.random.SeedSequence(seed).spawn(4)
    model = _model(n_genes, n_types, np.random.default_rng(seeds[0]))
    rng = np.random.default_rng(seeds[1])
    sizes = _type_sizes(n_cells, model.proportions)
    cell_type = rng.permutation(np.repeat(np.arange(n_types, dtype=np.int32), sizes))
    donor_p = rng.dirichlet(np.full(n_donors, 8.0))
    cell_donor = rng.choice(n_donors, size=n_cells, p=donor_p).astype(np.int32)
    treated = rng.permutation(np.arange(n_donors) >= (n_donors + 1) // 2)
    female = rng.permutation(np.arange(n_donors) % 2 == 0)
    model = _with_donors(model, female, np.random.default_rng(seeds[2]))
    depth = _calibrate(model, treated.mean(), target)
    typical = np.concatenate([np.full(n_types, 0.9), _MODULE_SHARE, np.full(n_donors, _DONOR_SHARE)])
    sampler = _sampler(model.programs, model.size, typical, depth)
    obs = _obs(cell_type, cell_donor, treated, female, model.type_names, type_key, rng)
    umap = _umap(cell_type, model, rng)
    var = _var(model.symbols, rng)
    key = seeds[3].generate_state(2, np.uint64)
    out = pathlib.Path(path)
    partial = out.with_name(out.name + ".partial")  # readers never see a half-written file
    try:
        with h5py.File(partial, "w") as f:
            f.attrs["encoding-type"] = "anndata"
            f.attrs["encoding-version"] = "0.1.0"
            _write_x(f, (cell_type, cell_donor), model, sampler, treated.astype(np.int64), key,
                     block_cells, compression, progress)  # fmt: skip
            anndata.io.write_elem(f, "obs", obs)
            anndata.io.write_elem(f, "var", var)
            anndata.io.write_elem(f, "obsm", {"X_umap": umap})
            for name in ("uns", "layers", "varm", "obsp", "varp"):
                anndata.io.write_elem(f, name, {})
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out


def _check(
    n_cells: int,
    n_genes: int,
    n_types: int,
    n_donors: int,
    nnz_per_cell: float | None,
    type_key: str,
    block_cells: int,
) -> float:
    """Validate the parameters; return the target mean of non-zeros per cell."""
    for name, value, low in (
        ("n_cells", n_cells, 1),
        ("n_genes", n_genes, 10),
        ("n_types", n_types, 1),
        ("n_donors", n_donors, 1),
        ("block_cells", block_cells, 1),
    ):
        if int(value) != value or value < low:
            raise ValueError(f"make_demo: {name} must be an integer >= {low}, got {value!r}")
    if n_types > n_cells:
        raise ValueError(f"make_demo: n_types ({n_types}) exceeds n_cells ({n_cells})")
    if n_genes >= 2**24:  # gene numbers are stored exactly in the float32 sampling table
        raise ValueError(f"make_demo: n_genes ({n_genes}) must be below 2**24")
    if n_cells >= 2**32:
        raise ValueError(f"make_demo: n_cells ({n_cells}) exceeds the 2**32 distinct barcodes")
    if type_key in ("donor", "sex", "condition") or not type_key:
        raise ValueError(f"make_demo: type_key {type_key!r} clashes with another obs column")
    target = max(1.0, 0.05 * n_genes) if nnz_per_cell is None else float(nnz_per_cell)
    if not 1 <= target <= 0.9 * n_genes:
        raise ValueError(
            f"make_demo: nnz_per_cell must lie in [1, 0.9 × n_genes = {0.9 * n_genes:g}], "
            f"got {nnz_per_cell!r}"
        )
    return target


def _cell_types(
    n_types: int, rng: np.random.Generator
) -> tuple[list[str], list[str], _Array, list[tuple[str, ...]]]:
    """Names, lineages, skewed proportions and named markers of the types."""
    if n_types <= len(_genes.CELL_TYPES):
        rows = _genes.CELL_TYPES[:n_types]
        names = [r[0] for r in rows]
        lineages = [r[1] for r in rows]
        prop = np.array([r[2] for r in rows]) * rng.lognormal(0.0, 0.2, n_types)
        return names, lineages, prop / prop.sum(), [r[3] for r in rows]
    # Leiden-style: clusters numbered by decreasing size, Zipf-like proportions.
    prop = np.sort((np.arange(1, n_types + 1) ** -0.75) * rng.lognormal(0.0, 0.3, n_types))[::-1]
    n_lin = max(1, round(np.sqrt(n_types)))
    lineages = [f"L{i}" for i in rng.permutation(np.arange(n_types) % n_lin)]
    width = len(str(n_types - 1))
    names = [f"C{i:0{max(3, width)}d}" for i in range(n_types)]
    return names, lineages, prop / prop.sum(), [() for _ in range(n_types)]


def _model(n_genes: int, n_types: int, rng: np.random.Generator) -> _Model:
    """Baseline, lineage and type programs and the shared modules (donors come later)."""
    symbols = _genes.gene_symbols(n_genes, rng)
    index = {s: i for i, s in enumerate(symbols)}

    def ids(names: tuple[str, ...] | list[str]) -> _Array:
        return np.array([index[s] for s in names if s in index], dtype=np.int64)

    names, lineages, prop, named = _cell_types(n_types, rng)
    special = ids([*_genes.HOUSEKEEPING, *_genes.MITO, *_genes.RIBO])
    pool = rng.permutation(np.setdiff1d(np.arange(n_genes), special))
    if pool.size == 0:
        pool = rng.permutation(n_genes)
    base = rng.lognormal(0.0, 1.8, n_genes)
    cap = max(1e-3, 5.0 / n_genes)  # ordinary genes stay below the housekeeping ones
    for _ in range(4):
        base = np.minimum(base * (0.55 / base.sum()), cap)
    for group, share, spread in (
        (ids(_genes.HOUSEKEEPING[:1]), 0.035, 0.0),
        (ids(_genes.HOUSEKEEPING[1:]), 0.12, 0.0),
        (ids(_genes.MITO), 0.03, 0.5),
        (ids(_genes.RIBO), 0.22, 0.4),
    ):
        if group.size:
            w = (
                (np.arange(group.size) + 1.0) ** -0.7
                if spread == 0
                else np.exp(spread * rng.standard_normal(group.size))
            )
            base[group] = share * w / w.sum()
    size = 1.0 / rng.lognormal(np.log(0.2), 0.5, n_genes)  # NB size r = 1 / dispersion
    cursor = 0

    def take(k: int) -> _Array:
        nonlocal cursor
        picked = pool[(cursor + np.arange(k)) % pool.size]
        cursor += k
        return picked

    lineage_ids = {name: i for i, name in enumerate(dict.fromkeys(lineages))}
    lineage_genes, lineage_noise = [], []
    for name in lineage_ids:
        known = ids(list(_genes.LINEAGE_MARKERS.get(name, ())))
        lineage_genes.append(np.concatenate([known, take(max(0, 25 - known.size))]))
        lineage_noise.append(rng.lognormal(0.0, 0.3, n_genes))
    programs = np.empty((n_types + len(_MODULES), n_genes))
    for t in range(n_types):
        lin = lineage_ids[lineages[t]]
        p = base * lineage_noise[lin] * rng.lognormal(0.0, 0.2, n_genes)
        up = lineage_genes[lin]
        p[up] = np.maximum(p[up], np.exp(rng.uniform(np.log(3e-4), np.log(2e-3), up.size)))
        known = ids(named[t])
        markers = np.concatenate([known, take(int(rng.integers(20, 51)) - known.size)])
        p[markers] = np.exp(rng.uniform(np.log(2e-4), np.log(4e-3), markers.size))
        p[markers[:2]] *= 4.0  # the best-known markers (LYZ, S100A9...) are among the top
        p[take(10)] *= 0.1
        size[markers] = np.minimum(size[markers], 2.0)  # markers vary more within a type
        programs[t] = p / p.sum()
    for m, genes in enumerate((_genes.CELL_CYCLE, _genes.INTERFERON, _genes.STRESS, _genes.MITO)):
        members = ids(genes)
        members = np.concatenate([members, take(max(0, 20 - members.size) if m < 3 else 0)])
        if members.size == 0:
            members = take(5)
        p = np.zeros(n_genes)
        p[members] = rng.lognormal(0.0, 0.7, members.size)
        programs[n_types + m] = p / p.sum()
    order = rng.permutation(n_genes)  # spread the well-known genes through var
    programs, size, symbols = programs[:, order], size[order], [symbols[i] for i in order]
    module_prob = np.ones((n_types, len(_MODULES)))
    module_prob[:, 0] = 0.02
    cycling = {"Proliferating T cell": 0.9, "Plasmablast": 0.5, "HSPC": 0.3}
    for t, name in enumerate(names):
        module_prob[t, 0] = cycling.get(name, module_prob[t, 0])
    if not named[0]:
        module_prob[rng.integers(n_types), 0] = 0.8
    return _Model(
        type_names=names,
        lineage=np.array([lineage_ids[x] for x in lineages]),
        proportions=prop,
        programs=programs,
        size=size,
        size_factor=rng.lognormal(0.0, 0.25, n_types),
        module_prob=module_prob,
        symbols=symbols,
    )


def _with_donors(model: _Model, female: _Array, rng: np.random.Generator) -> _Model:
    """Append one program per donor: sex-linked genes plus a few donor-specific genes."""
    n_genes = model.programs.shape[1]
    index = {s: i for i, s in enumerate(model.symbols)}
    rows = np.zeros((female.size, n_genes))
    for d, is_female in enumerate(female):
        sex_genes = _genes.FEMALE if is_female else _genes.MALE
        weights = [0.3, 0.02] if is_female else [0.05] * len(sex_genes)
        for symbol, w in zip(sex_genes, weights, strict=False):
            if symbol in index:
                rows[d, index[symbol]] = w
        own = rng.choice(n_genes, size=min(40, n_genes), replace=False)  # eQTL-like genes
        weights_own = rng.lognormal(0.0, 1.0, own.size)
        rows[d, own] += weights_own / weights_own.sum() * (1.0 - rows[d].sum())
        rows[d] /= rows[d].sum()
    programs = np.vstack([model.programs, rows])
    return _Model(**{**model.__dict__, "programs": programs})


def _type_sizes(n_cells: int, proportions: _Array) -> _Array:
    """Cells per type: largest remainder of ``n_cells × proportions``, at least one each."""
    n_types = proportions.size
    sizes = np.ones(n_types, dtype=np.int64)
    quota = (n_cells - n_types) * proportions
    sizes += np.floor(quota).astype(np.int64)
    rest = n_cells - sizes.sum()
    sizes[np.argsort(np.floor(quota) - quota, kind="stable")[:rest]] += 1
    return sizes


def _shares(model: _Model, treated_fraction: float) -> _Array:
    """Mean share of a cell's UMIs per (type, component); rows sum to 1."""
    n_types, n_mod = model.module_prob.shape
    n_comp = model.programs.shape[0]
    shares = np.zeros((n_types, n_comp))
    mods = model.module_prob * _MODULE_SHARE
    mods[:, 1] *= 1.0 + (_IFN_TREATED - 1.0) * treated_fraction
    shares[:, n_types : n_types + n_mod] = mods
    shares[:, n_types + n_mod :] = _DONOR_SHARE / (n_comp - n_types - n_mod)
    shares[np.arange(n_types), np.arange(n_types)] = 1.0 - mods.sum(1) - _DONOR_SHARE
    return shares


def _calibrate(model: _Model, treated_fraction: float, target: float) -> float:
    """The median depth ``L0`` at which the expected non-zeros per cell equal ``target``."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(9)
    weights = weights / weights.sum()
    shares = _shares(model, treated_fraction)
    active = np.flatnonzero(shares.any(0))
    r = model.size

    def excess(log_depth: float) -> float:
        depth = np.exp(log_depth)
        clusters = r * np.log1p(depth * model.programs[active] / r)  # (components, genes)
        lam = shares[:, active] @ clusters  # expected clusters per gene at the median depth
        scale = model.size_factor[:, None] * np.exp(_SIGMA_DEPTH * nodes)[None, :]
        nnz = np.empty(lam.shape[0])
        for t in range(lam.shape[0]):
            nnz[t] = weights @ (-np.expm1(-np.outer(scale[t], lam[t]))).sum(1)
        return float(model.proportions @ nnz - target)

    low, high = np.log(1e-3), np.log(1e8)
    if excess(high) < 0:
        raise ValueError(f"make_demo: nnz_per_cell={target:g} cannot be reached")
    if excess(low) >= 0:
        return float(np.exp(low))
    return float(np.exp(brentq(excess, low, high, xtol=1e-4)))


@dataclass(frozen=True)
class _Sampler:
    """Per-component sampling tables at median depth ``depth`` (see the module docstring).

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


def _sampler(programs: _Array, size: _Array, share: _Array, depth: float) -> _Sampler:
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
    return _Sampler(
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


# --- random numbers: one splitmix64 stream per cell, held in a 1-element uint64 array ---

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_BIT_OF = np.zeros(64, dtype=np.int64)  # de Bruijn table: isolated bit -> its position
_BIT_OF[[((1 << b) * 0x03F79D71B4CB0A89 % 2**64) >> 58 for b in range(64)]] = np.arange(64)


@njit(nogil=True, cache=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(nogil=True, cache=True, inline="always")
def _uniform(st: _Array) -> float:
    """Uniform on the open interval (0, 1)."""
    st[0] += _GOLDEN
    return (np.float64(_mix(st[0]) >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(nogil=True, cache=True)
def _normal(st: _Array) -> float:
    radius = math.sqrt(-2.0 * math.log(_uniform(st)))
    return radius * math.cos(2.0 * math.pi * _uniform(st))


@njit(nogil=True, cache=True)
def _gamma(st: _Array, shape: float) -> float:
    """Marsaglia-Tsang; shapes below 1 via the ``U**(1/a)`` boost."""
    boost = 1.0
    if shape < 1.0:
        boost = _uniform(st) ** (1.0 / shape)
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    while True:
        x = _normal(st)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        u = _uniform(st)
        if u < 1.0 - 0.0331 * x**4 or np.log(u) < 0.5 * x * x + d * (1.0 - v + np.log(v)):
            return float(d * v * boost)


@njit(nogil=True, cache=True)
def _poisson(st: _Array, lam: float) -> int:
    """Inversion by multiplication for small means, Hörmann's PTRS otherwise."""
    if lam < 12.0:
        limit, k, prod = np.exp(-lam), 0, _uniform(st)
        while prod > limit:
            k += 1
            prod *= _uniform(st)
        return k
    slam, loglam = np.sqrt(lam), np.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        u = _uniform(st) - 0.5
        v = _uniform(st)
        us = 0.5 - abs(u)
        k = np.floor((2.0 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return int(k)
        if k < 0 or (us < 0.013 and v > us):
            continue
        log_ratio = np.log(v) + np.log(inv_alpha) - np.log(a / (us * us) + b)
        if log_ratio <= -lam + k * loglam - math.lgamma(k + 1.0):
            return int(k)


@njit(nogil=True, cache=True)
def _logseries(st: _Array, p: float) -> int:
    """Kemp's algorithm for the Logarithmic(p) law on {1, 2, ...}."""
    v = _uniform(st)
    if v >= p:
        return 1
    q = -np.expm1(np.log1p(-p) * _uniform(st))
    if v <= q * q:
        return max(1, int(np.floor(1.0 + np.log(v) / np.log(q))))
    return 1 if v >= q else 2


# --- the two passes over a block: plan (depth, module activity, cluster counts), then fill ---


@njit(parallel=True, nogil=True, cache=True)
def _plan(
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
        st[0] = _mix(key ^ _mix(np.uint64(start + i)))
        t, d = cell_type[i], cell_donor[i]
        lib = size_factor[t] * np.exp(_SIGMA_DEPTH * _normal(st))
        share = scale[i]
        for m in range(n_mod):
            if _uniform(st) < module_prob[t, m]:
                level = module_share[m] * _gamma(st, module_shape[m]) / module_shape[m]
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
            clusters[i, s] = _poisson(st, depth * share[s] * total[c])
            if share[s] > 0.0:
                bound[i] += clusters[i, s] + dense_ptr[c + 1] - dense_ptr[c]
        bound[i] = min(bound[i], n_genes)
    return scale, clusters, bound


@njit(parallel=True, nogil=True, cache=True)
def _fill(
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
            st[0] = _mix(key ^ _mix(np.uint64(start + i)))
            t, d = cell_type[i], cell_donor[i]
            for s in range(n_slots):
                if scale[i, s] <= 0.0:
                    continue
                c = t if s == 0 else (n_types + s - 1 if s <= n_mod else n_types + n_mod + d)
                for k in range(dense_ptr[c], dense_ptr[c + 1]):
                    shape = dense_size[k] * scale[i, s]
                    mean = dense_mean[k] * _gamma(st, shape) / shape * scale[i, s]
                    x = _poisson(st, mean)
                    if x > 0:
                        g = dense_gene[k]
                        if counts[g] == 0:
                            bitmap[g >> 6] |= np.uint64(1) << np.uint64(g & 63)
                        counts[g] += x
                lo, width = ptr[c], ptr[c + 1] - ptr[c]
                for _ in range(clusters[i, s]):
                    u = _uniform(st) * width
                    k = int(u)
                    if u - k >= table[lo + k, 0]:
                        k = int(table[lo + k, 1])
                    g = int(table[lo + k, 2])
                    if counts[g] == 0:
                        bitmap[g >> 6] |= np.uint64(1) << np.uint64(g & 63)
                    counts[g] += _logseries(st, table[lo + k, 3])
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
def _compact(offsets: _Array, nnz: _Array, idx: _Array, val: _Array) -> int:
    """Close the gaps between the per-cell slots, in place (targets never pass sources)."""
    pos = 0
    for i in range(nnz.size):
        src = offsets[i]
        for j in range(nnz[i]):
            idx[pos + j] = idx[src + j]
            val[pos + j] = val[src + j]
        pos += nnz[i]
    return pos


# --- streaming X, and the small annotations ---


def _write_x(
    f: h5py.File,
    cells: tuple[_Array, _Array],
    model: _Model,
    sampler: _Sampler,
    treated: _Array,
    key: _Array,
    block_cells: int,
    compression: str | None,
    progress: Callable[[int], None] | None,
) -> None:
    """Generate X block by block and append it to a resizable CSR group."""
    cell_type, cell_donor = cells
    n_cells, n_genes = cell_type.size, model.programs.shape[1]
    group = f.create_group("X")
    group.attrs["encoding-type"] = "csr_matrix"
    group.attrs["encoding-version"] = "0.1.0"
    group.attrs["shape"] = (n_cells, n_genes)
    opts = {"maxshape": (None,), "compression": compression}
    data = group.create_dataset("data", (0,), np.float32, chunks=(_CHUNK,), **opts)
    indices = group.create_dataset("indices", (0,), np.int32, chunks=(_CHUNK,), **opts)
    indptr = group.create_dataset(
        "indptr", (1,), np.int64, chunks=(min(n_cells + 1, 1 << 16),), data=[0], **opts
    )
    sm, n_types = sampler, model.size_factor.size
    for start in range(0, n_cells, block_cells):
        stop = min(start + block_cells, n_cells)
        types, donors = cell_type[start:stop], cell_donor[start:stop]
        scale, clusters, slots = _plan(
            start, types, donors, treated, key[0], model.size_factor, model.module_prob,
            _MODULE_SHARE, _MODULE_SHAPE, _IFN_TREATED, _DONOR_SHARE, sm.total, sm.depth,
            sm.dense_ptr, n_genes,
        )  # fmt: skip
        offsets = np.zeros(stop - start, dtype=np.int64)
        np.cumsum(slots[:-1], out=offsets[1:])
        idx = np.empty(int(slots.sum()), np.int32)
        val = np.empty(idx.size, np.float32)
        nnz = np.empty(stop - start, np.int64)
        order = np.argsort(types, kind="stable")
        n_chunks = min(stop - start, 8 * numba.get_num_threads())
        _fill(
            start, order, types, donors, scale, clusters, offsets, key[1], n_types, n_genes,
            sm.ptr, sm.table, sm.dense_ptr, sm.dense_gene, sm.dense_mean, sm.dense_size,
            _BIT_OF, n_chunks, idx, val, nnz,
        )  # fmt: skip
        end = _compact(offsets, nnz, idx, val)
        done = data.shape[0]
        for ds, values in ((data, val[:end]), (indices, idx[:end])):
            ds.resize((done + end,))
            ds[done:] = values
        indptr.resize((stop + 1,))
        indptr[start + 1 :] = done + np.cumsum(nnz)
        if progress is not None:
            progress(stop - start)


def _barcodes(n: int, rng: np.random.Generator) -> _Array:
    """``n`` distinct 10x-style barcodes, ``AAACCTGAGAAACCAT-1``."""
    code = rng.choice(2**32, size=n, replace=False).astype(np.uint64)
    digits = (code[:, None] >> np.arange(30, -1, -2, dtype=np.uint64)) & np.uint64(3)
    letters = np.frombuffer(b"ACGT", np.uint8)[digits.astype(np.intp)]
    suffix = np.broadcast_to(np.frombuffer(b"-1", np.uint8), (n, 2))
    raw = np.ascontiguousarray(np.hstack([letters, suffix])).view("S18").ravel()
    return raw.astype(str).astype(object)


def _obs(
    cell_type: _Array,
    cell_donor: _Array,
    treated: _Array,
    female: _Array,
    type_names: list[str],
    type_key: str,
    rng: np.random.Generator,
) -> pd.DataFrame:
    donors = [f"D{i + 1}" for i in range(treated.size)]
    sex = np.where(female, "female", "male")[cell_donor]
    condition = np.where(treated, "treated", "control")[cell_donor]
    return pd.DataFrame(
        {
            type_key: pd.Categorical.from_codes(cell_type, type_names),
            "donor": pd.Categorical.from_codes(cell_donor, donors),
            "sex": pd.Categorical(sex, categories=["female", "male"]),
            "condition": pd.Categorical(condition, categories=["control", "treated"]),
        },
        index=pd.Index(_barcodes(cell_type.size, rng), dtype=object),
    )


def _var(symbols: list[str], rng: np.random.Generator) -> pd.DataFrame:
    n = len(symbols)
    ids = rng.choice(np.arange(1_000, max(300_000, 3 * n)), size=n, replace=False)
    return pd.DataFrame(
        {
            "gene_ids": pd.array([f"ENSG{i:011d}" for i in ids], dtype=object),
            "feature_types": pd.Categorical(["Gene Expression"] * n),
        },
        index=pd.Index(symbols, dtype=object),
    )


def _umap(cell_type: _Array, model: _Model, rng: np.random.Generator) -> _Array:
    """One anisotropic Gaussian blob per type; types of a lineage sit next to each other."""
    prop, lineage = model.proportions, model.lineage
    radius = 0.3 + 1.2 * np.sqrt(prop / prop.max())
    centre = np.zeros((prop.size, 2))
    n_lin = int(lineage.max()) + 1
    extent = np.array([1.6 * np.sqrt(((radius[lineage == k] + 0.4) ** 2).sum()) for k in range(n_lin)])
    lin_centre = _scatter(extent, 1.5, rng)
    for k in range(n_lin):
        members = np.flatnonzero(lineage == k)
        centre[members] = lin_centre[k] + _scatter(radius[members], 0.4, rng)
    angle = rng.uniform(0, np.pi, prop.size)
    stretch = rng.uniform(0.6, 1.4, prop.size)
    z = rng.standard_normal((cell_type.size, 2)) * (radius / 2.2)[cell_type, None]
    z[:, 0] *= stretch[cell_type]
    z[:, 1] /= stretch[cell_type]
    cos, sin = np.cos(angle)[cell_type], np.sin(angle)[cell_type]
    xy = np.stack([cos * z[:, 0] - sin * z[:, 1], sin * z[:, 0] + cos * z[:, 1]], axis=1)
    xy += centre[cell_type] + 4.0
    return xy.astype(np.float32)


def _scatter(radius: _Array, gap: float, rng: np.random.Generator) -> _Array:
    """Place discs of the given radii near the origin without overlap (dart throwing)."""
    placed = np.zeros((radius.size, 2))
    room = np.sqrt(((radius + gap) ** 2).sum())
    order = np.argsort(-radius, kind="stable")
    for n_done, i in enumerate(order):
        done = order[:n_done]
        for attempt in range(10_000):
            point = rng.uniform(-room, room, 2) * (1.0 + attempt / 200)
            dist = np.hypot(*(placed[done] - point).T)
            if np.all(dist >= radius[done] + radius[i] + gap):
                break
        placed[i] = point
    centred: _Array = placed - placed.mean(0)
    return centred
