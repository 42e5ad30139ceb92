"""Views: one module per view, each registering a stateless spec (built in registration
order) and a reader per encoding it can read; see ``_registry``."""

from . import genes as _genes  # noqa: F401 - registers the view
from . import markers as _markers  # noqa: F401 - registers the view
from . import matrix as _matrix  # noqa: F401 - registers the view
from . import quantiles as _quantiles  # noqa: F401 - registers the view
from . import summary as _summary  # noqa: F401 - registers the view
from ._layers import (
    FOLD_EXPM1,
    FOLD_RATIO,
    INPUT,
    INPUT_KINDS,
    LEGACY_RAW,
    NORMALIZED,
    detect_kind,
    fold_change_method,
    layer_kind,
    layer_unit,
    parse_input_kind,
    withheld_stats,
)
from ._registry import (
    ViewMissing,
    ViewSpec,
    get_view,
    has_view,
    missing_view,
    parse_views,
    readable,
    reader,
    register_read,
    register_view,
    select_views,
    views,
)
from ._spec import BuildContext, Builder, Put, SlabPart, SlabStats, ViewReader
from .genes import GenesReader
from .markers import MarkersReader
from .matrix import MatrixReader
from .quantiles import QuantilesReader
from .summary import SummaryReader

__all__ = [
    "FOLD_EXPM1",
    "FOLD_RATIO",
    "INPUT",
    "INPUT_KINDS",
    "LEGACY_RAW",
    "NORMALIZED",
    "BuildContext",
    "Builder",
    "GenesReader",
    "MarkersReader",
    "MatrixReader",
    "Put",
    "QuantilesReader",
    "SlabPart",
    "SlabStats",
    "SummaryReader",
    "ViewMissing",
    "ViewReader",
    "ViewSpec",
    "get_view",
    "has_view",
    "missing_view",
    "parse_views",
    "readable",
    "reader",
    "register_read",
    "register_view",
    "select_views",
    "detect_kind",
    "fold_change_method",
    "layer_kind",
    "layer_unit",
    "parse_input_kind",
    "views",
    "withheld_stats",
]
