"""Walk a compressed (CSR-like) matrix in slabs of bounded size, from any sliceable store.

Both 10x HDF5 files (h5py datasets) and the binary CSR that text readers spill to the
work folder (:mod:`._spill`) keep ``indptr``, ``indices`` and ``data`` as flat arrays;
:func:`iter_row_slabs` reads them a slab of rows at a time, at most about ``block_nnz``
stored values each, so memory never depends on the matrix size.

    >>> for block in iter_row_slabs(g["indptr"], g["indices"], g["data"],
    ...                             n_rows=n, n_cols=m, block_nnz=8_000_000): ...  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from ..errors import UnreadableInput
from ._base import Block

__all__ = ["Sliceable", "iter_row_slabs", "tidy_csr"]

_INDPTR_WINDOW = 1 << 16


class Sliceable(Protocol):
    """A 1-D array-like read by slices (an h5py dataset, a numpy array, a file-backed array)."""

    def __getitem__(self, key: slice) -> Any: ...


def tidy_csr(m: sp.csr_matrix) -> sp.csr_matrix:
    """Sort column indices and sum duplicate entries in place (cheap when already canonical)."""
    if not m.has_canonical_format:
        m.sum_duplicates()
    return m


def iter_row_slabs(
    indptr: Sliceable,
    indices: Sliceable,
    data: Sliceable,
    *,
    n_rows: int,
    n_cols: int,
    block_nnz: int,
    where: object,
) -> Iterator[Block]:
    """Yield full-width row blocks of at most ``block_nnz`` stored values (at least one row).

    Each slab is checked before it is yielded: pointers must not decrease and column
    indices must lie in ``0..n_cols-1``, otherwise a corrupt file would send the compute
    kernels out of bounds. The error names ``where`` and the row at fault.
    """
    window_start, window = 0, np.zeros(0, dtype=np.int64)
    pos = 0
    while pos < n_rows:
        if pos + 1 >= window_start + len(window):
            window_start = pos
            window = np.asarray(indptr[pos : min(n_rows, pos + _INDPTR_WINDOW) + 1], dtype=np.int64)
        local = window[pos - window_start :]
        k = int(np.searchsorted(local, local[0] + block_nnz, side="right")) - 1
        k = max(1, min(k, len(local) - 1))
        start, stop = int(local[0]), int(local[k])
        ptr = local[: k + 1] - start
        cols = np.asarray(indices[start:stop])
        vals = np.asarray(data[start:stop])
        if len(cols) != stop - start or len(vals) != stop - start:
            raise UnreadableInput(f"{where}: corrupt or truncated matrix: rows {pos}..{pos + k - 1} "
                                  f"point past the stored values")  # fmt: skip
        if (np.diff(ptr) < 0).any():
            row = pos + int(np.argmax(np.diff(ptr) < 0))
            raise UnreadableInput(f"{where}: corrupt matrix: row pointers decrease at row {row}")
        if len(cols) and (int(cols.min()) < 0 or int(cols.max()) >= n_cols):
            bad = int(np.flatnonzero((cols < 0) | (cols >= n_cols))[0])
            row = pos + int(np.searchsorted(ptr, bad, side="right")) - 1
            raise UnreadableInput(f"{where}: corrupt matrix: column index {int(cols[bad])} at row "
                                  f"{row} is outside 0..{n_cols - 1}")  # fmt: skip
        if cols.dtype != np.int32 and n_cols < 2**31:
            cols = cols.astype(np.int32)  # 10x writes int64: half the bytes downstream, no scipy scan
        m = sp.csr_matrix((vals, cols, ptr), shape=(k, n_cols))
        yield Block(pos, 0, tidy_csr(m))
        pos += k
