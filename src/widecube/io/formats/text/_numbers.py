"""The one number parser of the text scanners: a decimal field of bytes in, a float64 out.

Both numba scanners (:mod:`._csvscan` for CSV/TSV, :mod:`._mtxscan` for MatrixMarket) parse
their common case, a plain integer, inline; everything else goes through
:func:`parse_real`, so the two formats accept exactly the same numbers. A field ends at the
end of the buffer, a line end (``\\n``, ``\\r``) or one of two separator bytes: the
delimiter twice for CSV/TSV, space and tab for MTX.

Grammar: an optional sign, digits with an optional decimal point (at least one digit), an
optional exponent (``e``/``E``, optional sign, at least one digit), or ``nan``, ``inf``,
``infinity`` in any case. The first 18 significant digits are kept exactly in an integer
and scaled once by a power of ten, so a value with at most 15 significant digits and a
scale within 10^±22 is the correctly rounded float64, and any other lies within one ulp.
Parsing is a hand-written loop rather than ``float(bytes)``: it runs inside the GIL-free
numba scans, one call per non-integer field.

    >>> parse_real(np.frombuffer(b"-1.5e3,", np.uint8), 0, 7, 44, 44)  # doctest: +SKIP
    (-1500.0, 6, True)
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["parse_real"]

_POW10 = np.array([10.0**k for k in range(23)])


# No ``inline="always"``: numba's IR-level inlining made the MTX scan ~10 × slower (measured).
@numba.njit(cache=True, nogil=True)
def _field_end(buf: np.ndarray, p: int, n: int, sep1: int, sep2: int) -> bool:
    """Whether ``p`` is past the field: the end of ``buf``, a line end or a separator."""
    if p >= n:
        return True
    c = buf[p]
    return bool(c == sep1 or c == sep2 or c == 10 or c == 13)  # noqa: SIM109 - plain compares in numba


@numba.njit(cache=True, nogil=True)
def _special(buf: np.ndarray, p: int, n: int) -> tuple[float, int]:
    """``nan``/``inf``/``infinity`` (any case) at ``p``: (value, end) or (0, -1)."""
    word = np.zeros(8, np.uint8)
    k = 0
    while p + k < n and k < 8 and (65 <= buf[p + k] <= 90 or 97 <= buf[p + k] <= 122):
        word[k] = buf[p + k] | 32  # lower case
        k += 1
    if k == 3 and word[0] == 110 and word[1] == 97 and word[2] == 110:
        return np.nan, p + 3
    is_inf = k >= 3 and word[0] == 105 and word[1] == 110 and word[2] == 102
    if is_inf and (
        k == 3
        or (
            k == 8
            and word[3] == 105
            and word[4] == 110
            and word[5] == 105
            and word[6] == 116
            and word[7] == 121
        )
    ):
        return np.inf, p + k
    return 0.0, -1


@numba.njit(cache=True, nogil=True)
def parse_real(buf: np.ndarray, p: int, n: int, sep1: int, sep2: int) -> tuple[float, int, bool]:
    """The number in the field starting at ``p``: ``(value, end, ok)``.

    ``end`` is the position just past the field when ``ok``; ``ok`` is False when the field
    is not a number of the grammar above (an empty field included: callers that name empty
    fields apart, like CSV's null values, test for them first).
    """
    neg = False
    if p < n and (buf[p] == 45 or buf[p] == 43):
        neg = buf[p] == 45
        p += 1
    mant = 0
    kept = 0  # significant digits in ``mant`` (at most 18, so it cannot overflow)
    seen = 0
    exp = 0
    while p < n and 48 <= buf[p] <= 57:
        if kept < 18:
            mant = mant * 10 + (buf[p] - 48)
            if mant > 0:
                kept += 1
        else:
            exp += 1
        seen += 1
        p += 1
    if p < n and buf[p] == 46:
        p += 1
        while p < n and 48 <= buf[p] <= 57:
            if kept < 18:
                mant = mant * 10 + (buf[p] - 48)
                if mant > 0:
                    kept += 1
                exp -= 1
            seen += 1
            p += 1
    if seen == 0:
        value, end = _special(buf, p, n)
        if end < 0 or not _field_end(buf, end, n, sep1, sep2):
            return 0.0, p, False
        return (-value if neg else value), end, True
    if p < n and (buf[p] == 101 or buf[p] == 69):
        p += 1
        eneg = False
        if p < n and (buf[p] == 45 or buf[p] == 43):
            eneg = buf[p] == 45
            p += 1
        e = 0
        e_digits = 0
        while p < n and 48 <= buf[p] <= 57:
            e = min(e * 10 + (buf[p] - 48), 100_000)
            e_digits += 1
            p += 1
        if e_digits == 0:
            return 0.0, p, False
        exp += -e if eneg else e
    if not _field_end(buf, p, n, sep1, sep2):
        return 0.0, p, False
    value = float(mant)
    if mant != 0 and exp != 0:
        if 0 < exp <= 22:
            value *= _POW10[exp]
        elif -22 <= exp < 0:
            value /= _POW10[-exp]
        else:
            value *= 10.0**exp
    return (-value if neg else value), p, True
