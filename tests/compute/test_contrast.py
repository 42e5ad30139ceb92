"""Benjamini-Hochberg adjusted p-values against scipy's false_discovery_control."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from widecube.compute import benjamini_hochberg


@pytest.mark.parametrize("threads", [1, 2])
def test_rows_adjusted_as_scipy_does_with_ones_and_ties(threads: int) -> None:
    rng = np.random.default_rng(7)
    p = rng.random((40, 500)) ** 4
    p[:, rng.random(500) < 0.3] = 1.0  # genes absent from a group: no sort, adjusted to 1
    p[3, :50] = p[3, 50]  # ties
    p[4] = 1.0  # a row of ones only
    p[5, :] = rng.random(500) ** 8  # no ones at all
    want = np.stack([stats.false_discovery_control(row, method="bh") for row in p])
    got = benjamini_hochberg(p, threads=threads)
    assert got.shape == p.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert (got[4] == 1.0).all()
    assert (got[p >= 1.0] == 1.0).all()
    assert (got >= p).all()  # an adjusted p-value is never below its own


def test_threads_do_not_change_a_bit() -> None:
    p = np.random.default_rng(8).random((64, 3000)) ** 3
    assert np.array_equal(benjamini_hochberg(p, threads=1), benjamini_hochberg(p, threads=2))
