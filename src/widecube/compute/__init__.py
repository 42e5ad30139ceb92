"""Compute: groupings, numba kernels, and the two passes (spill by gene, then gene slabs)."""

from ._pass import check_finite, spill_by_gene
from ._spill import GeneSlab, GeneSpill
from .groupings import ALL, MISSING, Grouping, all_cells, default_groupbys, make_grouping, parse_groupbys

__all__ = [
    "ALL",
    "MISSING",
    "GeneSlab",
    "GeneSpill",
    "Grouping",
    "all_cells",
    "check_finite",
    "default_groupbys",
    "make_grouping",
    "parse_groupbys",
    "spill_by_gene",
]
