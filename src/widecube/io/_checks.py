"""Validation shared by the readers: every message names the file and the place at fault.

Places are 1-based, as a user counts them: ``row``/``column`` of the matrix (cell 1 is
row 1) as a spreadsheet shows them, ``line``/``field`` of a text file as an editor does.
Positions *inside* a stored array keep their 0-based index in brackets (``X/indices[57]``),
as h5py or numpy address them, so the bad value can be found in the file.

Compressed (CSR/CSC) matrices come from outside and feed numba kernels that index arrays
by the stored indices, so they are checked here before any block is built: the layout once
at open (:func:`check_compressed_layout`), then every window of pointers and every slab of
indices as it streams (:func:`check_pointers`, :func:`check_indices`; vectorised, a few
passes over arrays already in cache). Arrays that HDF5 declares but never wrote read as
fill values, so sizes are checked against the storage the file allocates before they are
trusted (:func:`check_allocated`, :func:`check_dense_storage`).

    >>> check_unique(["c1", "c2", "c1"], where="m.csv", what="cell id",
    ...              place=lambda i: f"line {i + 2}")          # doctest: +SKIP
    UnreadableInput: m.csv: duplicate cell id 'c1' at line 2 and line 4
    >>> check_indices("bad.h5ad", "X", np.array([0, 2000]), np.array([0, 1, 2]), first_major=16,
    ...               n_minor=2000, major="row", offset=40)     # doctest: +SKIP
    UnreadableInput: bad.h5ad: X/indices[41] = 2000: column 2001 at row 18 is outside the matrix
    (columns 1–2000)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import InvalidValue, UnreadableInput

__all__ = [
    "MAX_NAME_CHARS",
    "check_allocated",
    "check_column_names",
    "check_compressed_layout",
    "check_dense_storage",
    "check_index_dtype",
    "check_indices",
    "check_pointers",
    "check_shape",
    "check_unique",
    "check_value_dtype",
    "logger",
    "nonfinite_error",
    "unique_gene_names",
]

MAX_NAME_CHARS = 100
"""The longest obs/var column or obsm name: each becomes a file name in the snapshot
(``views/<view>/<groupby>.<layer>.zarr``, a combination ``a,b`` joins two), and a file
system allows 255 bytes a name."""
INDEX_FREE_BYTES = 256 << 20
"""An index array (``indptr``) up to this size is read whatever its file holds."""
DENSE_FREE_BYTES = 4 << 30
"""A dense matrix up to this logical size streams whatever its file holds (cheap enough)."""
DENSE_MAX_RATIO = 1000
"""Above :data:`DENSE_FREE_BYTES`, the most logical bytes per stored byte a dense matrix may
declare (see :func:`check_dense_storage`)."""

logger = logging.getLogger("widecube.io")
"""Warnings about accepted-but-odd input (ignored metadata rows, renamed genes) go here."""


def check_shape(where: object, n_cells: int, n_genes: int) -> None:
    """Refuse a matrix with no cells or no genes."""
    if n_cells <= 0 or n_genes <= 0:
        raise UnreadableInput(f"{where}: empty matrix ({n_cells} cells × {n_genes} genes)")


def check_unique(
    names: Sequence[str] | pd.Index | np.ndarray,
    *,
    where: object,
    what: str,
    place: Callable[[int], str] = lambda i: f"position {i + 1}",
) -> None:
    """Refuse duplicate (or empty) ids; the message names the first duplicate and both places."""
    index = pd.Index(names)
    if len(index) and (index == "").any():
        i = int(np.flatnonzero(index == "")[0])
        raise UnreadableInput(f"{where}: empty {what} at {place(i)}")
    if index.is_unique:
        return
    dup = np.flatnonzero(index.duplicated(keep=False))
    first = index[dup[0]]
    second = next(int(j) for j in dup[1:] if index[j] == first)
    raise UnreadableInput(f"{where}: duplicate {what} {first!r} at {place(int(dup[0]))} and {place(second)}")


def unique_gene_names(
    names: pd.Index, ids: pd.Index | None, *, where: object, place: Callable[[int], str]
) -> pd.Index:
    """Gene symbols as the var index: unique as they are, or made unique when ids are.

    10x and Loom files name genes by symbol, and a few symbols legitimately occur twice
    (distinct Ensembl ids). Such files are accepted with ``SYMBOL-1``-style names, as
    anndata's ``var_names_make_unique`` does, and a warning; duplicates without unique ids
    are refused like in any other format.
    """
    if names.is_unique and not (names == "").any():
        return names
    if ids is None or not ids.is_unique:
        check_unique(names, where=where, what="gene name", place=place)
    filled = pd.Index(np.where(names == "", ids if ids is not None else names, names))
    import anndata  # on first use: the facades' import stays light for the CLI

    unique = anndata.utils.make_index_unique(filled.astype(str), join="-")
    renamed = int((unique != filled).sum())
    logger.warning(
        "%s: %d duplicate gene names made unique (e.g. %r); ids stay in var",
        where,
        renamed,
        unique[int(np.argmax(unique != filled))],
    )
    return unique


def check_column_names(names: Sequence[object], *, where: object, what: str) -> None:
    """Refuse column names that cannot become file names in a snapshot: longer than
    :data:`MAX_NAME_CHARS`, empty, ``.`` or ``..``, or holding ``/`` or control characters."""
    for name in names:
        text = str(name)
        shown = text if len(text) <= 40 else f"{text[:40]}…"
        if len(text) > MAX_NAME_CHARS or len(text.encode("utf-8", "surrogatepass")) > 2 * MAX_NAME_CHARS:
            raise UnreadableInput(
                f"{where}: {what} name {shown!r} has {len(text):,} characters, more "
                f"than the {MAX_NAME_CHARS} allowed (names become file names); "
                "rename it"
            )
        if text in ("", ".", "..") or "/" in text or any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise UnreadableInput(
                f"{where}: {what} name {shown!r} is empty, '.' or '..', or holds '/' "
                "or a control character (names become file names); rename it"
            )


def check_value_dtype(where: object, name: str, dtype: np.dtype) -> None:
    """Refuse matrix values that are not real numbers (complex, strings, objects)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise UnreadableInput(
            f"{where}: {name} holds complex numbers ({dtype}); only real values "
            "(integers or floats) can be ingested"
        )
    if dtype.kind not in "iufb":
        raise UnreadableInput(f"{where}: {name} holds {dtype}, not numbers")


def check_index_dtype(where: object, name: str, dtype: np.dtype) -> None:
    """Refuse index or pointer arrays that are not integers."""
    if np.dtype(dtype).kind not in "iu":
        raise UnreadableInput(f"{where}: {name} holds {np.dtype(dtype)}, not integer indices")


def check_compressed_layout(
    where: object,
    name: str,
    *,
    major: str,
    n_major: int,
    n_ptr: int,
    first: int,
    last: int,
    n_indices: int,
    n_data: int,
) -> None:
    """The sizes of a CSR (``major="row"``) or CSC (``"column"``) triple agree with its shape.

    ``n_ptr`` is the length of ``indptr``, ``first``/``last`` its end values (read alone at
    open, without reading the arrays).
    """
    if n_ptr != n_major + 1:
        raise UnreadableInput(
            f"{where}: {name}/indptr has {n_ptr} entries where {n_major} {major}s "
            f"need {n_major + 1}: truncated or corrupt"
        )
    if first != 0:
        raise UnreadableInput(f"{where}: {name}/indptr starts at {first}, not 0: corrupt")
    if not last == n_indices == n_data:
        raise UnreadableInput(
            f"{where}: {name}/indptr ends at {last} but {name}/indices holds "
            f"{n_indices} and {name}/data {n_data} values: truncated or "
            "corrupt"
        )


def check_pointers(where: object, name: str, ptr: np.ndarray, *, first: int, nnz: int, major: str) -> None:
    """A window ``indptr[first : first + len(ptr)]`` is non-decreasing and within ``0..nnz``."""
    if not len(ptr):
        return
    step = np.diff(ptr)
    if len(step) and int(step.min()) < 0:
        j = int(np.argmax(step < 0)) + 1
        raise UnreadableInput(
            f"{where}: {name}/indptr[{first + j}] = {int(ptr[j])} is below "
            f"indptr[{first + j - 1}] = {int(ptr[j - 1])}: {major} {first + j} would "
            "have a negative length (indptr must not decrease)"
        )
    lo, hi = int(ptr[0]), int(ptr[-1])
    if lo < 0 or hi > nnz:
        j = 0 if lo < 0 else int(np.argmax(ptr > nnz))
        raise UnreadableInput(
            f"{where}: {name}/indptr[{first + j}] = {int(ptr[j])} is outside "
            f"0..{nnz} (the number of stored values)"
        )


def check_indices(
    where: object,
    name: str,
    indices: np.ndarray,
    ptr: np.ndarray,
    *,
    first_major: int,
    n_minor: int,
    major: str,
    offset: int,
) -> None:
    """Every stored index of a slab lies in ``0..n_minor-1``.

    ``ptr`` are the slab's pointers relative to its first value; ``first_major`` is the
    slab's first row (CSR) or column (CSC), ``offset`` the position of ``indices[0]`` in the
    stored array. The message names the stored position and value, and the 1-based row and
    column at fault.
    """
    if not len(indices):
        return
    if int(indices.min()) >= 0 and int(indices.max()) < n_minor:
        return
    k = int(np.argmax((indices < 0) | (indices >= n_minor)))
    at = first_major + int(np.searchsorted(ptr, k, side="right")) - 1
    minor = "column" if major == "row" else "row"
    value = int(indices[k])
    raise UnreadableInput(
        f"{where}: {name}/indices[{offset + k}] = {value}: {minor} {value + 1} at "
        f"{major} {at + 1} is outside the matrix ({minor}s 1–{n_minor})"
    )


def check_dense_storage(
    where: object, name: str, shape: tuple[int, ...], dtype: np.dtype, stored_bytes: int
) -> None:
    """Refuse a dense matrix that declares far more values than its file stores.

    A chunked HDF5 dataset may be declared huge and never written: its unwritten chunks
    read as fill values, so a 100 KB file can stand for 80 GB of zeros and hold a job for
    hours. Deflate cannot shrink data more than ~1,030-fold (a run of zeros) and dense count
    matrices shrink 7-fold (30 % non-zero) to ~200-fold (0.5 %), so a matrix larger than
    :data:`DENSE_FREE_BYTES` whose logical size is more than :data:`DENSE_MAX_RATIO` times
    the bytes allocated for it has chunks that were never written, and is refused.
    """
    logical = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
    if logical <= DENSE_FREE_BYTES or logical <= DENSE_MAX_RATIO * stored_bytes:
        return
    raise UnreadableInput(
        f"{where}: {name} declares {shape[0]:,} × {shape[1]:,} dense values "
        f"({logical / 2**30:.1f} GiB) but the file stores only {stored_bytes:,} bytes "
        f"of them (more than {DENSE_MAX_RATIO}-fold compression): unwritten or "
        "corrupt; store it sparse (CSR/CSC)"
    )


def check_allocated(
    where: object, name: str, n_values: int, itemsize: int, stored_bytes: int, *, free: int = INDEX_FREE_BYTES
) -> None:
    """Refuse an array that declares far more values than its file stores (chunks never
    written read as fill values), before the sizes it declares are allocated: an ``indptr``
    of 10^10 entries, unwritten, would size per-cell arrays of 80 GB each."""
    logical = n_values * itemsize
    if logical <= free or logical <= DENSE_MAX_RATIO * stored_bytes:
        return
    raise UnreadableInput(
        f"{where}: {name} declares {n_values:,} values ({logical / 2**30:.1f} GiB) but "
        f"the file stores only {stored_bytes:,} bytes of them: unwritten or "
        "corrupt"
    )


def nonfinite_error(
    where: object, value: float, *, row: int, col: int, cell: str, gene: str, extra: str = ""
) -> InvalidValue:
    """The error for a NaN or infinite value at 0-based ``row``/``col`` (named 1-based), worded
    like the pipeline's own finite check."""
    what = "NaN" if np.isnan(value) else "infinite value"
    return InvalidValue(
        f"{where}: {what} found at row {row + 1} (cell {cell!r}), column {col + 1} (gene {gene!r}){extra}"
    )
