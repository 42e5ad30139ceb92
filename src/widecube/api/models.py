"""Request and response models of the REST API (they also document it at /docs)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
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
    "GeneStatsResponse",
    "Marker",
    "MarkersResponse",
    "ObsColumn",
    "PublishRequest",
    "RollbackRequest",
    "SummaryRequest",
    "SummaryResponse",
    "VersionInfo",
]


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


class DatasetDetail(BaseModel):
    name: str
    version: str
    created: dt.datetime
    n_cells: int
    n_genes: int
    obs: dict[str, ObsColumn] = Field(description="categorical obs columns: categories and counts")
    groupbys: list[str]
    views: dict[str, dict[str, Any]]


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


class SummaryRequest(BaseModel):
    genes: list[str] = Field(min_length=1, max_length=5000, examples=[["CD3E", "MS4A1"]])
    groupby: str = Field(examples=["cell_type"])
    stats: list[str] = Field(
        default=["mean", "frac_expressing"], min_length=1,
        description="any of sum, sumsq, nnz, n_cells, mean, var, frac_expressing, mean_expressing, "
        "median, q10, q25, q75, q90",
    )  # fmt: skip
    layer: str | None = Field(
        default=None,
        description="'raw' or 'normalized' (counts per 10k, log1p); default: normalized when the "
        "input is counts, raw otherwise",
    )
    version: str | None = Field(default=None, description="pin a version; default: the live one")


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


_FILTER = Field(
    default_factory=dict,
    examples=[{"donor": ["D1", "D2"], "cell_type": ["B cell"]}],
    description="{categorical obs column: [categories to keep]}: AND across columns, OR within one; "
    "'(missing)' keeps cells without a value; an empty list keeps no cell; {} keeps every cell",
)


class AggregateRequest(BaseModel):
    genes: list[str] = Field(min_length=1, max_length=1000, examples=[["CD3E", "MS4A1"]])
    groupby: str = Field(examples=["cell_type"], description="an obs column, or columns joined by ','")
    filter: dict[str, list[str]] = _FILTER
    stats: list[str] = Field(default=["mean", "frac_expressing"], min_length=1,
                             description="the statistics of /summary, quantiles included")  # fmt: skip
    layer: str | None = Field(default=None, description="'raw' or 'normalized'; default: the dataset's")
    version: str | None = Field(default=None, description="pin a version; default: the live one")


class AggregateResponse(SummaryResponse):
    filter: dict[str, list[str]] = Field(description="the filter, sorted and de-duplicated")
    cells: int = Field(description="cells the filter keeps")
    source: Literal["precomputed", "computed"] = Field(
        description="precomputed: the filter keeps every group whole or drops it, so the stored "
        "views answer; computed: exactly, on the fly, from the gene-major view"
    )


class ExpressionRequest(BaseModel):
    genes: list[str] = Field(min_length=1, max_length=32, examples=[["CD3E"]])
    filter: dict[str, list[str]] = _FILTER
    layer: str | None = Field(default=None, description="'raw' or 'normalized'; default: the dataset's")
    version: str | None = Field(default=None, description="pin a version; default: the live one")


class ExpressionResponse(BaseModel):
    dataset: str
    version: str
    layer: str
    genes: list[str]
    filter: dict[str, list[str]]
    cells: int = Field(description="cells the filter keeps (every cell without a filter)")
    values: dict[str, list[float]] = Field(description="{gene: [value per kept cell, in obs order]}")


class Marker(BaseModel):
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
    group: str
    layer: str
    markers: list[Marker]


class GeneStatsResponse(BaseModel):
    dataset: str
    version: str
    layer: str
    genes: list[str]
    stats: dict[str, list[float | None]]


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


class PublishRequest(BaseModel):
    version: str = Field(description="a verified or retired version of the dataset")


class RollbackRequest(BaseModel):
    to: str | None = Field(default=None, description="version to make live; default: the previous one")
