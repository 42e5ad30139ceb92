"""Random numbers inside numba kernels: one counter-based splitmix64 stream per cell.

A stream is a 1-element uint64 array seeded from ``(key, cell number)``, so a cell's draws do
not depend on threads or block sizes. On top of the uniform: normal (Box-Muller), gamma
(Marsaglia-Tsang), Poisson (multiplication, or Hörmann's PTRS for large means) and
Logarithmic (Kemp). numpy's Generator cannot be called from a ``prange`` loop, hence these.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

__all__ = ["gamma", "logseries", "mix", "normal", "poisson", "uniform"]

_Array = npt.NDArray[Any]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(nogil=True, cache=True, inline="always")
def mix(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(nogil=True, cache=True, inline="always")
def uniform(st: _Array) -> float:
    """Uniform on the open interval (0, 1)."""
    st[0] += _GOLDEN
    return (np.float64(mix(st[0]) >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(nogil=True, cache=True)
def normal(st: _Array) -> float:
    radius = math.sqrt(-2.0 * math.log(uniform(st)))
    return radius * math.cos(2.0 * math.pi * uniform(st))


@njit(nogil=True, cache=True)
def gamma(st: _Array, shape: float) -> float:
    """Marsaglia-Tsang; shapes below 1 via the ``U**(1/a)`` boost."""
    boost = 1.0
    if shape < 1.0:
        boost = uniform(st) ** (1.0 / shape)
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    while True:
        x = normal(st)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        u = uniform(st)
        if u < 1.0 - 0.0331 * x**4 or np.log(u) < 0.5 * x * x + d * (1.0 - v + np.log(v)):
            return float(d * v * boost)


@njit(nogil=True, cache=True)
def poisson(st: _Array, lam: float) -> int:
    """Inversion by multiplication for small means, Hörmann's PTRS otherwise."""
    if lam < 12.0:
        limit, k, prod = np.exp(-lam), 0, uniform(st)
        while prod > limit:
            k += 1
            prod *= uniform(st)
        return k
    slam, loglam = np.sqrt(lam), np.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        u = uniform(st) - 0.5
        v = uniform(st)
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
def logseries(st: _Array, p: float) -> int:
    """Kemp's algorithm for the Logarithmic(p) law on {1, 2, ...}."""
    v = uniform(st)
    if v >= p:
        return 1
    q = -np.expm1(np.log1p(-p) * uniform(st))
    if v <= q * q:
        return max(1, int(np.floor(1.0 + np.log(v) / np.log(q))))
    return 1 if v >= q else 2
