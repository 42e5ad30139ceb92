"""Sets of cells a query covers: one canonical, hashable :class:`Selection` and its mask.

A selection is the AND of its parts, each optional:

- ``filter``: ``{obs column: [categories]}`` (a categorical column: one of them, ``"(missing)"``
  for cells without a value) or ``{obs column: {"min": a, "max": b}}`` (a numeric column:
  ``a <= value <= b``, either bound optional; NaN never passes); AND across columns;
- ``lasso``: the cells of embedding ``key`` inside a polygon (even-odd rule, in the embedding's
  own coordinates; a point on an edge may fall either side, as in any raster lasso);
- ``group``: one group of a grouping (``("cell_type,donor", "B cell_D1")``), as the views name it;
- ``indices``: obs positions, 0-based (numpy's and AnnData's); ``cells``: obs names (cell ids).

Equal selections have equal keys (sorted, de-duplicated), so masks are remembered per selection
(:meth:`widecube.query.SnapshotIndex.selection`).

    >>> s = selection({"donor": ["D2", "D1"], "n_genes_by_counts": {"min": 500}})
    >>> s.describe()["filter"]
    {'donor': ['D1', 'D2'], 'n_genes_by_counts': {'min': 500.0, 'max': None}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidQuery

__all__ = ["Lasso", "Range", "Selection", "in_polygon", "range_mask", "selection", "selection_of"]


@dataclass(frozen=True, slots=True)
class Range:
    """``lo <= value <= hi`` on a numeric obs column (None: unbounded)."""

    lo: float | None
    hi: float | None

    def describe(self) -> dict[str, float | None]:
        return {"min": self.lo, "max": self.hi}


@dataclass(frozen=True, slots=True)
class Lasso:
    """The cells of embedding ``embedding`` (its first two dimensions) inside ``polygon``."""

    embedding: str
    polygon: tuple[tuple[float, float], ...]

    def describe(self) -> dict[str, Any]:
        return {"embedding": self.embedding, "polygon": [list(p) for p in self.polygon]}


FilterSpec = tuple[tuple[str, "tuple[str, ...] | Range"], ...]


@dataclass(frozen=True, slots=True)
class Selection:
    """A canonical set of cells (see the module doc); the empty selection keeps every cell."""

    filter: FilterSpec = ()
    lasso: Lasso | None = None
    group: tuple[str, str] | None = None
    indices: tuple[int, ...] | None = None
    cells: tuple[str, ...] | None = None

    def __bool__(self) -> bool:
        return bool(self.filter) or any(
            part is not None for part in (self.lasso, self.group, self.indices, self.cells)
        )

    @property
    def categories(self) -> dict[str, tuple[str, ...]]:
        """The categorical part of the filter."""
        return {c: v for c, v in self.filter if not isinstance(v, Range)}

    @property
    def ranges(self) -> dict[str, Range]:
        """The numeric part of the filter."""
        return {c: v for c, v in self.filter if isinstance(v, Range)}

    def filter_json(self) -> dict[str, Any]:
        """The filter as the API echoes it: lists of categories, ``{"min", "max"}`` ranges."""
        return {c: v.describe() if isinstance(v, Range) else list(v) for c, v in self.filter}

    def describe(self) -> dict[str, Any]:
        """Every part that is set, as JSON (indices and cells as their counts)."""
        out: dict[str, Any] = {}
        if self.filter:
            out["filter"] = self.filter_json()
        if self.lasso is not None:
            out["lasso"] = self.lasso.describe()
        if self.group is not None:
            out["group"] = {"groupby": self.group[0], "group": self.group[1]}
        if self.indices is not None:
            out["indices"] = len(self.indices)
        if self.cells is not None:
            out["cells"] = len(self.cells)
        return out


def _range(column: str, bounds: Mapping[str, Any]) -> Range:
    unknown = set(bounds) - {"min", "max"}
    if unknown:
        raise InvalidQuery(f"filter on {column!r}: a range has only 'min' and 'max', not {sorted(unknown)}")
    lo, hi = (None if bounds.get(k) is None else float(bounds[k]) for k in ("min", "max"))
    if (lo is not None and np.isnan(lo)) or (hi is not None and np.isnan(hi)):
        raise InvalidQuery(f"filter on {column!r}: a range bound cannot be NaN")
    if lo is not None and hi is not None and lo > hi:
        raise InvalidQuery(f"filter on {column!r}: min {lo:g} is above max {hi:g}")
    return Range(lo, hi)


def canonical(filter: Mapping[str, Any] | None) -> FilterSpec:
    """The filter as sorted, de-duplicated tuples: equal filters have equal keys."""
    out: list[tuple[str, tuple[str, ...] | Range]] = []
    for column, value in sorted((filter or {}).items(), key=lambda kv: str(kv[0])):
        if isinstance(value, Mapping):
            out.append((str(column), _range(str(column), value)))
        elif isinstance(value, str):
            raise InvalidQuery(f"filter on {column!r}: give a list of categories, not one string")
        else:
            out.append((str(column), tuple(sorted(set(map(str, value))))))
    return tuple(out)


def selection(
    filter: Mapping[str, Any] | None = None,
    *,
    lasso: Mapping[str, Any] | Lasso | None = None,
    group: Mapping[str, str] | tuple[str, str] | None = None,
    indices: Iterable[int] | None = None,
    cells: Iterable[str] | None = None,
) -> Selection:
    """A canonical :class:`Selection` from the API's JSON parts (see the module doc)."""
    if isinstance(lasso, Mapping):
        points = tuple((float(x), float(y)) for x, y in lasso["polygon"])
        if len(points) < 3:
            raise InvalidQuery(f"lasso on {lasso['embedding']!r}: a polygon needs at least 3 points")
        if not np.isfinite(np.asarray(points)).all():
            raise InvalidQuery(f"lasso on {lasso['embedding']!r}: polygon points must be finite numbers")
        lasso = Lasso(str(lasso["embedding"]), points)
    if isinstance(group, Mapping):
        group = (str(group["groupby"]), str(group["group"]))
    return Selection(
        filter=canonical(filter),
        lasso=lasso,
        group=None if group is None else (str(group[0]), str(group[1])),
        indices=None if indices is None else tuple(sorted({int(i) for i in indices})),
        cells=None if cells is None else tuple(sorted(set(map(str, cells)))),
    )


def range_mask(values: np.ndarray, bounds: Range) -> np.ndarray:
    """Cells whose value lies in ``bounds`` (both ends included; NaN never does)."""
    keep: np.ndarray = ~np.isnan(values)
    if bounds.lo is not None:
        keep &= values >= bounds.lo
    if bounds.hi is not None:
        keep &= values <= bounds.hi
    return keep


def in_polygon(x: np.ndarray, y: np.ndarray, polygon: Sequence[tuple[float, float]]) -> np.ndarray:
    """Points inside ``polygon`` by the even-odd rule (a ray to +x crosses an odd number of
    edges), in float64, one vectorised pass per edge; only points in its bounding box are tested."""
    px = np.asarray([p[0] for p in polygon], dtype=np.float64)
    py = np.asarray([p[1] for p in polygon], dtype=np.float64)
    inside = np.zeros(x.shape[0], dtype=bool)
    box = np.flatnonzero((x >= px.min()) & (x <= px.max()) & (y >= py.min()) & (y <= py.max()))
    bx, by = x[box].astype(np.float64), y[box].astype(np.float64)
    odd = np.zeros(box.shape[0], dtype=bool)
    for k in range(px.shape[0]):
        x0, y0, x1, y1 = px[k - 1], py[k - 1], px[k], py[k]
        if y0 == y1:
            continue  # a horizontal edge never crosses a horizontal ray
        spans = (y0 > by) != (y1 > by)
        cross = x0 + (by - y0) * (x1 - x0) / (y1 - y0)
        odd ^= spans & (bx < cross)
    inside[box] = odd
    return np.asarray(inside)


def selection_of(parts: Mapping[str, Any] | None) -> Selection:
    """:func:`selection` from one JSON object with any of its parts (``filter``, ``lasso``,
    ``group``, ``indices``, ``cells``); None or ``{}`` keeps every cell."""
    parts = dict(parts or {})
    unknown = set(parts) - {"filter", "lasso", "group", "indices", "cells"}
    if unknown:
        raise InvalidQuery(
            "a cell set has the parts filter, lasso, group, indices and cells, "
            f"not {', '.join(sorted(unknown))}"
        )
    return selection(
        parts.get("filter"),
        lasso=parts.get("lasso"),
        group=parts.get("group"),
        indices=parts.get("indices"),
        cells=parts.get("cells"),
    )
