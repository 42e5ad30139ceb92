"""The slab check of ``io/formats/_compressed.py`` against its references: the first index
out of range as numpy finds it, canonical order as scipy's ``has_canonical_format`` says."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from widecube.io.formats._compressed import _scan_indices


def _reference(indices: np.ndarray, ptr: np.ndarray, n_minor: int) -> tuple[int, bool]:
    signed = indices.astype(np.int64) if indices.dtype != np.uint64 else indices.view(np.int64)
    outside = (signed < 0) | (signed >= n_minor)
    if outside.any():
        return int(np.argmax(outside)), False
    m = sp.csr_matrix((np.ones(len(indices)), indices.astype(np.int64), ptr), shape=(len(ptr) - 1, n_minor))
    return -1, bool(m.has_canonical_format)


def _csr(seed: int, n_rows: int = 60, n_minor: int = 50) -> tuple[np.ndarray, np.ndarray]:
    m = sp.random(n_rows, n_minor, density=0.2, random_state=np.random.default_rng(seed), format="csr")
    m.sort_indices()
    return m.indices.astype(np.int64), m.indptr.astype(np.int64)


CASES = {
    "canonical": lambda i, p: None,
    "two swapped in a row": lambda i, p: i.__setitem__(
        slice(p[3], p[3] + 2), i[p[3] : p[3] + 2][::-1].copy()
    ),
    "a duplicate": lambda i, p: i.__setitem__(p[5] + 1, i[p[5]]),
    "negative": lambda i, p: i.__setitem__(17, -1),
    "one past the end": lambda i, p: i.__setitem__(40, 50),
    "past the end and unordered": lambda i, p: (i.__setitem__(9, 900), i.__setitem__(30, 49)),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32, np.uint64])
def test_scan_matches_numpy_and_scipy(case: str, dtype: type) -> None:
    indices, ptr = _csr(1)
    CASES[case](indices, ptr)
    if np.dtype(dtype).kind == "u" and (indices < 0).any():
        indices = indices.astype(np.int64).astype(dtype)  # -1 wraps to the type's largest value
    else:
        indices = indices.astype(dtype)
    want = _reference(indices, ptr, 50)
    assert (want == (-1, True)) == (case == "canonical")  # each case breaks what it says
    assert _scan_indices(indices, ptr, 50) == want


def test_empty_rows_and_an_empty_slab() -> None:
    indices = np.array([3, 1, 2], dtype=np.int32)
    ptr = np.array([0, 0, 1, 1, 3, 3], dtype=np.int64)  # rows of 0, 1, 0, 2, 0 values
    assert _scan_indices(indices, ptr, 5) == (-1, True)
    assert _scan_indices(np.array([2, 1], dtype=np.int32), np.array([0, 0, 2]), 5) == (-1, False)
    assert _scan_indices(np.zeros(0, dtype=np.int32), np.array([0, 0]), 5) == (-1, True)


def test_huge_uint64_is_outside() -> None:
    indices = np.array([1, 2**63 + 5, 3], dtype=np.uint64)
    assert _scan_indices(indices, np.array([0, 3]), 10)[0] == 1
