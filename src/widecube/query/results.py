"""What the queries answer: frozen, slotted dataclasses, one per kind of result.

Each is also a read-only mapping of its fields (``result["version"]``, ``dict(result)``),
so that code written against the former ``dict`` answers reads them unchanged, and orjson
serialises them as JSON objects with the fields in declaration order: the API's bytes are
the same as when they were dicts. Numpy arrays stay numpy arrays (orjson writes them, NaN
as null; the Arrow tables take them as they are).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import numpy as np

__all__ = [
    "Aggregate",
    "Cell",
    "CellSelection",
    "CellStats",
    "Comparison",
    "Dendrogram",
    "DatasetDetail",
    "DatasetInfo",
    "Embedding",
    "Embeddings",
    "Expression",
    "GeneStats",
    "Markers",
    "ResolvedGenes",
    "Result",
    "Summary",
    "Verification",
    "VersionInfo",
    "Violins",
]


class Result:
    """Read-only mapping access to a dataclass's fields (see the module doc): ``r[key]``,
    ``r.get``, ``r.keys``, ``r.items``, ``key in r``, ``dict(r)``, equality with a dict.

    Not a :class:`~collections.abc.Mapping` subclass: that would bring a ``values()`` method,
    and several results have a ``values`` field.
    """

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        if key not in self._fields():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self._fields() else default

    def keys(self) -> tuple[str, ...]:
        return self._fields()

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self._fields()]

    def __contains__(self, key: object) -> bool:
        return key in self._fields()

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields())

    def __len__(self) -> int:
        return len(self._fields())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Result | Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def _fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._fields())
        return f"{type(self).__name__}({inner})"


_RESULT = {"frozen": True, "slots": True, "eq": False, "repr": False}
"""Frozen and slotted; equality and repr from :class:`Result` (a mapping equals a dict)."""


@dataclasses.dataclass(**_RESULT)
class DatasetInfo(Result):
    """A dataset with a live version (``GET /datasets``)."""

    name: str
    version: str
    n_cells: int | None
    n_genes: int | None
    groupbys: list[str]
    created: datetime


@dataclasses.dataclass(**_RESULT)
class DatasetDetail(Result):
    """One version of a dataset: sizes, categorical obs columns, groupbys, views."""

    name: str
    version: str
    created: datetime
    n_cells: int
    n_genes: int
    obs: dict[str, dict[str, list[Any]]]
    groupbys: list[str]
    views: dict[str, Any]
    numeric: dict[str, dict[str, float | None]] = dataclasses.field(default_factory=dict)
    """Numeric obs columns (range filters): ``{column: {"min", "max"}}``."""


@dataclasses.dataclass(**_RESULT)
class Summary(Result):
    """Per-group statistics: ``values[stat]`` is (n_groups, n_genes)."""

    dataset: str
    version: str
    groupby: str
    layer: str
    groups: list[str]
    genes: list[str]
    values: dict[str, np.ndarray]


@dataclasses.dataclass(**_RESULT)
class Aggregate(Result):
    """A :class:`Summary` over the cells a filter keeps: how many, and where it came from."""

    dataset: str
    version: str
    groupby: str
    layer: str
    groups: list[str]
    genes: list[str]
    values: dict[str, np.ndarray]
    filter: dict[str, Any]
    cells: int
    source: str
    """``precomputed`` (read from the views) or ``computed`` (from the gene-major view)."""


@dataclasses.dataclass(**_RESULT)
class Markers(Result):
    """The top marker genes of one group, best first (one record per gene)."""

    dataset: str
    version: str
    groupby: str
    group: str
    layer: str
    markers: list[dict[str, Any]]


@dataclasses.dataclass(**_RESULT)
class GeneStats(Result):
    """Per-gene statistics over all cells: ``stats[name]`` has one value per gene."""

    dataset: str
    version: str
    layer: str
    genes: list[str]
    stats: dict[str, np.ndarray]


@dataclasses.dataclass(**_RESULT)
class Expression(Result):
    """Per-cell values of genes (float32, obs order) of the cells a filter keeps."""

    dataset: str
    version: str
    layer: str
    genes: list[str]
    filter: dict[str, Any]
    cells: int
    values: dict[str, np.ndarray]


@dataclasses.dataclass(**_RESULT)
class CellStats(Result):
    """Per-cell library size and detected genes, in obs order."""

    dataset: str
    version: str
    n_cells: int
    total_counts: np.ndarray
    n_genes_by_counts: np.ndarray


@dataclasses.dataclass(**_RESULT)
class ResolvedGenes(Result):
    """Canonical names of typed gene names, and the unknown ones with suggestions."""

    dataset: str
    version: str
    genes: list[str]
    unknown: list[dict[str, Any]]


@dataclasses.dataclass(**_RESULT)
class Embeddings(Result):
    """The embeddings of a version and what can colour them."""

    dataset: str
    version: str
    embeddings: dict[str, dict[str, list[int]]]
    colors: dict[str, str]
    gene_colors: bool


@dataclasses.dataclass(**_RESULT)
class Embedding(Result):
    """One embedding's coordinates (a float32 column per dimension) and the colour asked for
    (a dict whose keys depend on its kind: category, numeric or gene; None if none)."""

    dataset: str
    version: str
    key: str
    n_cells: int
    coordinates: list[np.ndarray]
    color: dict[str, Any] | None


@dataclasses.dataclass(**_RESULT)
class VersionInfo(Result):
    """One version of a dataset, and whether it is the live one."""

    version: str
    status: str
    created: datetime
    n_cells: int | None
    n_genes: int | None
    reason: str | None
    current: bool


@dataclasses.dataclass(**_RESULT)
class Verification(Result):
    """A verify's report: the snapshot files and decoded cache files at fault."""

    dataset: str
    version: str
    ok: bool
    files: list[dict[str, str]]
    cache: list[dict[str, str]]


@dataclasses.dataclass(**_RESULT)
class Comparison(Result):
    """Set A against set B, gene by gene (one record per gene: :data:`widecube.query.compare.FIELDS`)."""

    dataset: str
    version: str
    layer: str
    a: dict[str, Any]
    """What set A is (its parts) and how many cells it keeps (``cells``); likewise ``b``."""
    b: dict[str, Any]
    genes_tested: int
    """Genes compared, over which ``pval_adj`` is adjusted (every gene unless genes were given)."""
    rank: str
    results: list[dict[str, Any]]


@dataclasses.dataclass(**_RESULT)
class Violins(Result):
    """Per gene and group: the histogram of the non-zero values of the kept cells and how many
    cells there are (zeros: ``n_cells - nnz``)."""

    dataset: str
    version: str
    groupby: str
    layer: str
    groups: list[str]
    genes: list[str]
    n_cells: np.ndarray
    """Kept cells per group."""
    violins: list[dict[str, Any]]
    """One per gene: ``edges`` (bins + 1, or None), ``counts`` (groups × bins), ``nnz`` (per group)."""
    filter: dict[str, Any]
    cells: int


@dataclasses.dataclass(**_RESULT)
class Dendrogram(Result):
    """The groups (those with kept cells) in hierarchical order, and the tree to draw."""

    dataset: str
    version: str
    groupby: str
    layer: str
    genes: list[str]
    groups: list[str]
    order: list[int]
    """Positions into ``groups``, leaves left to right."""
    ordered: list[str]
    linkage: list[list[float]]
    icoord: list[list[float]]
    dcoord: list[list[float]]


@dataclasses.dataclass(**_RESULT)
class CellSelection(Result):
    """The cells a selection keeps, as obs positions (0-based, ascending)."""

    dataset: str
    version: str
    n_cells: int
    cells: int
    indices: np.ndarray


@dataclasses.dataclass(**_RESULT)
class Cell(Result):
    """One cell: its obs position (0-based), its id and its obs values."""

    dataset: str
    version: str
    index: int
    id: str
    obs: dict[str, Any]
