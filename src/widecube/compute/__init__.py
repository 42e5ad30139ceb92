"""Compute: groupings, numba kernels and the streaming pass of per-group moments."""

from .groupings import (
    ALL,
    MISSING,
    Grouping,
    all_cells,
    default_groupbys,
    make_grouping,
    parse_groupbys,
)
from .moments import GroupMoments, Moments, compute_moments

__all__ = [
    "ALL",
    "all_cells",
    "MISSING",
    "GroupMoments",
    "Grouping",
    "Moments",
    "compute_moments",
    "default_groupbys",
    "make_grouping",
    "parse_groupbys",
]
