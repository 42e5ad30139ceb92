"""Request and response models of the REST API (they also document it at /docs)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "DatasetDetail",
    "DatasetSummary",
    "GeneList",
    "ObsColumn",
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
