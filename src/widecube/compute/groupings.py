"""Groupings of cells: one obs column, or a combination of columns written ``a,b``.

A grouping maps every cell to a group code; groups are the observed categories (or
observed combinations), as in ``scanpy.get.aggregate``. Cells whose value is missing go to
a group named ``(missing)`` so that every cell is counted exactly once.

An input without any categorical obs column is given one synthetic grouping, ``all`` (see
:func:`all_cells_key`), whose one group ``all cells`` holds every cell: the views that need
a grouping then give whole-dataset statistics instead of failing.

    >>> g = make_grouping(obs, "cell_type,donor")                 # doctest: +SKIP
    >>> g.names[:2], g.n_cells[:2]
    (['B cell_D1', 'B cell_D2'], array([812, 790]))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import UnknownGrouping

__all__ = [
    "ALL",
    "ALL_CELLS",
    "ALL_CELLS_GROUP",
    "MISSING",
    "Grouping",
    "all_cells",
    "all_cells_key",
    "default_groupbys",
    "make_grouping",
    "parse_groupbys",
]

MISSING = "(missing)"
ALL = "(all)"  # the internal every-cell grouping of the per-gene totals (never stored by name)
ALL_CELLS = "all"  # the synthetic grouping of an input without groupings (stored and served)
ALL_CELLS_GROUP = "all cells"  # its one group


@dataclass(frozen=True)
class Grouping:
    """Cells → groups for one groupby key (``"cell_type"`` or ``"cell_type,donor"``)."""

    key: str
    columns: tuple[str, ...]
    codes: np.ndarray  # int32 per cell, in 0..n_groups-1
    names: list[str]
    table: pd.DataFrame  # one row per group: the value of each column, plus n_cells

    @property
    def n_groups(self) -> int:
        return len(self.names)

    @property
    def n_cells(self) -> np.ndarray:
        n_cells: np.ndarray = self.table["n_cells"].to_numpy()
        return n_cells


def _as_categorical(obs: pd.DataFrame, column: str, max_categories: int) -> pd.Categorical:
    if column not in obs.columns:
        raise UnknownGrouping(
            f"groupby column {column!r} is not in obs (columns: {', '.join(map(str, obs.columns))})"
        )
    series = obs[column]
    if isinstance(series.dtype, pd.CategoricalDtype):
        cat = pd.Categorical(series)
    else:
        n_unique = series.nunique(dropna=True)
        if n_unique > max_categories or pd.api.types.is_float_dtype(series):
            raise UnknownGrouping(
                f"groupby column {column!r} is not categorical ({series.dtype}, "
                f"{n_unique} distinct values; at most {max_categories} allowed)"
            )
        cat = pd.Categorical(series.astype("string").astype(object))
    if len(cat.categories) > max_categories:
        raise UnknownGrouping(
            f"groupby column {column!r} has {len(cat.categories)} categories (at most {max_categories})"
        )
    if (cat.codes < 0).any():
        cat = cat.add_categories([MISSING]).fillna(MISSING)
    return cat


def make_grouping(obs: pd.DataFrame, key: str, *, max_categories: int = 10_000) -> Grouping:
    """Build the grouping named ``key`` (comma-separated obs columns) over ``obs``."""
    columns = tuple(c.strip() for c in key.split(","))
    if not all(columns) or len(set(columns)) != len(columns) or any("/" in c for c in columns):
        raise UnknownGrouping(f"groupby {key!r} is not a list of distinct obs columns")
    cats = [_as_categorical(obs, c, max_categories) for c in columns]
    combined = np.zeros(len(obs), dtype=np.int64)
    for cat in cats:
        combined = combined * len(cat.categories) + cat.codes.astype(np.int64)
    observed, codes = np.unique(combined, return_inverse=True)
    counts = np.bincount(codes, minlength=len(observed))
    parts: dict[str, list[str]] = {}
    rest = observed.copy()
    for column, cat in reversed(list(zip(columns, cats, strict=True))):
        n = len(cat.categories)
        parts[column] = [str(v) for v in np.asarray(cat.categories)[rest % n]]
        rest //= n
    names = ["_".join(vals) for vals in zip(*(parts[c] for c in columns), strict=True)]
    if len(set(names)) != len(names):
        raise UnknownGrouping(f"groupby {key!r}: combined group names are ambiguous")
    table = pd.DataFrame({c: pd.Categorical(parts[c]) for c in columns}, index=pd.Index(names))
    table["n_cells"] = counts.astype(np.int64)
    return Grouping(key, columns, codes.astype(np.int32), names, table)


def all_cells(n_cells: int, key: str = ALL, group: str = ALL) -> Grouping:
    """The grouping ``key`` with one group, ``group``, holding every cell: the per-gene totals
    (the defaults), or the synthetic grouping of an input without groupings
    (``all_cells(n, key, ALL_CELLS_GROUP)``)."""
    table = pd.DataFrame({"n_cells": [n_cells]}, index=pd.Index([group]))
    return Grouping(key, (), np.zeros(n_cells, dtype=np.int32), [group], table)


def all_cells_key(columns: Sequence[object]) -> str:
    """The name of the synthetic every-cell grouping: ``all``, or ``all_``, ``all__``, … when
    the obs has a (non-categorical) column of that name, so that the name never hides one."""
    taken = {str(c) for c in columns}
    key = ALL_CELLS
    while key in taken:
        key += "_"
    return key


def default_groupbys(obs: pd.DataFrame, *, max_categories: int = 10_000) -> list[str]:
    """Every categorical obs column with 1..max_categories categories."""
    return [
        str(c)
        for c in obs.columns
        if isinstance(obs[c].dtype, pd.CategoricalDtype) and 1 <= len(obs[c].cat.categories) <= max_categories
    ]


def parse_groupbys(values: Sequence[str] | None) -> list[str] | None:
    """Normalise ``--groupby`` values (``"a, b"`` → ``"a,b"``); None means the defaults."""
    if not values:
        return None
    return [",".join(c.strip() for c in v.split(",")) for v in values]
