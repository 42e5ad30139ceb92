"""Pass 2's per-gene moments kernel against numpy, to the bit, and how it cuts a slab."""

from __future__ import annotations

import math

import numpy as np
import pytest

from widecube.compute._kernels import gene_moments, gene_ranges, log1p_table


def slab(rng: np.random.Generator, n_cells: int, n_genes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A gene-major slab of counts, genes of very different sizes (one empty, one dense)."""
    density = rng.uniform(0.0, 0.6, n_genes)
    density[0], density[-1] = 0.0, 1.0
    indptr, cells, vals = [0], [], []
    for d in density:
        nz = np.flatnonzero(rng.random(n_cells) < d)
        cells.append(nz)
        vals.append(rng.poisson(3.0, len(nz)) + 1)
        indptr.append(indptr[-1] + len(nz))
    return (
        np.asarray(indptr, np.int64),
        np.concatenate(cells).astype(np.int32),
        np.concatenate(vals).astype(np.float32),
    )


@pytest.mark.parametrize("table_k", [0, 4])
@pytest.mark.parametrize("two_layers", [True, False])
def test_gene_moments_equal_numpy_to_the_bit(two_layers: bool, table_k: int) -> None:
    rng = np.random.default_rng(0)
    n_cells, n_genes = 500, 90
    indptr, cells, vals = slab(rng, n_cells, n_genes)
    vals[::7] += 0.5  # not counts: their log1p is computed, never looked up
    vals[::11] = 3.0 + 2.0**-20  # next to a count the table holds
    assert ((vals >= 1) & (vals <= 4) & (vals == np.floor(vals))).mean() > 0.3  # the table is used
    a = rng.integers(0, 7, n_cells)
    b = rng.integers(0, 3, n_cells) + 7
    codes = np.stack([a, b]).astype(np.int32)  # groups 0..9; group 10 is every cell
    scale = rng.uniform(0.5, 2.0, n_cells)
    n_layers, g = 1 + two_layers, 11
    s, sq = np.full((n_layers, n_genes, g), np.nan), np.full((n_layers, n_genes, g), np.nan)
    nnz = np.full((n_genes, g), -1, dtype=np.int32)
    lo, hi = np.full((n_layers, n_genes), np.nan), np.full((n_layers, n_genes), np.nan)
    normalized = np.full(len(vals), np.nan)
    table = log1p_table(scale, table_k)
    gene_moments(
        indptr,
        cells,
        vals,
        scale,
        table,
        codes,
        s,
        sq,
        nnz,
        lo,
        hi,
        normalized if two_layers else np.empty(0),
    )
    # C's log1p, as the kernel calls it (numpy's own SIMD log1p may differ in the last bit)
    want_norm = np.array([math.log1p(x) for x in vals.astype(np.float64) * scale[cells]])
    if two_layers:
        np.testing.assert_array_equal(normalized, want_norm)
    for j in range(n_genes):
        c = cells[indptr[j] : indptr[j + 1]]
        for layer, x in enumerate([vals.astype(np.float64), want_norm][:n_layers]):
            v = x[indptr[j] : indptr[j + 1]]
            group = np.concatenate([codes[:, c], np.full((1, len(c)), 10)])  # every cell last
            # bincount adds each group's values in order, as the kernel does: equal to the bit
            want_s = sum(np.bincount(k, weights=v, minlength=g) for k in group)
            want_sq = sum(np.bincount(k, weights=v * v, minlength=g) for k in group)
            np.testing.assert_array_equal(s[layer, j], want_s, err_msg=f"gene {j} layer {layer}")
            np.testing.assert_array_equal(sq[layer, j], want_sq)
            assert lo[layer, j] == (v.min() if len(v) else np.inf)
            assert hi[layer, j] == (v.max() if len(v) else -np.inf)
        np.testing.assert_array_equal(
            nnz[j], sum(np.bincount(k, minlength=g) for k in [*codes[:, c], np.full(len(c), 10)])
        )


def test_gene_ranges_cut_a_slab_into_ranges_of_about_as_many_values() -> None:
    rng = np.random.default_rng(1)
    indptr, _, _ = slab(rng, 2000, 300)
    sizes = np.diff(indptr)
    bounds = gene_ranges(indptr, 16)
    assert bounds[0] == 0 and bounds[-1] == 300 and (np.diff(bounds) >= 0).all()
    per_range = np.add.reduceat(np.append(sizes, 0), bounds[:-1])[:16] * (np.diff(bounds) > 0)
    share = indptr[-1] / 16
    assert per_range.max() <= share + sizes.max()  # at most one gene over its share
    halves = [per_range[:8].sum(), per_range[8:].sum()]  # what two threads get
    assert abs(halves[0] - halves[1]) <= 2 * sizes.max()
    one = np.array([0, 0, 10_000, 10_000, 10_010], dtype=np.int64)  # an empty gene, a huge one
    b = gene_ranges(one, 4)
    assert b[0] == 0 and b[-1] == 4 and (np.diff(b) >= 0).all()
    np.testing.assert_array_equal(gene_ranges(np.zeros(1, dtype=np.int64), 0), [0])
