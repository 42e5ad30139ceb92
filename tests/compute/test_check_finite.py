"""Pass 1's finite-value check (``compute._pass.check_finite``): the first NaN or infinity in
row-major order is named by its 1-based row and column, the cell and the gene, whatever the
block's float64 sum does (two infinities of opposite sign sum to NaN; finite float64 values
can overflow the sum to infinity and must still pass). The reference is numpy's own
``isfinite`` over the dense matrix."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from widecube.compute._pass import check_finite
from widecube.errors import InvalidValue
from widecube.io import Block


def _check(x: np.ndarray, row_start: int = 0) -> None:
    n_cells, n_genes = x.shape[0] + row_start, x.shape[1]
    source = SimpleNamespace(shape=(n_cells, n_genes), path=Path("m.h5ad"))
    check = check_finite(source, [f"c{i}" for i in range(n_cells)], [f"g{j}" for j in range(n_genes)])  # type: ignore[arg-type]
    check(Block(row_start, 0, sp.csr_matrix(x)))


def _first_bad(x: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(~np.isfinite(x))
    return int(rows[0]), int(cols[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("bad", "what"),
    [([np.nan], "NaN"), ([np.inf, -np.inf], "infinite value"), ([-np.inf], "infinite value")],
)
def test_the_first_bad_value_is_named(dtype: type, bad: list[float], what: str) -> None:
    x = np.random.default_rng(0).poisson(1.0, (40, 30)).astype(dtype)
    places = [(7, 3), (12, 29)]
    for (r, c), v in zip(places, bad, strict=False):
        x[r, c] = v
    r, c = _first_bad(x)
    assert (r, c) == places[0]
    with pytest.raises(InvalidValue) as raised:
        _check(x, row_start=100)
    assert str(raised.value) == (
        f"m.h5ad: {what} found at row {r + 101} (cell 'c{r + 100}'), column {c + 1} (gene 'g{c}')"
    )


def test_finite_values_whose_sum_overflows_pass() -> None:
    x = np.zeros((4, 3))
    x[:, 0] = np.finfo(np.float64).max
    with np.errstate(over="ignore"):
        assert np.isfinite(x).all() and not np.isfinite(x.sum())
    _check(x)


def test_a_clean_float32_block_passes() -> None:
    x = np.full((5, 5), np.finfo(np.float32).max, dtype=np.float32)
    _check(x)
