"""The ingest pipeline: build a version, verify it, publish it."""

from ._ingest import Progress, ingest
from ._verify import verify_snapshot

__all__ = ["Progress", "ingest", "verify_snapshot"]
