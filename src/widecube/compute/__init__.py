"""Compute: groupings, numba kernels, the moment formulas, and the two passes (spill by gene,
then gene slabs). Imports nothing above it (no views, queries, pipeline or API).

Its names load on first use (PEP 562), each from its own module: reading a snapshot needs the
groupings and the formulas, not the two passes (which bring the input readers, anndata and
dask) nor the numba kernels' compilation cache.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._buckets import GeneSlab, JoinedSpill, ReadBuffers, SpillBuckets, SpillPart
    from ._direct import around_the_cache
    from ._kernels import cell_scale, gene_moments, gene_quantiles, log1p_table, log_normalize, welch_t_p
    from ._malloc import roomy_heap, roomy_policy, settled_objects
    from ._pass import check_finite, row_bounds, spill_by_gene, spill_rows, upload_part
    from ._pool import ArrayPool
    from ._select import COUNT_RANGE, group_quantiles
    from ._spill import GeneSpill, chunk_buckets
    from ._spillstore import SpillObject
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

_WHERE = {
    "ArrayPool": "_pool",
    "GeneSlab": "_buckets",
    "JoinedSpill": "_buckets",
    "ReadBuffers": "_buckets",
    "SpillBuckets": "_buckets",
    "SpillPart": "_buckets",
    "around_the_cache": "_direct",
    "cell_scale": "_kernels",
    "gene_moments": "_kernels",
    "gene_quantiles": "_kernels",
    "log1p_table": "_kernels",
    "log_normalize": "_kernels",
    "welch_t_p": "_kernels",
    "roomy_heap": "_malloc",
    "roomy_policy": "_malloc",
    "settled_objects": "_malloc",
    "check_finite": "_pass",
    "spill_by_gene": "_pass",
    "spill_rows": "_pass",
    "row_bounds": "_pass",
    "upload_part": "_pass",
    "SpillObject": "_spillstore",
    "COUNT_RANGE": "_select",
    "group_quantiles": "_select",
    "GeneSpill": "_spill",
    "chunk_buckets": "_spill",
    "benjamini_hochberg": "contrast",
    "log_fold_change": "contrast",
    "welch": "contrast",
    "ALL": "groupings",
    "ALL_CELLS_GROUP": "groupings",
    "MISSING": "groupings",
    "Grouping": "groupings",
    "all_cells": "groupings",
    "default_groupbys": "groupings",
    "make_grouping": "groupings",
    "parse_groupbys": "groupings",
    "BASE_STATS": "moments",
    "DERIVED_STATS": "moments",
    "SUMMARY_STATS": "moments",
    "derive": "moments",
}
"""Each public name and the module that defines it."""

__all__ = [
    "ALL",
    "ALL_CELLS_GROUP",
    "BASE_STATS",
    "COUNT_RANGE",
    "DERIVED_STATS",
    "MISSING",
    "SUMMARY_STATS",
    "ArrayPool",
    "SpillBuckets",
    "SpillObject",
    "SpillPart",
    "GeneSlab",
    "GeneSpill",
    "JoinedSpill",
    "ReadBuffers",
    "Grouping",
    "all_cells",
    "around_the_cache",
    "benjamini_hochberg",
    "cell_scale",
    "check_finite",
    "chunk_buckets",
    "default_groupbys",
    "derive",
    "gene_moments",
    "gene_quantiles",
    "log_fold_change",
    "group_quantiles",
    "log1p_table",
    "log_normalize",
    "make_grouping",
    "parse_groupbys",
    "roomy_heap",
    "roomy_policy",
    "row_bounds",
    "settled_objects",
    "spill_by_gene",
    "spill_rows",
    "upload_part",
    "welch",
    "welch_t_p",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value
