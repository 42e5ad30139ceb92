"""Validation shared by the readers: every message names the file and the place at fault.

Matrix positions are 0-based ``row``/``column`` as in the rest of widecube (and in numpy);
places in a text file are 1-based ``line``/``field`` as an editor shows them.

    >>> check_unique(["c1", "c2", "c1"], where="m.csv", what="cell id",
    ...              place=lambda i: f"line {i + 2}")          # doctest: +SKIP
    UnreadableInput: m.csv: duplicate cell id 'c1' at line 2 and line 4
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anndata
import numpy as np
import pandas as pd

from ..errors import InvalidValue, UnreadableInput

__all__ = [
    "check_shape",
    "check_unique",
    "logger",
    "nonfinite_error",
    "unique_gene_names",
]

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
    place: Callable[[int], str] = lambda i: f"position {i}",
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
    raise UnreadableInput(
        f"{where}: duplicate {what} {first!r} at {place(int(dup[0]))} and {place(second)}"
    )


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
    unique = anndata.utils.make_index_unique(filled.astype(str), join="-")
    renamed = int((unique != filled).sum())
    logger.warning("%s: %d duplicate gene names made unique (e.g. %r); ids stay in var",
                   where, renamed, unique[int(np.argmax(unique != filled))])  # fmt: skip
    return unique


def nonfinite_error(
    where: object, value: float, *, row: int, col: int, cell: str, gene: str, extra: str = ""
) -> InvalidValue:
    """The error for a NaN or infinite value, worded like the pipeline's own finite check."""
    what = "NaN" if np.isnan(value) else "infinite value"
    return InvalidValue(
        f"{where}: {what} found at row {row} (cell {cell!r}), column {col} (gene {gene!r}){extra}"
    )
