"""The expression model of the demo data: cell types, programs, modules, donors, depth.

Everything here is decided before any count is drawn and costs O(n_types × n_genes +
n_cells): per-type gene programs over a heavy-tailed baseline, the shared modules and a
program per donor (rows of :attr:`Model.programs`), the NB size per gene, and the median
depth ``L0`` solved so that the expected non-zeros per cell meet the target
(:func:`calibrate`). The package docstring (:mod:`widecube.demo`) derives the sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq

from . import _biology

__all__ = [
    "DONOR_SHARE",
    "IFN_TREATED",
    "MODULE_SHAPE",
    "MODULE_SHARE",
    "Model",
    "SIGMA_DEPTH",
    "build_model",
    "calibrate",
    "type_sizes",
    "with_donors",
]

_Array = npt.NDArray[Any]

SIGMA_DEPTH = 0.45  # log-normal sd of library size; CV about 0.47
_MODULES = ("cell cycle", "interferon", "stress", "mitochondrial")
# Mean share of a cell's UMIs taken by each module when active, and the gamma shape of its
# activity from cell to cell (small shape = a few cells with a lot).
MODULE_SHARE = np.array([0.08, 0.006, 0.012, 0.03])
MODULE_SHAPE = np.array([4.0, 2.0, 0.6, 2.5])
IFN_TREATED = 5.0  # fold increase of the interferon module in treated donors
DONOR_SHARE = 0.02


@dataclass(frozen=True)
class Model:
    """Everything decided before streaming; O(n_types × n_genes + n_cells)."""

    type_names: list[str]
    lineage: _Array  # (n_types,) lineage id per type
    proportions: _Array  # (n_types,)
    programs: _Array  # (n_types + n_modules + n_donors, n_genes); rows sum to 1
    size: _Array  # (n_genes,) NB size at the median depth
    size_factor: _Array  # (n_types,) relative library size per type
    module_prob: _Array  # (n_types, n_modules) chance that a module is on in a cell
    symbols: list[str]


def _cell_types(
    n_types: int, rng: np.random.Generator
) -> tuple[list[str], list[str], _Array, list[tuple[str, ...]]]:
    """Names, lineages, skewed proportions and named markers of the types."""
    if n_types <= len(_biology.CELL_TYPES):
        rows = _biology.CELL_TYPES[:n_types]
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


def build_model(n_genes: int, n_types: int, rng: np.random.Generator) -> Model:
    """Baseline, lineage and type programs and the shared modules (donors come later)."""
    symbols = _biology.gene_symbols(n_genes, rng)
    index = {s: i for i, s in enumerate(symbols)}

    def ids(names: tuple[str, ...] | list[str]) -> _Array:
        return np.array([index[s] for s in names if s in index], dtype=np.int64)

    names, lineages, prop, named = _cell_types(n_types, rng)
    special = ids([*_biology.HOUSEKEEPING, *_biology.MITO, *_biology.RIBO])
    pool = rng.permutation(np.setdiff1d(np.arange(n_genes), special))
    if pool.size == 0:
        pool = rng.permutation(n_genes)
    base = rng.lognormal(0.0, 1.8, n_genes)
    cap = max(1e-3, 5.0 / n_genes)  # ordinary genes stay below the housekeeping ones
    for _ in range(4):
        base = np.minimum(base * (0.55 / base.sum()), cap)
    for group, share, spread in (
        (ids(_biology.HOUSEKEEPING[:1]), 0.035, 0.0),
        (ids(_biology.HOUSEKEEPING[1:]), 0.12, 0.0),
        (ids(_biology.MITO), 0.03, 0.5),
        (ids(_biology.RIBO), 0.22, 0.4),
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
        known = ids(list(_biology.LINEAGE_MARKERS.get(name, ())))
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
    for m, genes in enumerate((_biology.CELL_CYCLE, _biology.INTERFERON, _biology.STRESS, _biology.MITO)):
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
    return Model(
        type_names=names,
        lineage=np.array([lineage_ids[x] for x in lineages]),
        proportions=prop,
        programs=programs,
        size=size,
        size_factor=rng.lognormal(0.0, 0.25, n_types),
        module_prob=module_prob,
        symbols=symbols,
    )


def with_donors(model: Model, female: _Array, rng: np.random.Generator) -> Model:
    """Append one program per donor: sex-linked genes plus a few donor-specific genes."""
    n_genes = model.programs.shape[1]
    index = {s: i for i, s in enumerate(model.symbols)}
    rows = np.zeros((female.size, n_genes))
    for d, is_female in enumerate(female):
        sex_genes = _biology.FEMALE if is_female else _biology.MALE
        weights = [0.3, 0.02] if is_female else [0.05] * len(sex_genes)
        for symbol, w in zip(sex_genes, weights, strict=False):
            if symbol in index:
                rows[d, index[symbol]] = w
        own = rng.choice(n_genes, size=min(40, n_genes), replace=False)  # eQTL-like genes
        weights_own = rng.lognormal(0.0, 1.0, own.size)
        rows[d, own] += weights_own / weights_own.sum() * (1.0 - rows[d].sum())
        rows[d] /= rows[d].sum()
    programs = np.vstack([model.programs, rows])
    return Model(**{**model.__dict__, "programs": programs})


def type_sizes(n_cells: int, proportions: _Array) -> _Array:
    """Cells per type: largest remainder of ``n_cells × proportions``, at least one each."""
    n_types = proportions.size
    sizes = np.ones(n_types, dtype=np.int64)
    quota = (n_cells - n_types) * proportions
    sizes += np.floor(quota).astype(np.int64)
    rest = n_cells - sizes.sum()
    sizes[np.argsort(np.floor(quota) - quota, kind="stable")[:rest]] += 1
    return sizes


def _shares(model: Model, treated_fraction: float) -> _Array:
    """Mean share of a cell's UMIs per (type, component); rows sum to 1."""
    n_types, n_mod = model.module_prob.shape
    n_comp = model.programs.shape[0]
    shares = np.zeros((n_types, n_comp))
    mods = model.module_prob * MODULE_SHARE
    mods[:, 1] *= 1.0 + (IFN_TREATED - 1.0) * treated_fraction
    shares[:, n_types : n_types + n_mod] = mods
    shares[:, n_types + n_mod :] = DONOR_SHARE / (n_comp - n_types - n_mod)
    shares[np.arange(n_types), np.arange(n_types)] = 1.0 - mods.sum(1) - DONOR_SHARE
    return shares


def calibrate(model: Model, treated_fraction: float, target: float) -> float:
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
        scale = model.size_factor[:, None] * np.exp(SIGMA_DEPTH * nodes)[None, :]
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
