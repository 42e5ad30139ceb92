"""widecube: precomputed, atomically published, millisecond-served views of wide matrices.

``widecube.Client(url)`` asks a server, ``widecube.open(storage)`` reads a store in this
process; both answer with pandas DataFrames and AnnData (see :mod:`widecube.client`). They
load on first use, so ``import widecube`` stays cheap for the CLI and the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .client import Client, open

__all__ = ["Client", "__version__", "open"]


def __getattr__(name: str) -> Any:
    if name in ("Client", "open"):
        from . import client  # pandas, pyarrow and httpx only when asked for

        return getattr(client, name)
    raise AttributeError(f"module 'widecube' has no attribute {name!r}")
