"""The read facade: one object per process behind the API, the CLI and the Python client."""

from __future__ import annotations

from ._analyses import Analyses
from ._atlas import Atlas
from ._described import Described
from ._links import Links
from ._versions import Admin
from ._warming import CacheUpkeep

__all__ = ["Widecube"]


class Widecube(Analyses, CacheUpkeep, Admin, Described, Atlas, Links):
    """Catalog + snapshots: the queries (:class:`~._reads.Reads`, and the on-the-fly analyses of
    :class:`~._analyses.Analyses`), the admin moves on versions (:class:`Admin`), datasets'
    metadata and search (:class:`Described`), genes across datasets (:class:`Atlas`), download
    links (:class:`Links`) and the decoded cache's upkeep (:class:`CacheUpkeep`, itself a
    ``Reads``), sharing one
    :class:`~widecube.query._resolve.Resolver` (opened snapshots, versions out of service).

    Every public method takes the caller as keyword ``actor`` (default: anonymous) and
    passes it to :func:`widecube.access.authorize` first.

        >>> wc = Widecube(Settings())                                         # doctest: +SKIP
        >>> wc.summary("pbmc", genes=["CD3E"], groupby="cell_type", stats=["mean"])["values"]
    """
