"""The markers' best genes do not depend on where the genes were cut (slabs, a cluster's tasks).

The reference is one stable sort of every gene by t descending (NaN after -inf), ties to the
lower gene; the system's answer is built from slabs of random widths, joined in random tasks, on
scores with many ties (rounded t, NaN, ±inf), as a cluster's tasks and the build join them.
"""

from __future__ import annotations

import numpy as np
import pytest

from widecube.views.markers import FIELDS, MarkersPiece, Top


def _fields(rng: np.random.Generator, g: int, n: int) -> dict[str, np.ndarray]:
    t = np.round(rng.normal(size=(g, n)), 1)  # rounded: many equal scores
    t[rng.random((g, n)) < 0.2] = np.nan
    t[rng.random((g, n)) < 0.02] = np.inf
    t[rng.random((g, n)) < 0.02] = -np.inf
    t[0] = np.nan  # a group with no t at all (one cell): every gene ties
    t[1, ::3] = -np.inf  # many -inf
    t[2, 10::2], t[2, 11::2] = -np.inf, np.nan  # few numbers: every -inf ranks before every NaN
    return {"t": t, **{f: rng.random((g, n)) for f in FIELDS if f != "t"}}


def _reference(fields: dict[str, np.ndarray], k: int) -> np.ndarray:
    """Per row: numbers by t descending (-inf among them), then NaN; ties to the lower gene."""
    t = fields["t"]
    rows = []
    for row in t:
        numbers = np.flatnonzero(~np.isnan(row))
        numbers = numbers[np.argsort(-row[numbers], kind="stable")]
        rows.append(np.concatenate([numbers, np.flatnonzero(np.isnan(row))])[:k])
    return np.array(rows)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 7, 100])
def test_best_genes_equal_one_stable_sort_however_cut(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    g, n = 5, 400
    fields = _fields(rng, g, n)
    expected = _reference(fields, k)
    assert expected.shape == (g, min(k, n))

    cuts = np.unique(np.concatenate([[0, n], rng.integers(1, n, size=rng.integers(0, 30))]))
    pieces = []
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        sub = {f: a[:, lo:hi] for f, a in fields.items()}
        pieces.append(
            MarkersPiece(int(lo), int(hi), {("x", "g"): sub["pval"]}, {("x", "g"): Top.of(int(lo), sub, k)})
        )
    # tasks: consecutive runs of pieces joined first, then joined in order (the client's merge)
    tasks = np.unique(np.concatenate([[0, len(pieces)], rng.integers(1, max(2, len(pieces)), size=3)]))
    joined = Top.empty(g)
    for a, b in zip(tasks[:-1], tasks[1:], strict=True):
        task = MarkersPiece.joined(pieces[a:b], k)
        assert (task.lo, task.hi) == (cuts[a], cuts[b])
        np.testing.assert_array_equal(task.pvals["x", "g"], fields["pval"][:, cuts[a] : cuts[b]])
        joined = joined.join(task.top["x", "g"], k)

    np.testing.assert_array_equal(joined.gene, expected)
    for f in FIELDS:
        np.testing.assert_array_equal(joined.fields[f], np.take_along_axis(fields[f], expected, axis=1))
