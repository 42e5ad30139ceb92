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
from typing import Any, Literal

import numpy as np

__all__ = [
    "Aggregate",
    "CategoryColor",
    "AtlasDataset",
    "AtlasExpression",
    "AtlasPooled",
    "DatasetHit",
    "DatasetMetadata",
    "DatasetSearch",
    "DownloadLinks",
    "CellStats",
    "CellColor",
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
    "ValueColor",
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
    input_kind: str | None = None
    """What the input held: counts, log1p or scaled (None: unknown, an old version)."""
    default_layer: str = "input"
    layers: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """Every layer: ``name``, ``kind`` and ``unit`` (e.g. ``normalized``, log1p, ``log1p CP10k``)."""
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
    unit: str = ""
    """The unit of the layer's values (``log1p CP10k``, ``counts``, ``scaled (as given)``…)."""
    notes: dict[str, str] = dataclasses.field(default_factory=dict)
    """``{stat or field: why it is null}`` for what the layer's kind does not define."""


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
    unit: str = ""
    """The unit of the layer's values (``log1p CP10k``, ``counts``, ``scaled (as given)``…)."""
    notes: dict[str, str] = dataclasses.field(default_factory=dict)
    """``{stat or field: why it is null}`` for what the layer's kind does not define."""


@dataclasses.dataclass(**_RESULT)
class Markers(Result):
    """The top marker genes of one group, best first (one record per gene); ``group`` None:
    of every group, each record naming its ``group``."""

    dataset: str
    version: str
    groupby: str
    group: str | None
    layer: str
    markers: list[dict[str, Any]]
    unit: str = ""
    """The unit of the layer's values (``log1p CP10k``, ``counts``, ``scaled (as given)``…)."""
    notes: dict[str, str] = dataclasses.field(default_factory=dict)
    """``{stat or field: why it is null}`` for what the layer's kind does not define."""


@dataclasses.dataclass(**_RESULT)
class GeneStats(Result):
    """Per-gene statistics over all cells: ``stats[name]`` has one value per gene."""

    dataset: str
    version: str
    layer: str
    genes: list[str]
    stats: dict[str, np.ndarray]
    unit: str = ""


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
    unit: str = ""
    cell_ids: list[str] | None = None
    """The kept cells' ids (obs index), in the order of ``values`` (None: not asked for)."""


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
class CategoryColor(Result):
    """Cells coloured by a categorical obs column: one code per cell (-1: no category)."""

    name: str
    kind: Literal["category"]
    categories: list[str]
    codes: np.ndarray


@dataclasses.dataclass(**_RESULT)
class ValueColor(Result):
    """Cells coloured by a number: a numeric obs column or a gene's expression (float32)."""

    name: str
    kind: Literal["numeric", "gene"]
    values: np.ndarray


CellColor = CategoryColor | ValueColor
"""What an embedding's cells are coloured by."""


@dataclasses.dataclass(**_RESULT)
class Embedding(Result):
    """One embedding's coordinates (a float32 column per dimension) and the colour asked for
    (None if none)."""

    dataset: str
    version: str
    key: str
    n_cells: int
    coordinates: list[np.ndarray]
    color: CellColor | None


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


# -- the data lake: metadata and search, cross-dataset queries, downloads ----------------------


@dataclasses.dataclass(**_RESULT)
class DatasetMetadata(Result):
    """What is known about a dataset (title, organism, tissue, tags, ``extra``, ...): only the
    fields that are set (see :data:`widecube.catalog.FIELDS`)."""

    dataset: str
    metadata: dict[str, Any]


@dataclasses.dataclass(**_RESULT)
class DatasetHit(Result):
    """A dataset a search found: its live version (as ``GET /datasets``) and its metadata."""

    name: str
    version: str
    n_cells: int | None
    n_genes: int | None
    groupbys: list[str]
    created: datetime
    metadata: dict[str, Any]


@dataclasses.dataclass(**_RESULT)
class DatasetSearch(Result):
    """Datasets matching a full-text query and facet filters, by name, and per facet
    ``{value: datasets}`` over what every other filter keeps (most first)."""

    query: str
    filters: dict[str, list[str]]
    total: int
    datasets: list[DatasetHit]
    facets: dict[str, dict[str, int]]


@dataclasses.dataclass(**_RESULT)
class AtlasDataset(Result):
    """One dataset's part of a cross-dataset gene query: per group of ``by``, ``n_cells``, and
    per (group, asked gene) each statistic; ``genes`` names the dataset's gene each asked one
    matched (None: absent, listed in ``absent``, its statistics null)."""

    dataset: str
    version: str
    groups: list[str]
    genes: list[str | None]
    absent: list[str]
    n_cells: np.ndarray
    values: dict[str, np.ndarray]


@dataclasses.dataclass(**_RESULT)
class AtlasPooled(Result):
    """Every group (by name) over all datasets, from the summed moments: ``n_cells`` per
    (group, gene) counts the cells of the datasets that have the gene; ``datasets`` how many
    datasets have the group."""

    groups: list[str]
    datasets: list[int]
    n_cells: np.ndarray
    values: dict[str, np.ndarray]


@dataclasses.dataclass(**_RESULT)
class AtlasExpression(Result):
    """``POST /atlas/expression``: asked genes × groups of ``by`` in every dataset the filter
    selects (and the caller may read), and pooled across them; ``skipped`` says why a selected
    dataset could not answer (no such grouping, layer or view)."""

    genes: list[str]
    by: str
    layer: str
    stats: list[str]
    filter: dict[str, list[str]]
    datasets: list[AtlasDataset]
    pooled: AtlasPooled
    skipped: list[dict[str, str]]


@dataclasses.dataclass(**_RESULT)
class DownloadLinks(Result):
    """Time-limited links to every file of a snapshot (``files``: ``path``, ``size``,
    ``sha256``, ``url``), valid until ``expires``. ``token`` signs the API's own download route
    (a local store; the API turns it into URLs); on an object store each ``url`` is presigned."""

    dataset: str
    version: str
    expires: datetime
    files: list[dict[str, Any]]
    token: str | None


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
