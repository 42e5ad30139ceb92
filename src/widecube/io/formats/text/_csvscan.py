"""A row-wise scanner for wide numeric delimited text: bytes of whole lines in, CSR out.

Why not pyarrow's CSV reader here: it converts column by column, and on a 50,000-column
row-major block every value it converts is a cache miss, while each record batch carries
50,000 column arrays. Measured on a 20,000 × 50,000 count matrix (``benchmarks/readers.py``),
it needed ~40 bytes of memory per field in flight (2-3 GB at 64 MB blocks) and ran ~4×
slower than this scan, which reads each line once, front to back, writes only the non-zero
values (so a block is CSR straight away) and releases the GIL (two halves of a chunk are
scanned on two cores). pyarrow still does what it is good at: the (gzip) byte stream.

The grammar is deliberately narrow: a line is an id (optionally double-quoted, ``""``
escaping a quote) followed by ``n`` numeric fields — an integer or decimal with optional
sign and exponent, or ``nan``/``inf``/``infinity`` in any case. Anything else stops the scan
with a code and the (row, column, byte offset) at fault, which the reader turns into a
message naming the line and field. Plain integers are parsed inline; every other number by
the parser the MTX scanner shares (:func:`._numbers.parse_real`), in float64, and stored as
float32 (integers below 2^24 exactly; others within one float32 ulp).
"""

from __future__ import annotations

import numba
import numpy as np

from ._numbers import parse_real

__all__ = ["OK", "NON_NUMERIC", "NULL", "RAGGED", "BAD_QUOTE", "scan_lines"]

OK, NON_NUMERIC, NULL, RAGGED, BAD_QUOTE = 0, 1, 2, 3, 4


@numba.njit(cache=True, nogil=True, inline="always")
def _ends(buf: np.ndarray, p: int, n: int, delim: int) -> bool:
    return p >= n or buf[p] == delim or buf[p] == 10 or buf[p] == 13


@numba.njit(cache=True, nogil=True)
def scan_lines(
    buf: np.ndarray,
    n_cols: int,
    delim: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    id_bytes: np.ndarray,
    id_offsets: np.ndarray,
    row_lines: np.ndarray,
) -> tuple[int, int, int, int, int, int]:
    """Scan the complete lines in ``buf`` into CSR rows (zeros skipped) and id strings.

    ``indptr``/``id_offsets``/``row_lines`` need one slot per line plus one,
    ``indices``/``data`` one per field, ``id_bytes`` ``len(buf)``. Blank lines are skipped;
    ``row_lines[r]`` is the 0-based line of row ``r`` within ``buf``. Returns ``(rows, nnz,
    lines, code, column, byte_offset)``; on an error ``rows`` is the row at fault and
    ``lines`` its line.
    """
    n = len(buf)
    p = 0
    row = 0
    line = 0
    nnz = 0
    ib = 0
    while p < n:
        if buf[p] == 10 or (buf[p] == 13 and p + 1 < n and buf[p + 1] == 10):  # a blank line
            p += 1 if buf[p] == 10 else 2
            line += 1
            continue
        row_lines[row] = line
        if buf[p] == 34:  # a quoted id
            p += 1
            while True:
                if p >= n or buf[p] == 10:
                    return row, nnz, line, BAD_QUOTE, -1, p
                if buf[p] == 34:
                    if p + 1 < n and buf[p + 1] == 34:
                        id_bytes[ib] = 34
                        ib += 1
                        p += 2
                        continue
                    p += 1
                    break
                id_bytes[ib] = buf[p]
                ib += 1
                p += 1
        else:
            while p < n and buf[p] != delim and buf[p] != 10 and buf[p] != 13:
                id_bytes[ib] = buf[p]
                ib += 1
                p += 1
        id_offsets[row + 1] = ib
        col = 0
        while p < n and buf[p] == delim:
            if col >= n_cols:
                return row, nnz, line, RAGGED, col + 1, p
            p += 1
            start = p
            mant = 0
            while p < n and 48 <= buf[p] <= 57 and p - start < 18:
                mant = mant * 10 + (buf[p] - 48)
                p += 1
            if p > start and (p >= n or buf[p] == delim or buf[p] == 10 or buf[p] == 13):
                if mant != 0:  # the fast path: a plain non-negative integer
                    indices[nnz] = col
                    data[nnz] = mant
                    nnz += 1
            else:
                if _ends(buf, start, n, delim):
                    return row, nnz, line, NULL, col, start
                value, p, ok = parse_real(buf, start, n, delim, delim)
                if not ok:
                    return row, nnz, line, NON_NUMERIC, col, start
                if value != 0:
                    indices[nnz] = col
                    data[nnz] = value
                    nnz += 1
            col += 1
        if p < n and buf[p] == 13:
            p += 1
        if p < n and buf[p] != 10:
            return row, nnz, line, NON_NUMERIC, -1, p
        if col != n_cols:
            return row, nnz, line, RAGGED, col, p
        p += 1
        row += 1
        line += 1
        indptr[row] = nnz
    return row, nnz, line, OK, 0, 0
