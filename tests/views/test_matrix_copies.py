"""The gene-major matrix view's chunk copies: reused whatever the lengths joined."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from widecube.compute import ArrayPool
from widecube.views import matrix


def test_joins_of_any_length_reuse_the_copies_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slab's tail (shorter than a chunk) and a whole chunk come from the same copies: with
    at most ``held`` joins alive at a time, ``held + 1`` copies serve 200 joins of lengths
    that grow and shrink, each holding the concatenation of its parts."""
    chunk = 1000
    monkeypatch.setattr(matrix, "_CHUNK", chunk)
    builder = SimpleNamespace(_copies=ArrayPool(keep=matrix._COPIES))
    join = matrix.MatrixBuilder._joined
    rng = np.random.default_rng(3)
    held: list[np.ndarray] = []
    owners: set[int] = set()
    for i in range(200):
        n = int(rng.integers(1, chunk + 1)) if i % 3 else chunk  # tails and whole chunks
        cut = int(rng.integers(0, n + 1))
        parts = (np.arange(cut, dtype=np.float32), np.arange(cut, n, dtype=np.float32) + 0.5)
        got = join(builder, *parts)  # type: ignore[arg-type]
        np.testing.assert_array_equal(got, np.concatenate(parts))
        assert got.dtype == np.float32 and got.shape == (n,)
        owners.add(id(got.base))
        held.append(got)
        if len(held) > 3:  # a background write lets go of the oldest
            held.pop(0)
    assert len(owners) <= 4, f"{len(owners)} copies made for 200 joins, 4 alive at most"
