"""Exact quantiles of one group from order statistics, not a sort: the selection kernels.

numpy's ``quantile(method="linear")`` of a group of ``n`` cells reads, per level, the elements
of two ranks. The group's implicit zeros are counted, not stored: a rank among them is 0 with
no work (a sparse gene's group often needs no work at all). The other ranks are selected among
the stored values, all levels at once: integers of a short range by counting each value;
other values by bucketing by value (a few passes without comparisons, down to the handful
of values in the buckets that hold the ranks); a few values by insertion sort; what resists
bucketing (NaN, infinities, spans too narrow to divide) by a multi-rank introselect. Then
numpy's own interpolation, to the last bit. The ingest's per-gene kernel
(:func:`~._kernels.gene_quantiles`) and the on-the-fly aggregate both call
:func:`group_quantiles`, so they agree bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["COUNT_RANGE", "group_quantiles", "quantile_scratch", "top_rank"]

_SMALL = 16
"""At most this many values are put in order by insertion sort; more are partitioned."""

_BUCKETS_PER_VALUE = 2
"""Value buckets per value at each level of :func:`_bucket_select` (measured on a normalized
layer of counts, where values bunch: 2 gathers ~15 % of a level's values for 5 quantiles)."""

COUNT_RANGE = 4096
"""Integer values spanning at most this many consecutive values are counted, not compared
(the size of the histogram a caller passes to :func:`group_quantiles`)."""


@njit(nogil=True, cache=True)
def _lerp(a: float, b: float, frac: float) -> float:  # pragma: no cover - compiled
    """numpy's ``_lerp`` to the last bit: ``a + (b-a)·t``, or ``b - (b-a)·(1-t)`` from
    ``t = 0.5`` on (the two branches keep it monotone and exact at both ends)."""
    return a + (b - a) * frac if frac < 0.5 else b - (b - a) * (1.0 - frac)


@njit(nogil=True, cache=True)
def _stored_rank(r: int, n_neg: int, n_zero: int) -> int:  # pragma: no cover - compiled
    """Where rank ``r`` of the whole column (stored negatives, implicit zeros, the other
    stored values) lies among the stored values in order; -1 for an implicit zero."""
    if r < n_neg:
        return r
    if r < n_neg + n_zero:
        return -1
    return r - n_zero


@njit(nogil=True, cache=True)
def _insertion_sort(a: np.ndarray, lo: int, hi: int) -> None:  # pragma: no cover - compiled
    """Sort ``a[lo:hi]`` in place: the fastest for the few values of a short range."""
    for i in range(lo + 1, hi):
        v = a[i]
        k = i - 1
        while k >= lo and a[k] > v:
            a[k + 1] = a[k]
            k -= 1
        a[k + 1] = v


@njit(nogil=True, cache=True)
def _push(
    stack: np.ndarray, top: int, lo: int, hi: int, rlo: int, rhi: int, depth: int
) -> int:  # pragma: no cover - compiled
    """Push the open range ``lo:hi`` holding ``ranks[rlo:rhi]``; the new stack height."""
    stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3], stack[top, 4] = lo, hi, rlo, rhi, depth
    return top + 1


@njit(nogil=True, cache=True)
def _partition_select(
    a: np.ndarray, ranks: np.ndarray, n_ranks: int, stack: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Reorder ``a`` so that ``a[r]`` is its ``r``-th smallest value for each of the
    ``n_ranks`` ascending, distinct ``ranks`` (multi-rank introselect).

    One three-way partition around a median of three splits a range into less / equal /
    greater; the ranks landing on the equal band are done, the others narrow their side, so
    several ranks share the first partitions and ties cost nothing. Short ranges are
    insertion-sorted; a range still open after ``2·log2(len)`` partitions (an adversarial
    input) is sorted, which bounds the worst case at ``O(n log n)``. ``stack`` is int64
    scratch of shape ``(rows, 5)``; fewer than ``2·log2(len)+4`` rows lower that depth limit.
    """
    m = a.shape[0]
    depth_limit = min(2 * int(np.log2(m)) + 2, stack.shape[0] - 2)
    top = _push(stack, 0, 0, m, 0, n_ranks, 0)
    while top > 0:
        top -= 1
        lo, hi, rlo, rhi, depth = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3], stack[top, 4]
        if hi - lo <= _SMALL:
            _insertion_sort(a, lo, hi)
            continue
        if depth >= depth_limit:
            a[lo:hi].sort()
            continue
        x, y, z = a[lo], a[(lo + hi) >> 1], a[hi - 1]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
            if x > y:
                y = x
        pivot = y
        lt, i, gt = lo, lo, hi
        while i < gt:
            v = a[i]
            if v < pivot:
                a[i] = a[lt]
                a[lt] = v
                lt += 1
                i += 1
            elif v > pivot:
                gt -= 1
                a[i] = a[gt]
                a[gt] = v
            else:
                i += 1
        r_left = rlo
        while r_left < rhi and ranks[r_left] < lt:
            r_left += 1
        r_right = r_left
        while r_right < rhi and ranks[r_right] < gt:
            r_right += 1
        if r_right < rhi:
            top = _push(stack, top, gt, hi, r_right, rhi, depth + 1)
        if r_left > rlo:
            top = _push(stack, top, lo, lt, rlo, r_left, depth + 1)


@njit(nogil=True, cache=True)
def _count_select(
    a: np.ndarray, ranks: np.ndarray, n_ranks: int, base: float, span: int, hist: np.ndarray
) -> None:  # pragma: no cover - compiled
    """As :func:`_partition_select`, for integer values in ``base .. base+span-1``: count
    each value once, then walk the counts to the ranks (``O(len + span)``, no comparisons).
    Only ``a[ranks]`` is written, so ``a`` no longer holds the same values."""
    hist[:span] = 0
    for i in range(a.shape[0]):
        hist[int(a[i] - base)] += 1
    seen = 0
    t = 0
    for b in range(span):
        seen += hist[b]
        while t < n_ranks and ranks[t] < seen:
            a[ranks[t]] = base + b
            t += 1
        if t == n_ranks:
            break


@njit(nogil=True, cache=True)
def _bucket_select(
    a: np.ndarray,
    ranks: np.ndarray,
    n_ranks: int,
    lo_v: float,
    hi_v: float,
    hist: np.ndarray,
    stack: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """As :func:`_partition_select`, for values in ``lo_v < hi_v`` (no NaN, no infinity), by
    value buckets, level after level.

    ``⌊(v - lo_v)·scale⌋`` is monotone in ``v`` (each rounding step is), so the buckets are
    ordered: one pass counts them (:data:`_BUCKETS_PER_VALUE` per value), which names the
    bucket of each rank; a second moves the values of those few buckets to the front of
    ``a`` (branch-free) and the ranks become ranks among them. Again on what was gathered,
    between its own least and greatest value (values bunch: a level splits each bunch),
    until at most :data:`_SMALL` values are left (insertion sort), a level gathers
    everything (partition), or all are equal. Then each rank's value moves to its place.
    ``ranks`` needs twice ``n_ranks`` entries (the ranks among the gathered values go in the
    second half).
    """
    half = ranks.shape[0] >> 1
    cur = ranks[half : half + n_ranks]  # the ranks among the values still gathered, a[:m]
    cur[:] = ranks[:n_ranks]
    m = a.shape[0]
    while m > _SMALL:
        n_buckets = min(hist.shape[0], _BUCKETS_PER_VALUE * m)
        scale = (n_buckets - 1) / (hi_v - lo_v)
        if not np.isfinite(scale):  # a span too small to divide by (subnormal)
            break
        last = n_buckets - 1
        hist[:n_buckets] = 0
        for i in range(m):
            hist[min(int((a[i] - lo_v) * scale), last)] += 1
        seen = 0
        for b in range(n_buckets):  # counts to the first rank in each bucket
            c = hist[b]
            hist[b] = seen
            seen += c
        b = 0
        prev = -1  # the last wanted bucket, marked by a negative first rank
        prev_start = 0
        wanted_before = 0  # values in the wanted buckets below it
        for t in range(n_ranks):
            r = cur[t]
            while b < last and hist[b + 1] <= r:  # buckets above prev are not marked yet
                b += 1
            if b != prev:
                if prev >= 0:
                    wanted_before += (hist[prev + 1] if prev < last else m) - prev_start
                prev, prev_start = b, hist[b]
                hist[b] = -1 - prev_start
            cur[t] = wanted_before + r - prev_start
        k = 0
        lo_k, hi_k = hi_v, lo_v
        for i in range(m):
            v = a[i]
            a[k] = v
            wanted = hist[min(int((v - lo_v) * scale), last)] < 0
            k += wanted
            lo_k = min(lo_k, v) if wanted else lo_k
            hi_k = max(hi_k, v) if wanted else hi_k
        if k == m:  # one bucket holds them all: partition
            break
        m, lo_v, hi_v = k, lo_k, hi_k
        if lo_v == hi_v:  # every value left is the same: each rank is that value
            for t in range(n_ranks):
                a[cur[t]] = lo_v
            m = 0
    if m > _SMALL:
        _partition_select(a[:m], cur, n_ranks, stack)
    elif m > 1:
        _insertion_sort(a, 0, m)
    for t in range(n_ranks - 1, -1, -1):  # cur[t] <= ranks[t]: descending never overwrites
        a[ranks[t]] = a[cur[t]]


@njit(nogil=True, cache=True)
def group_quantiles(
    part: np.ndarray,
    n: int,
    n_neg: int,
    qs: np.ndarray,
    out: np.ndarray,
    ranks: np.ndarray,
    stack: np.ndarray,
    hist: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """``out[t] = numpy.quantile(column, qs[t], method="linear")`` of a group of ``n`` cells
    whose stored values (in any order) are ``part``, ``n_neg`` of them negative, the rest of
    the column implicit zeros — from order statistics, not a sort. ``part`` may also be empty
    when the caller knows that every needed rank falls among the zeros (the aggregate does).

    numpy's position ``h = (n-1)·q`` needs the elements of rank ``⌊h⌋`` and ``⌊h⌋+1``; a rank
    among the zeros (the negatives come first) is 0 with no work; only the other ranks are
    selected among the stored values (counted when they are integers of a short range, else
    bucketed by value and partitioned within the few buckets that hold them; a handful of
    values are insertion-sorted), all quantiles at once; then numpy's own interpolation. ``part`` is
    scratch: reordered, or overwritten by the counting. Scratch too: ``ranks`` int64
    ``≥ 4·len(qs)``, ``stack`` int64 ``(130, 5)``, ``hist`` int64 ``COUNT_RANGE`` (see
    :func:`quantile_scratch`). The ingest's kernel and the on-the-fly aggregate both call
    this one, so they agree bit for bit.
    """
    m = part.shape[0]
    n_zero = n - m
    n_ranks = 0
    for t in range(qs.shape[0]):
        pos = qs[t] * (n - 1)
        lo = int(np.floor(pos))
        top = lo + 1 if pos - lo > 0.0 and lo + 1 < n else lo
        for r in range(lo, top + 1):
            s = _stored_rank(r, n_neg, n_zero)
            if s < 0:
                continue
            k = n_ranks  # insert in order, once
            while k > 0 and ranks[k - 1] > s:
                k -= 1
            if k > 0 and ranks[k - 1] == s:
                continue
            for i in range(n_ranks, k, -1):
                ranks[i] = ranks[i - 1]
            ranks[k] = s
            n_ranks += 1
    if n_ranks > 0:
        if m <= _SMALL:
            _insertion_sort(part, 0, m)
        else:
            lo_v = part[0]
            hi_v = part[0]
            integral = True
            nan = False
            for i in range(m):
                v = part[i]
                lo_v = min(lo_v, v)
                hi_v = max(hi_v, v)
                integral &= v == np.floor(v)
                nan |= v != v
            if integral and hi_v - lo_v < hist.shape[0]:
                _count_select(part, ranks, n_ranks, lo_v, int(hi_v - lo_v) + 1, hist)
            elif not nan and lo_v < hi_v and hi_v - lo_v < np.inf:
                _bucket_select(part, ranks, n_ranks, lo_v, hi_v, hist, stack)
            else:
                _partition_select(part, ranks, n_ranks, stack)
    for t in range(qs.shape[0]):
        pos = qs[t] * (n - 1)
        lo = int(np.floor(pos))
        frac = pos - lo
        s = _stored_rank(lo, n_neg, n_zero)
        a = part[s] if s >= 0 else 0.0
        if frac > 0.0 and lo + 1 < n:
            s = _stored_rank(lo + 1, n_neg, n_zero)
            b = part[s] if s >= 0 else 0.0
            out[t] = _lerp(a, b, frac)
        else:
            out[t] = a


def quantile_scratch(n_qs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fresh scratch (ranks, stack, hist) for :func:`group_quantiles` (one per thread)."""
    return (
        np.empty(4 * n_qs + 4, dtype=np.int64),
        np.empty((130, 5), dtype=np.int64),
        np.empty(COUNT_RANGE, dtype=np.int64),
    )


@njit(nogil=True, cache=True)
def top_rank(n: int, qs: np.ndarray) -> int:  # pragma: no cover - compiled
    """The highest rank numpy's linear quantiles ``qs`` of ``n`` values read."""
    top = 0
    for t in range(qs.shape[0]):
        pos = qs[t] * (n - 1)
        lo = int(np.floor(pos))
        top = max(top, lo + 1 if pos - lo > 0.0 and lo + 1 < n else lo)
    return top
