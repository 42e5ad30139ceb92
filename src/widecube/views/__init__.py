"""Views: one module per view, registered in one registry (built in registration order)."""

from . import genes as _genes  # noqa: F401 - registers the view
from . import markers as _markers  # noqa: F401 - registers the view
from . import matrix as _matrix  # noqa: F401 - registers the view
from . import quantiles as _quantiles  # noqa: F401 - registers the view
from . import summary as _summary  # noqa: F401 - registers the view
from ._base import NORMALIZED, RAW, BuildContext, SlabStats, View
from ._registry import get_view, register_view, views

__all__ = ["NORMALIZED", "RAW", "BuildContext", "SlabStats", "View", "get_view", "register_view", "views"]
