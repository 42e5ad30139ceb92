"""Views: one module per view, registered in one registry (built in registration order)."""

from . import genes as _genes  # noqa: F401 - registers the view
from . import summary as _summary  # noqa: F401 - registers the view
from ._base import BuildContext, View
from ._registry import get_view, register_view, views
from .summary import STATS, SummaryTable

__all__ = ["STATS", "BuildContext", "SummaryTable", "View", "get_view", "register_view", "views"]
