"""Request and response models of the REST API, and the limits every request stays within.

The routes declare these models (``response_model`` and ``responses``), so the OpenAPI
document at ``/openapi.json`` types each body as it is sent: data bodies as their model,
Arrow answers as ``application/vnd.apache.arrow.stream``, and every error as
:class:`Problem` (``{"detail": "one line"}``), 422 included.

Limits: every list and string a client can send is bounded (a request over a limit is a
422 naming the field), chosen so that no real query meets them: genes per request
:data:`MAX_GENES` (5,000), names of genes, stats, layers and versions :data:`NAME_CHARS`,
obs columns, groupbys and categories :data:`COLUMN_CHARS`, and so on. Every string is also
text a database and a JSON encoder accept: no NUL, no lone surrogate (:data:`Text`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "ViolinResponse",
    "ViolinRequest",
    "Violin",
    "GroupRef",
    "DendrogramResponse",
    "DendrogramRequest",
    "ComparedGene",
    "CompareResponse",
    "CompareRequest",
    "CellsResponse",
    "CellsRequest",
    "CellSet",
    "CellResponse",
    "COLUMN_CHARS",
    "DATASET_PATTERN",
    "INPUT_KIND_HELP",
    "MAX_BODY_BYTES",
    "MAX_CATEGORIES",
    "MAX_COLUMNS",
    "MAX_GENES",
    "MAX_STATS",
    "NAME_CHARS",
    "AggregateRequest",
    "AggregateResponse",
    "CellColor",
    "CellStatsResponse",
    "DatasetDetail",
    "DatasetSummary",
    "EmbeddingList",
    "EmbeddingResponse",
    "EmbeddingShape",
    "ExpressionRequest",
    "ExpressionResponse",
    "GeneList",
    "GeneStatsRequest",
    "GeneStatsResponse",
    "InputKind",
    "LayerInfo",
    "Marker",
    "MarkersResponse",
    "Lasso",
    "NumericRange",
    "ObsColumn",
    "Problem",
    "PublishRequest",
    "RollbackRequest",
    "SummaryRequest",
    "StrictBody",
    "SummaryResponse",
    "Text",
    "UploadCreated",
    "UploadProblem",
    "VersionInfo",
]


MAX_GENES = 5_000
"""Genes in one ``/summary`` or ``/genes/stats`` request (``/aggregate``: 1,000; ``/expression``: 32)."""
MAX_STATS = 64
"""Statistics in one request (13 exist, plus the quantiles a deployment precomputes)."""
MAX_COLUMNS = 100
"""obs columns in one filter."""
MAX_CATEGORIES = 10_000
"""Categories kept per filtered column (the default ``max_categories`` of a grouping)."""
NAME_CHARS = 256
"""Characters of a gene, stat, layer, version, embedding key or job/upload field."""
COLUMN_CHARS = 1_024
"""Characters of an obs column, a groupby (columns joined by ',') or a category."""
MAX_BODY_BYTES = 2 * 1024**2
"""Bytes of a JSON request body (uploads excepted); 5,000 genes of 256 characters fit (1.3 MB)."""
DATASET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
"""A dataset name, as ingest requires it (see ``pipeline.check_name``)."""


def _text(value: str) -> str:
    """Refuse what no database column and no JSON answer can hold (PostgreSQL refuses NUL,
    UTF-8 refuses lone surrogates), so such a value is a 422, not a 500 deeper down."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


Text = AfterValidator(_text)
"""Annotate a ``str`` with it: no NUL, no lone surrogate."""

Name = Annotated[str, StringConstraints(max_length=NAME_CHARS), Text]
Facet = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=255), Text]],
    Query(
        default_factory=list, max_length=50, description="repeatable; keeps datasets with any of the values"
    ),
]
"""A facet query parameter of a dataset search (organism, tissue, assay, disease, tag)."""


def facet_filters(**given: list[str]) -> dict[str, list[str]]:
    """The facet query parameters that were given, as the facade's filters."""
    return {k: v for k, v in given.items() if v}


InputKind = Literal["counts", "log1p", "scaled"]
"""What an input holds (``views._layers``): counts, log-normalized values, scaled values."""
INPUT_KIND_HELP = (
    "what the matrix holds: counts (non-negative integers; a normalized layer is added), log1p "
    "(log-normalized, e.g. log1p CP10k), scaled (with negatives: no fraction expressing, no fold "
    "changes); default: detected from the values"
)
ColumnName = Annotated[str, StringConstraints(max_length=COLUMN_CHARS), Text]
Stats = Annotated[list[Name], Field(min_length=1, max_length=MAX_STATS)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class NumericRange(BaseModel):
    """A range filter on a numeric obs column: ``min <= value <= max`` (either bound optional)."""

    model_config = ConfigDict(extra="forbid")
    min: Finite | None = Field(default=None, examples=[500])
    max: Finite | None = Field(default=None)


Filter = Annotated[
    dict[ColumnName, Annotated[list[ColumnName], Field(max_length=MAX_CATEGORIES)] | NumericRange],
    Field(max_length=MAX_COLUMNS),
]
MAX_POLYGON = 10_000
"""Points of a lasso polygon."""
MAX_SELECTED = 1_000_000
"""Obs positions or cell ids named in one cell set (the 2 MB body limit comes first for ids)."""


class StrictBody(BaseModel):
    """A request body: unknown fields are a 422 (``additionalProperties: false``), not ignored,
    so that a misspelt field (``filters``, ``gene``) is not silently a different query."""

    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """Every error answer (4xx, 5xx): one line saying what is wrong and with what."""

    detail: str = Field(
        description="what went wrong, naming the thing at fault; values sent are "
        "echoed cut to their first 80 characters"
    )


class UploadProblem(Problem):
    """A chunk refused because it does not start where the upload stands (409)."""

    offset: int = Field(description="the byte to resume from")


class UploadCreated(BaseModel):
    """The last byte of an upload is in: the ingest job it became."""

    job: str
    upload: str
    dataset: str
    state: str
    sha256: str | None
    url: str = Field(description="the job's URL (also in Location)")


class DatasetSummary(BaseModel):
    name: str
    version: str
    n_cells: int
    n_genes: int
    groupbys: list[str]
    created: dt.datetime


class ObsColumn(BaseModel):
    categories: list[str]
    counts: list[int]


class LayerInfo(BaseModel):
    name: str = Field(description="input (the values as given) or normalized (made from counts)")
    kind: InputKind | None = Field(description="what its values are; null: unknown (an old version)")
    unit: str = Field(description="for people, on every scale: log1p CP10k, counts, scaled (as given)…")


class ObsRange(BaseModel):
    min: float | None
    max: float | None


class DatasetDetail(BaseModel):
    name: str
    version: str
    created: dt.datetime
    n_cells: int
    n_genes: int
    obs: dict[str, ObsColumn] = Field(description="categorical obs columns: categories and counts")
    groupbys: list[str]
    views: dict[str, dict[str, Any]]
    input_kind: InputKind | None = Field(
        description="what the input held: counts, log1p or scaled (detected, or --input-kind); null: "
        "unknown (a version ingested before kinds were recorded)"
    )
    default_layer: str = Field(description="the layer a query without one reads")
    layers: list[LayerInfo]
    numeric: dict[str, ObsRange] = Field(
        default_factory=dict, description="numeric obs columns (range filters): smallest and largest value"
    )


class GeneList(BaseModel):
    genes: list[str]


class VersionInfo(BaseModel):
    version: str
    status: str
    created: dt.datetime
    n_cells: int | None
    n_genes: int | None
    reason: str | None
    current: bool


class SummaryRequest(StrictBody):
    genes: list[Name] = Field(min_length=1, max_length=MAX_GENES, examples=[["CD3E", "MS4A1"]])
    groupby: ColumnName = Field(examples=["cell_type"])
    stats: Stats = Field(
        default=["mean", "frac_expressing"],
        min_length=1,
        description="any of sum, sumsq, nnz, n_cells, mean, var, frac_expressing, mean_expressing, "
        "median, q10, q25, q75, q90",
    )
    layer: Name | None = Field(
        default=None,
        description="'input' (the values as given) or 'normalized' (log1p of counts per 10k, made for "
        "count input); default: normalized when the input is counts, input otherwise",
    )
    version: Name | None = Field(default=None, description="pin a version; default: the live one")


class SummaryResponse(BaseModel):
    dataset: str
    version: str
    groupby: str
    layer: str
    groups: list[str]
    genes: list[str]
    values: dict[str, list[list[float | None]]] = Field(
        description="{stat: [[value for each gene] for each group]}; null where undefined"
    )
    unit: str = Field(
        description="the unit of the layer's values: log1p CP10k, counts, log1p (as given), "
        "scaled (as given), values as given"
    )
    notes: dict[str, str] = Field(
        default_factory=dict,
        description="{stat or field: why it is null}: what the layer's kind does not define (scaled "
        "values have no fraction expressing and no fold change)",
    )


_FILTER: Any = Field(
    default_factory=dict,
    examples=[{"donor": ["D1", "D2"], "cell_type": ["B cell"]}],
    description="{categorical obs column: [categories to keep]} or {numeric obs column: {min, max}} "
    "(bounds included, either optional): AND across columns, OR within one; "
    "'(missing)' keeps cells without a value; an empty list keeps no cell; {} keeps every cell",
)


class Lasso(StrictBody):
    """The cells of an embedding inside a polygon, in the embedding's own coordinates."""

    embedding: Name = Field(examples=["X_umap"], description="an obsm key (its first two dimensions)")
    polygon: list[tuple[Finite, Finite]] = Field(
        min_length=3, max_length=MAX_POLYGON, description="[[x, y], …], closed implicitly; even-odd rule"
    )


_LASSO: Any = Field(default=None, description="keep only the cells inside this lasso (AND with the filter)")


class AggregateRequest(StrictBody):
    genes: list[Name] = Field(min_length=1, max_length=1000, examples=[["CD3E", "MS4A1"]])
    groupby: ColumnName = Field(examples=["cell_type"], description="an obs column, or columns joined by ','")
    filter: Filter = _FILTER
    stats: Stats = Field(
        default=["mean", "frac_expressing"], description="the statistics of /summary, quantiles included"
    )
    lasso: Lasso | None = _LASSO
    layer: Name | None = Field(default=None, description="'input' or 'normalized'; default: the dataset's")
    version: Name | None = Field(default=None, description="pin a version; default: the live one")


class AggregateResponse(SummaryResponse):
    filter: dict[str, list[str] | NumericRange] = Field(description="the filter, sorted and de-duplicated")
    cells: int = Field(description="cells the filter keeps")
    source: Literal["precomputed", "computed"] = Field(
        description="precomputed: the filter keeps every group whole or drops it, so the stored "
        "views answer; computed: exactly, on the fly, from the gene-major view"
    )


class ExpressionRequest(StrictBody):
    genes: list[Name] = Field(min_length=1, max_length=32, examples=[["CD3E"]])
    filter: Filter = _FILTER
    cell_ids: bool = Field(
        default=True,
        description="answer the kept cells' ids too (JSON: the field cell_ids; Arrow: a first "
        "utf8 column, named by the schema metadata's cell_ids: cell_id unless a gene has that name)",
    )
    lasso: Lasso | None = _LASSO
    layer: Name | None = Field(default=None, description="'input' or 'normalized'; default: the dataset's")
    version: Name | None = Field(default=None, description="pin a version; default: the live one")


class ExpressionResponse(BaseModel):
    dataset: str
    version: str
    layer: str
    genes: list[str]
    filter: dict[str, list[str] | NumericRange]
    cells: int = Field(description="cells the filter keeps (every cell without a filter)")
    values: dict[str, list[float]] = Field(description="{gene: [value per kept cell, in obs order]}")
    cell_ids: list[str] | None = Field(
        default=None, description="the kept cells' ids (obs index), in the order of values"
    )
    unit: str = Field(
        description="the unit of the layer's values: log1p CP10k, counts, log1p (as given), "
        "scaled (as given), values as given"
    )


class Marker(BaseModel):
    group: str | None = Field(default=None, description="the group (when every group was asked for)")
    gene: str
    logfoldchange: float | None
    pct_in: float | None
    pct_out: float | None
    t: float | None
    pval: float | None
    pval_adj: float | None


class MarkersResponse(BaseModel):
    dataset: str
    version: str
    groupby: str
    group: str | None = Field(description="the group asked for; null: every group")
    layer: str
    markers: list[Marker]
    unit: str = Field(
        description="the unit of the layer's values: log1p CP10k, counts, log1p (as given), "
        "scaled (as given), values as given"
    )
    notes: dict[str, str] = Field(
        default_factory=dict,
        description="{stat or field: why it is null}: what the layer's kind does not define (scaled "
        "values have no fraction expressing and no fold change)",
    )


class GeneStatsRequest(StrictBody):
    genes: list[Name] = Field(min_length=1, max_length=MAX_GENES, examples=[["CD3E", "MS4A1"]])
    layer: Name | None = Field(default=None, description="'input' or 'normalized'; default: the dataset's")
    version: Name | None = Field(default=None, description="pin a version; default: the live one")


class GeneStatsResponse(BaseModel):
    dataset: str
    version: str
    layer: str
    genes: list[str]
    stats: dict[str, list[float | None]]
    unit: str = Field(
        description="the unit of the layer's values: log1p CP10k, counts, log1p (as given), "
        "scaled (as given), values as given"
    )


class CellStatsResponse(BaseModel):
    dataset: str
    version: str
    n_cells: int
    total_counts: list[float]
    n_genes_by_counts: list[int]


class EmbeddingShape(BaseModel):
    shape: list[int] = Field(description="[n_cells, dimensions]")


class EmbeddingList(BaseModel):
    dataset: str
    version: str
    embeddings: dict[str, EmbeddingShape] = Field(description="obsm key → shape")
    colors: dict[str, Literal["category", "numeric"]] = Field(
        description="obs columns that can colour cells, and how"
    )
    gene_colors: bool = Field(description="whether genes can colour cells (needs the gene-major view)")


class CellColor(BaseModel):
    name: str
    kind: Literal["category", "numeric", "gene"]
    categories: list[str] | None = Field(default=None, description="for kind=category")
    codes: list[int] | None = Field(default=None, description="per cell, index into categories; -1: missing")
    values: list[float | None] | None = Field(default=None, description="per cell, for numeric and gene")


class EmbeddingResponse(BaseModel):
    dataset: str
    version: str
    key: str
    n_cells: int
    coordinates: list[list[float]] = Field(description="one list per dimension, each with a value per cell")
    color: CellColor | None


class PublishRequest(StrictBody):
    version: Name = Field(description="a verified or retired version of the dataset")


class RollbackRequest(StrictBody):
    to: Name | None = Field(default=None, description="version to make live; default: the previous one")


class GroupRef(StrictBody):
    """One group of a grouping, as the views name it (``B cell_D1`` for ``cell_type,donor``)."""

    groupby: ColumnName = Field(examples=["cell_type"])
    group: ColumnName = Field(examples=["B cell"])


class CellSet(StrictBody):
    """A set of cells: the AND of the parts given (none: every cell)."""

    filter: Filter = _FILTER
    lasso: Lasso | None = _LASSO
    group: GroupRef | None = Field(default=None, description="one group of a grouping")
    indices: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None, max_length=MAX_SELECTED, description="obs positions, 0-based"
    )
    cells: list[ColumnName] | None = Field(
        default=None, max_length=MAX_SELECTED, description="cell ids (obs names)"
    )


class CompareRequest(StrictBody):
    a: CellSet = Field(examples=[{"group": {"groupby": "cell_type", "group": "B cell"}}])
    b: CellSet | None = Field(default=None, description="default: the rest (every cell of `within` not in a)")
    within: CellSet | None = Field(default=None, description="both sets are cut to these cells; default: all")
    genes: list[Name] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_GENES,
        description="compare these genes (in this order, adjusted over them); default: every gene, top ones",
    )
    top: int = Field(default=100, ge=1, le=1000, description="genes returned when comparing every gene")
    rank: Literal["up", "down", "abs"] = Field(
        default="up", description="up: largest t first (higher in a); down: smallest first; abs: largest |t|"
    )
    layer: Name | None = Field(default=None, description="'raw' or 'normalized'; default: the dataset's")
    version: Name | None = Field(default=None, description="pin a version; default: the live one")


class ComparedGene(BaseModel):
    gene: str
    t: float | None = Field(description="Welch's t of a against b")
    pval: float | None = Field(description="two-sided")
    pval_adj: float | None = Field(description="Benjamini-Hochberg over the genes compared")
    logfoldchange: float | None = Field(
        description="log2 of the ratio of means (expm1 first on log1p values)"
    )
    mean_a: float | None
    mean_b: float | None
    pct_a: float | None = Field(description="fraction of a's cells expressing")
    pct_b: float | None


class CompareResponse(BaseModel):
    dataset: str
    version: str
    layer: str
    a: dict[str, Any] = Field(description="set a's parts, and the cells it keeps (`cells`)")
    b: dict[str, Any] = Field(description="set b's parts (`rest: true` for the rest), and `cells`")
    genes_tested: int
    rank: str = Field(description="the ranking used, or 'given' for the genes asked for")
    results: list[ComparedGene]


class ViolinRequest(StrictBody):
    genes: list[Name] = Field(min_length=1, max_length=32, examples=[["CD3E"]])
    groupby: ColumnName = Field(examples=["cell_type"], description="an obs column, or columns joined by ','")
    filter: Filter = _FILTER
    lasso: Lasso | None = _LASSO
    bins: int = Field(default=40, ge=2, le=200, description="histogram bins per gene (shared by the groups)")
    layer: Name | None = Field(default=None, description="'raw' or 'normalized'; default: the dataset's")
    version: Name | None = Field(default=None, description="pin a version; default: the live one")


class Violin(BaseModel):
    gene: str
    edges: list[float] | None = Field(
        description="bins + 1 edges (numpy.histogram_bin_edges); null: no value"
    )
    counts: list[list[int]] = Field(description="[group][bin]: non-zero values per bin")
    nnz: list[int] = Field(description="non-zero values per group (zeros: n_cells - nnz)")


class ViolinResponse(BaseModel):
    dataset: str
    version: str
    groupby: str
    layer: str
    groups: list[str]
    genes: list[str]
    n_cells: list[int] = Field(description="kept cells per group")
    violins: list[Violin]
    filter: dict[str, list[str] | NumericRange]
    cells: int


class DendrogramRequest(StrictBody):
    genes: list[Name] = Field(min_length=2, max_length=1000, examples=[["CD3E", "MS4A1", "LYZ"]])
    groupby: ColumnName = Field(examples=["cell_type"])
    filter: Filter = _FILTER
    lasso: Lasso | None = _LASSO
    layer: Name | None = Field(default=None, description="'raw' or 'normalized'; default: the dataset's")
    version: Name | None = Field(default=None, description="pin a version; default: the live one")


class DendrogramResponse(BaseModel):
    dataset: str
    version: str
    groupby: str
    layer: str
    genes: list[str]
    groups: list[str] = Field(description="the groups with kept cells, in the grouping's order")
    order: list[int] = Field(description="positions into groups, leaves left to right")
    ordered: list[str]
    linkage: list[list[float]] = Field(description="scipy.cluster.hierarchy.linkage (complete, 1 - Pearson)")
    icoord: list[list[float]]
    dcoord: list[list[float]]


class CellsRequest(CellSet):
    version: Name | None = Field(default=None, description="pin a version; default: the live one")


class CellsResponse(BaseModel):
    dataset: str
    version: str
    n_cells: int
    cells: int = Field(description="cells kept")
    indices: list[int] = Field(description="obs positions (0-based, ascending) of the kept cells")


class CellResponse(BaseModel):
    dataset: str
    version: str
    index: int = Field(description="obs position, 0-based")
    id: str
    obs: dict[str, Any] = Field(description="every obs column's value; null where missing")
