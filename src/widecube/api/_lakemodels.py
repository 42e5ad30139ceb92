"""Request and response models of the data-lake routes: dataset metadata and search,
cross-dataset gene queries, download links (see ``_lake``). Bounded like ``models``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from .models import DATASET_PATTERN, ColumnName, Name, StrictBody, Text

__all__ = [
    "AtlasDatasetModel",
    "AtlasFilter",
    "AtlasPooledModel",
    "AtlasRequest",
    "AtlasResponse",
    "DatasetHitModel",
    "DatasetSearchResponse",
    "DownloadFile",
    "DownloadResponse",
    "MAX_ATLAS_GENES",
    "MetadataPatch",
    "MetadataResponse",
    "Value",
]

MAX_ATLAS_GENES = 500
"""Genes in one cross-dataset query."""

Value = Annotated[str, StringConstraints(max_length=255), Text]
"""A faceted value (organism, tissue, assay, disease, tag)."""
Values = Annotated[list[Value], Field(max_length=50)]
Short = Annotated[str, StringConstraints(max_length=500), Text]
Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
DatasetName = Annotated[str, StringConstraints(pattern=DATASET_PATTERN)]
AtlasStat = Literal["mean", "frac_expressing", "var", "mean_expressing", "sum", "nnz"]


class MetadataPatch(StrictBody):
    """A JSON merge patch of a dataset's metadata: a field sent sets it, ``null`` removes it,
    a field left out stays; ``extra`` merges key by key (a key set to ``null`` is removed)."""

    title: Short | None = None
    description: Annotated[str, StringConstraints(max_length=20_000), Text] | None = None
    organism: Value | Values | None = None
    tissue: Value | Values | None = None
    assay: Value | Values | None = None
    disease: Value | Values | None = None
    license: Short | None = None
    citation: Annotated[str, StringConstraints(max_length=2_000), Text] | None = None
    doi: Short | None = None
    contact: Short | None = None
    tags: Value | Values | None = None
    extra: Annotated[dict[Key, Short | None], Field(max_length=50)] | None = None


class MetadataResponse(BaseModel):
    dataset: str
    metadata: dict[str, Any] = Field(
        description="the fields that are set: title, description, organism, tissue, assay, disease "
        "(lists), license, citation, doi, contact, tags (a list), extra (free key/values)"
    )


class DatasetHitModel(BaseModel):
    name: str
    version: str
    n_cells: int | None
    n_genes: int | None
    groupbys: list[str]
    created: dt.datetime
    metadata: dict[str, Any]


class DatasetSearchResponse(BaseModel):
    query: str
    filters: dict[str, list[str]]
    total: int
    datasets: list[DatasetHitModel] = Field(description="the hits, by name")
    facets: dict[str, dict[str, int]] = Field(
        description="{facet: {value: datasets}} over the hits of every other filter, most first; "
        "only datasets the caller may read are counted"
    )


class AtlasFilter(StrictBody):
    """Which datasets: any value of each facet given, every facet given; ``q`` full text."""

    organism: Value | Values | None = None
    tissue: Value | Values | None = None
    assay: Value | Values | None = None
    disease: Value | Values | None = None
    tag: Value | Values | None = None
    q: Short | None = Field(default=None, description="words each dataset's metadata must hold")
    datasets: Annotated[list[DatasetName], Field(max_length=10_000)] | None = None


class AtlasRequest(StrictBody):
    genes: list[Name] = Field(min_length=1, max_length=MAX_ATLAS_GENES, examples=[["CD3E", "MS4A1"]])
    by: ColumnName = Field(default="cell_type", description="a grouping precomputed in the datasets")
    filter: AtlasFilter | None = None
    stats: list[AtlasStat] = Field(default=["mean", "frac_expressing"], min_length=1, max_length=6)
    layer: Name = Field(default="normalized", description="raw or normalized (counts per 10k, log1p)")


class AtlasDatasetModel(BaseModel):
    dataset: str
    version: str
    groups: list[str]
    genes: list[str | None] = Field(description="the dataset's gene each asked one matched; null: absent")
    absent: list[str]
    n_cells: list[int]
    values: dict[str, list[list[float | None]]] = Field(description="{stat: [[per asked gene] per group]}")


class AtlasPooledModel(BaseModel):
    groups: list[str]
    datasets: list[int] = Field(description="how many datasets have each group")
    n_cells: list[list[int]] = Field(description="cells per group and gene, in datasets that have the gene")
    values: dict[str, list[list[float | None]]]


class AtlasResponse(BaseModel):
    genes: list[str]
    by: str
    layer: str
    stats: list[str]
    filter: dict[str, list[str]]
    datasets: list[AtlasDatasetModel]
    pooled: AtlasPooledModel
    skipped: list[dict[str, str]] = Field(
        description="selected datasets that could not answer: dataset, reason"
    )


class DownloadFile(BaseModel):
    path: str = Field(description="relative to the snapshot")
    size: int | None
    sha256: str | None = Field(description="what the manifest says (null for the manifest itself)")
    url: str


class DownloadResponse(BaseModel):
    dataset: str
    version: str
    expires: dt.datetime
    files: list[DownloadFile]
