"""Workers' names in the catalog: ``host:pid:tag``, so that a supervisor can free the jobs of
a dead process by its prefix and reused pids stay apart (the tag)."""

from __future__ import annotations

import os
import socket
import uuid

__all__ = ["worker_name", "worker_prefix"]


def worker_name(pid: int | None = None) -> str:
    """A worker's name in the catalog: ``host:pid:tag`` (the tag tells reused pids apart)."""
    return f"{worker_prefix(pid)}{uuid.uuid4().hex[:6]}"


def worker_prefix(pid: int | None = None) -> str:
    """The start of the names of the workers of process ``pid`` (default: this one)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}:"
