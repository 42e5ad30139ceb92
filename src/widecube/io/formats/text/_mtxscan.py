"""A scanner for MatrixMarket coordinate lines: bytes of whole lines in, index/value arrays out.

pyarrow's CSV reader parsed MTX entries at ~165 MB/s and then needed numpy passes to check
them; this scan reads each ``row column [value]`` line once, front to back, checks the
indices against the matrix and writes 0-based cell and gene indices and the value straight
into int32 / float64 arrays. It releases the GIL, so the reader scans two halves of each
piece of the file on two cores (:mod:`._mtxstream`).

Grammar: fields separated by spaces or tabs, leading and trailing blanks allowed, ``\\r\\n``
or ``\\n`` endings; blank lines and ``%`` comment lines are skipped (and counted). Indices
are 1-based integers; values are integers (int32), reals (an optional sign, digits with an
optional point, an optional exponent, or ``nan``/``inf``/``infinity``, parsed by the
parser the CSV scanner shares, :func:`._numbers.parse_real`) or absent (``pattern``).
Anything else stops the scan with a code and its place, which the reader turns into a
message naming the file and the line.
"""

from __future__ import annotations

import numba
import numpy as np

from ._numbers import parse_real

__all__ = [
    "INTEGER",
    "REAL",
    "PATTERN",
    "OK",
    "NON_NUMERIC",
    "RAGGED",
    "OUT_OF_RANGE",
    "TOO_LARGE",
    "scan_entries",
]

INTEGER, REAL, PATTERN = 0, 1, 2
OK, NON_NUMERIC, RAGGED, OUT_OF_RANGE, TOO_LARGE = 0, 1, 2, 3, 4
_INT32_MAX = 2**31 - 1
_FAST_TAIL = 64
"""The fast path reads at most 3 × 17 digits and 3 separators past a line's start: it is
taken while that many bytes remain, so it never reads past the buffer (a longer field, which
the general parse reports as too large, fails it)."""
_NINE = np.uint64(9)
_U_INT32_MAX = np.uint64(_INT32_MAX)


@numba.njit(cache=True, nogil=True)
def scan_entries(
    buf: np.ndarray,
    kind: int,
    cell_is_column: bool,
    n_rows: int,
    n_cols: int,
    cells: np.ndarray,
    genes: np.ndarray,
    ivalues: np.ndarray,
    fvalues: np.ndarray,
) -> tuple[int, int, int, int, int, int, int, bool]:
    """Scan the lines of ``buf`` into 0-based ``cells``/``genes`` and the values.

    ``kind`` is INTEGER (values into ``ivalues``), REAL (``fvalues``) or PATTERN (none);
    each output array needs ``len(buf) // 4 + 1`` slots. Returns ``(entries, lines, code,
    field, offset, row, column, ordered)``: ``lines`` counts every line read, blank and
    comment lines included; ``ordered`` says whether cells never decrease. On an error
    ``lines`` is the 0-based line at fault within ``buf``, ``field`` the 0-based field (its
    count for RAGGED), ``offset`` where its token starts, ``row``/``column`` the 1-based
    indices as written (for OUT_OF_RANGE).

    The integer fields are parsed inline, line by line, straight through: a call per field
    cost ~15 ns here and a loop over fields another 10 ns an entry (measured: 21 ns an
    entry without those, against 57 with them). Lines of the common shape (unsigned
    integers, single spaces, ``\n``) then take a fast path that checks only what can fail
    there, in unsigned compares, and leaves anything else to the general parse: 10.5 ns an
    entry on Cell Ranger's layout (11.7 bytes a line; ``benchmarks/readers.py`` data).
    """
    n = len(buf)
    want = 2 if kind == PATTERN else 3
    p = 0
    line = 0
    k = 0
    last_cell = -1
    ordered = True
    val = 0
    at = 0
    rows_u, cols_u = np.uint64(n_rows), np.uint64(n_cols)
    while p < n:
        # The common line, ``digits digits [digits]\n`` with single spaces, in one straight
        # run; anything else (signs, tabs, CRs, comments, blank lines, errors, the last
        # _FAST_TAIL bytes) falls through to the general parse below, from the same place.
        if p + _FAST_TAIL <= n:
            q = p
            d = np.uint64(buf[q]) - np.uint64(48)
            f0 = np.uint64(0)
            while d <= _NINE and q - p < 17:
                f0 = f0 * np.uint64(10) + d
                q += 1
                d = np.uint64(buf[q]) - np.uint64(48)
            if q > p and buf[q] == 32:
                q += 1
                s1 = q
                d = np.uint64(buf[q]) - np.uint64(48)
                f1 = np.uint64(0)
                while d <= _NINE and q - s1 < 17:
                    f1 = f1 * np.uint64(10) + d
                    q += 1
                    d = np.uint64(buf[q]) - np.uint64(48)
                good = q > s1
                f2 = np.uint64(1)
                if good and kind == INTEGER:
                    good = buf[q] == 32
                    q += 1
                    s2 = q
                    d = np.uint64(buf[q]) - np.uint64(48)
                    f2 = np.uint64(0)
                    while d <= _NINE and q - s2 < 17:
                        f2 = f2 * np.uint64(10) + d
                        q += 1
                        d = np.uint64(buf[q]) - np.uint64(48)
                    good = bool(good and q > s2 and f2 <= _U_INT32_MAX)
                elif kind == REAL:
                    good = False
                if (
                    good
                    and buf[q] == 10
                    and f0 - np.uint64(1) < rows_u  # 1..n_rows (0 wraps around)
                    and f1 - np.uint64(1) < cols_u
                ):
                    if cell_is_column:
                        cell, gene = int(f1) - 1, int(f0) - 1
                    else:
                        cell, gene = int(f0) - 1, int(f1) - 1
                    if cell < last_cell:
                        ordered = False
                    last_cell = cell
                    cells[k] = cell
                    genes[k] = gene
                    if kind == INTEGER:
                        ivalues[k] = f2
                    k += 1
                    p = q + 1
                    line += 1
                    continue
        c = buf[p]
        while c == 32 or c == 9:
            p += 1
            if p >= n:
                break
            c = buf[p]
        if p >= n:
            break
        if c == 10 or c == 13 or c == 37:  # a blank or % comment line
            while p < n and buf[p] != 10:
                p += 1
            p += 1
            line += 1
            continue
        at = p
        neg = False
        c = buf[p]
        if c == 45 or c == 43:
            neg = c == 45
            p += 1
        first = p
        v = 0
        while p < n:
            c = buf[p]
            if c < 48 or c > 57:
                break
            v = v * 10 + (c - 48)
            p += 1
        if p == first or (p < n and c != 32 and c != 9 and c != 10 and c != 13):
            return k, line, NON_NUMERIC, 0, at, 0, 0, ordered
        if p - first >= 18:
            return k, line, TOO_LARGE, 0, at, 0, 0, ordered
        row = -v if neg else v
        while p < n and (buf[p] == 32 or buf[p] == 9):
            p += 1
        if p >= n or buf[p] == 10 or buf[p] == 13:
            return k, line, RAGGED, 1, p, 0, 0, ordered
        at = p
        neg = False
        c = buf[p]
        if c == 45 or c == 43:
            neg = c == 45
            p += 1
        first = p
        v = 0
        while p < n:
            c = buf[p]
            if c < 48 or c > 57:
                break
            v = v * 10 + (c - 48)
            p += 1
        if p == first or (p < n and c != 32 and c != 9 and c != 10 and c != 13):
            return k, line, NON_NUMERIC, 1, at, 0, 0, ordered
        if p - first >= 18:
            return k, line, TOO_LARGE, 1, at, 0, 0, ordered
        col = -v if neg else v
        while p < n and (buf[p] == 32 or buf[p] == 9):
            p += 1
        if kind != PATTERN:
            if p >= n or buf[p] == 10 or buf[p] == 13:
                return k, line, RAGGED, 2, p, 0, 0, ordered
            if kind == REAL:
                at = p
                value, p, ok = parse_real(buf, p, n, 32, 9)
                if not ok:
                    return k, line, NON_NUMERIC, 2, at, 0, 0, ordered
                fvalues[k] = value
                while p < n and (buf[p] == 32 or buf[p] == 9):
                    p += 1
            else:
                at = p
                neg = False
                c = buf[p]
                if c == 45 or c == 43:
                    neg = c == 45
                    p += 1
                first = p
                v = 0
                while p < n:
                    c = buf[p]
                    if c < 48 or c > 57:
                        break
                    v = v * 10 + (c - 48)
                    p += 1
                if p == first or (p < n and c != 32 and c != 9 and c != 10 and c != 13):
                    return k, line, NON_NUMERIC, 2, at, 0, 0, ordered
                if p - first >= 18:
                    return k, line, TOO_LARGE, 2, at, 0, 0, ordered
                val = -v if neg else v
                while p < n and (buf[p] == 32 or buf[p] == 9):
                    p += 1
        if p < n and buf[p] == 13:
            p += 1
        if p < n and buf[p] != 10:
            extra = want
            while p < n and buf[p] != 10:  # count the surplus fields for the message
                c = buf[p]
                if c != 32 and c != 9 and c != 13 and (buf[p - 1] == 32 or buf[p - 1] == 9):
                    extra += 1
                p += 1
            return k, line, RAGGED, extra, p, 0, 0, ordered
        if row < 1 or row > n_rows or col < 1 or col > n_cols:
            return k, line, OUT_OF_RANGE, 0, p, row, col, ordered
        if kind == INTEGER:
            if val > _INT32_MAX or val < -_INT32_MAX - 1:
                return k, line, TOO_LARGE, 2, at, 0, 0, ordered
            ivalues[k] = val
        if cell_is_column:
            cell, gene = col - 1, row - 1
        else:
            cell, gene = row - 1, col - 1
        if cell < last_cell:
            ordered = False
        last_cell = cell
        cells[k] = cell
        genes[k] = gene
        k += 1
        p += 1
        line += 1
    return k, line, OK, 0, 0, 0, 0, ordered


@numba.njit(cache=True, nogil=True)
def run_lengths(cells: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Entries per cell ``lo..hi`` of non-decreasing ``cells``."""
    out = np.zeros(hi - lo + 1, dtype=np.int64)
    for c in cells:
        out[c - lo] += 1
    return out
