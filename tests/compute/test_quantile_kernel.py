"""The quantile kernels against numpy: ``numpy.quantile(method="linear")`` over the dense
column of each group, to the last bit (selection, counting and the zeros shortcut must not
change a single value)."""

from __future__ import annotations

import numpy as np
import pytest

from widecube.compute._kernels import gene_quantiles, group_quantiles, quantile_scratch

QS = np.array([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])


def slab_of(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A dense cells × genes matrix as the gene-major slab the kernel reads."""
    indptr, cells, vals = [0], [], []
    for j in range(x.shape[1]):
        nz = np.flatnonzero(x[:, j])
        cells.append(nz)
        vals.append(x[nz, j])
        indptr.append(indptr[-1] + len(nz))
    return (
        np.asarray(indptr, dtype=np.int64),
        np.concatenate(cells).astype(np.int32),
        np.concatenate(vals).astype(np.float64),
    )


def varied_matrix(rng: np.random.Generator, n_cells: int, dtype: type) -> np.ndarray:
    """Genes of every kind the kernel has a path for, side by side."""
    cols = [
        np.zeros(n_cells),  # all zeros
        np.where(np.arange(n_cells) == n_cells // 2, 3.5, 0.0),  # one stored value
        rng.poisson(0.05, n_cells),  # sparse counts: quantiles among the zeros
        rng.poisson(0.8, n_cells),  # counts with ties: counted by value
        rng.poisson(30.0, n_cells),  # dense counts
        rng.negative_binomial(0.3, 0.0005, n_cells),  # heavy-tailed counts, range > histogram
        rng.integers(0, 3, n_cells) * 10**9,  # large integers
        rng.standard_normal(n_cells) * (rng.random(n_cells) < 0.6),  # negatives and zeros
        -rng.poisson(2.0, n_cells).astype(float),  # negative integers
        np.where(rng.random(n_cells) < 0.3, 0.0, rng.lognormal(0, 1, n_cells)),  # dense floats
        np.where(rng.random(n_cells) < 0.5, 2.25, 0.0),  # one value, many ties
        np.where(rng.random(n_cells) < 0.5, -1.5, 0.0) + np.where(rng.random(n_cells) < 0.3, 7.0, 0.0),
        rng.standard_normal(n_cells),  # no zeros at all
    ]
    return np.stack(cols, axis=1).astype(dtype).astype(np.float64)


def groupings(rng: np.random.Generator, n_cells: int) -> np.ndarray:
    """Two groupings on the stacked axis: 5 groups, one of 1 cell and one of 2; then 40."""
    a = rng.integers(2, 5, n_cells)
    a[rng.choice(n_cells, 3, replace=False)] = [0, 1, 1]
    b = rng.integers(0, 40, n_cells) + 5
    return np.stack([a, b]).astype(np.int32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gene_quantiles_equal_numpy_bitwise(dtype: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_cells = 600
    x = varied_matrix(rng, n_cells, dtype)
    # a second layer: the first one scaled and shifted, as a float layer with other ties
    layers_dense = [x, np.where(x != 0, x * 0.37 - 0.1, 0.0)]
    codes = groupings(rng, n_cells)
    offsets = np.array([0, 5, 45], dtype=np.int64)
    sizes = np.bincount(codes.ravel(), minlength=45).astype(np.int64)
    assert sizes[0] == 1 and sizes[1] == 2
    indptr, cells, vals = slab_of(x)
    layer2 = np.concatenate([layers_dense[1][cells[indptr[j] : indptr[j + 1]], j] for j in range(x.shape[1])])
    out = np.full((2, len(QS), 45, x.shape[1]), np.nan)  # every entry is written
    out32 = np.full(out.shape, np.nan, dtype=np.float32)
    first = vals.astype(dtype)  # the input layer as stored: float32 or float64
    gene_quantiles(indptr, cells, first, layer2, codes, offsets, sizes, QS, out)
    gene_quantiles(indptr, cells, first, layer2, codes, offsets, sizes, QS, out32)
    for li, dense in enumerate(layers_dense):
        for g in range(2):
            for c in range(offsets[g], offsets[g + 1]):
                want = np.quantile(dense[codes[g] == c], QS, axis=0, method="linear")
                np.testing.assert_array_equal(out[li, :, c], want, err_msg=f"layer {li} group {c}")
                np.testing.assert_array_equal(out32[li, :, c], want.astype(np.float32))


def test_gene_quantiles_of_one_layer_reads_no_second() -> None:
    """With one layer in ``out`` the second may be empty; genes without values are zeros."""
    rng = np.random.default_rng(3)
    x = np.zeros((50, 3))
    x[:, 1] = rng.poisson(3.0, 50)
    indptr, cells, vals = slab_of(x)
    codes = (np.arange(50) % 2).astype(np.int32)[None, :]
    out = np.full((1, len(QS), 2, 3), np.nan)
    gene_quantiles(indptr, cells, vals, np.empty(0), codes, np.array([0, 2]), np.array([25, 25]), QS, out)
    for c in range(2):
        want = np.quantile(x[codes[0] == c], QS, axis=0, method="linear")
        np.testing.assert_array_equal(out[0, :, c], want)
    assert (out[0, :, :, [0, 2]] == 0).all()


@pytest.mark.parametrize(
    "values",
    [
        np.arange(500.0),  # sorted
        np.arange(500.0)[::-1].copy(),  # reversed
        np.full(300, 4.0),  # all equal
        np.concatenate([np.arange(250.0), np.arange(250.0)[::-1]]),  # organ pipe
        np.tile([1.0, 2.0], 200),  # two values
        np.random.default_rng(5).standard_normal(2001),
        np.random.default_rng(6).integers(-600, 600, 999).astype(float),  # integers: counted
        np.random.default_rng(10).integers(-(10**6), 10**6, 999).astype(float),  # too wide to count
        np.append(np.random.default_rng(7).random(700), 1e300),  # one outlier: one fat bucket
        1.0 + np.arange(100) * np.finfo(float).eps,  # a span of a few ulps
        np.append(np.random.default_rng(8).random(300) * 1e-310, 5e-324),  # subnormal span
        np.random.default_rng(9).lognormal(0, 3, 3000),  # heavy tail
        # normalized counts: bunches around log1p(k·s), split again at each bucketing level
        np.log1p(
            np.random.default_rng(11).poisson(2.0, 3000).clip(1)
            * np.random.default_rng(12).uniform(0.9, 1.1, 3000)
        ),
        np.concatenate([np.full(400, 0.7), np.random.default_rng(13).random(40)]),  # a bunch of ties
    ],
    ids=[
        "sorted",
        "reversed",
        "equal",
        "pipe",
        "two",
        "normal",
        "ints",
        "wide",
        "outlier",
        "ulps",
        "subnormal",
        "lognormal",
        "bunched",
        "tied bunch",
    ],
)
@pytest.mark.parametrize("n_zero", [0, 1, 40, 5000])
@pytest.mark.parametrize("scratch", ["default", "tiny"])
def test_group_quantiles_on_hard_orders(values: np.ndarray, n_zero: int, scratch: str) -> None:
    """Adversarial orders; "tiny" scratch forces the depth-limit sort and turns counting off."""
    ranks, stack, hist = quantile_scratch(len(QS))
    if scratch == "tiny":
        stack, hist = stack[:4], hist[:1]
    nonzero = values[values != 0]
    part = nonzero.copy()
    out = np.full(len(QS), np.nan)
    group_quantiles(part, len(part) + n_zero, int((part < 0).sum()), QS, out, ranks, stack, hist)
    want = np.quantile(np.concatenate([nonzero, np.zeros(n_zero)]), QS, method="linear")
    np.testing.assert_array_equal(out, want)


def test_group_quantiles_among_the_zeros_leaves_the_values_alone() -> None:
    """A group whose quantiles all fall among its zeros does no work on its values."""
    ranks, stack, hist = quantile_scratch(len(QS[:-1]))
    part = np.array([5.0, 3.0, 9.0, 1.0])
    out = np.full(len(QS) - 1, np.nan)
    group_quantiles(part, 100, 0, QS[:-1], out, ranks, stack, hist)  # up to q90 of 96 zeros
    np.testing.assert_array_equal(out, np.zeros(len(QS) - 1))
    np.testing.assert_array_equal(part, [5.0, 3.0, 9.0, 1.0])  # not even reordered
    ranks, stack, hist = quantile_scratch(1)
    out = np.full(1, np.nan)
    group_quantiles(part, 100, 0, np.array([1.0]), out, ranks, stack, hist)
    assert out[0] == 9.0
