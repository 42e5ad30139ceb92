"""The ingest pipeline: build a version, verify it, publish it."""

from .ingest import Progress, ingest
from .verify import verify_snapshot

__all__ = ["Progress", "ingest", "verify_snapshot"]
