"""The REST API (FastAPI)."""

from ._security import parse_rate_limit
from .app import create_app

__all__ = ["create_app", "parse_rate_limit"]
