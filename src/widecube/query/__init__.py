"""Queries: the read facade over published snapshots, and the on-the-fly aggregate.

- ``_resolve``: which version a request reads (live or pinned), opened once; versions out of
  service after a corrupt read.
- ``_index``: what queries derive once per opened snapshot (one typed :class:`SnapshotIndex`).
- ``_views``: every call into the precomputed views, in one place.
- ``_reads``: the typed queries; ``_versions``: versions, publish, rollback, verify;
  ``_warming``: the decoded cache's warm/evict/sweep.
- ``aggregate``: exact summaries over any subset of cells from the gene-major view.
- ``results``: what the queries answer (frozen, slotted dataclasses, readable as mappings).
- ``_described``: datasets' metadata and search; ``_atlas``: genes across datasets (pooled
  from exact moments); ``_links``: time-limited download links to a snapshot's files.
- ``_retention`` (the retention policy, pure), ``_gc`` (garbage collection, pins,
  inventory), ``_tiers`` (archive and restore: the streamed, checked copy), ``_scrub``
  (re-check stored snapshots), ``_together`` (releases, ``publish --together``);
  ``results_lake``: what they answer.
- ``_facade``: :class:`Widecube`, all of the above behind one object.

Imports compute, views, snapshot, catalog; nothing above it (api, cli) and not pipeline.
"""

from ..access import Actor
from ._described import read_metadata
from ._facade import Widecube
from ._index import SnapshotIndex
from ._retention import Verdict, retention_plan
from ._together import parse_targets
from .results import (
    Aggregate,
    AtlasExpression,
    CategoryColor,
    CellColor,
    CellStats,
    DatasetDetail,
    DatasetMetadata,
    DatasetSearch,
    DownloadLinks,
    Embedding,
    Embeddings,
    Expression,
    GeneStats,
    Markers,
    ResolvedGenes,
    Result,
    Summary,
    ValueColor,
    Verification,
    VersionInfo,
)
from .results_lake import (
    GcItem,
    GcReport,
    InventoryRow,
    ReleaseInfo,
    Retention,
    ScrubFinding,
    ScrubReport,
    TierMove,
    Together,
)

__all__ = [
    "Actor",
    "GcItem",
    "GcReport",
    "InventoryRow",
    "ReleaseInfo",
    "Retention",
    "ScrubFinding",
    "ScrubReport",
    "TierMove",
    "Together",
    "Verdict",
    "parse_targets",
    "retention_plan",
    "Aggregate",
    "CategoryColor",
    "CellColor",
    "AtlasExpression",
    "DatasetMetadata",
    "DatasetSearch",
    "DownloadLinks",
    "CellStats",
    "DatasetDetail",
    "Embedding",
    "Embeddings",
    "Expression",
    "GeneStats",
    "Markers",
    "ResolvedGenes",
    "Result",
    "SnapshotIndex",
    "Summary",
    "ValueColor",
    "Verification",
    "VersionInfo",
    "Widecube",
    "read_metadata",
]
