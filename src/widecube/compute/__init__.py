"""Compute: groupings, numba kernels, the moment formulas, and the two passes (spill by gene,
then gene slabs). Imports nothing above it (no views, queries, pipeline or API)."""

from ._buckets import GeneSlab, JoinedSpill, SpillBuckets, SpillPart
from ._kernels import cell_scale, gene_moments, gene_quantiles, log_normalize, welch_t_p
from ._malloc import roomy_heap
from ._pass import check_finite, spill_by_gene, spill_rows
from ._select import COUNT_RANGE, group_quantiles
from ._spill import GeneSpill
from .contrast import benjamini_hochberg, log_fold_change, welch
from .groupings import (
    ALL,
    ALL_CELLS_GROUP,
    MISSING,
    Grouping,
    all_cells,
    default_groupbys,
    make_grouping,
    parse_groupbys,
)
from .moments import BASE_STATS, DERIVED_STATS, SUMMARY_STATS, derive

__all__ = [
    "ALL",
    "ALL_CELLS_GROUP",
    "BASE_STATS",
    "COUNT_RANGE",
    "DERIVED_STATS",
    "MISSING",
    "SUMMARY_STATS",
    "SpillBuckets",
    "SpillPart",
    "GeneSlab",
    "GeneSpill",
    "JoinedSpill",
    "Grouping",
    "all_cells",
    "benjamini_hochberg",
    "cell_scale",
    "check_finite",
    "default_groupbys",
    "derive",
    "gene_moments",
    "gene_quantiles",
    "log_fold_change",
    "group_quantiles",
    "log_normalize",
    "make_grouping",
    "parse_groupbys",
    "roomy_heap",
    "spill_by_gene",
    "spill_rows",
    "welch",
    "welch_t_p",
]
