"""The read facade: one object per process behind the API, the CLI and the Python client."""

from __future__ import annotations

from ._analyses import Analyses
from ._atlas import Atlas
from ._described import Described
from ._gc import Lifecycle
from ._links import Links
from ._scrub import Scrub
from ._together import Releasing

__all__ = ["Widecube"]


class Widecube(Analyses, Lifecycle, Scrub, Releasing, Described, Atlas, Links):
    """Catalog + snapshots: the queries (:class:`~._reads.Reads`, and the on-the-fly analyses of
    :class:`~._analyses.Analyses`), the admin moves on versions (:class:`~._versions.Admin`),
    the decoded cache's upkeep (:class:`~._warming.CacheUpkeep`, itself a ``Reads``), the
    versions' lifecycle: garbage collection, retention and tiers (:class:`~._gc.Lifecycle`),
    scrubbing (:class:`~._scrub.Scrub`), releases and ``publish --together``
    (:class:`~._together.Releasing`), datasets' metadata and search (:class:`Described`), genes
    across datasets (:class:`Atlas`) and download links (:class:`Links`), sharing one
    :class:`~widecube.query._resolve.Resolver` (opened snapshots, versions out of service).

    Every public method takes the caller as keyword ``actor`` (default: anonymous) and
    passes it to :func:`widecube.access.authorize` first.

        >>> wc = Widecube(Settings())                                         # doctest: +SKIP
        >>> wc.summary("pbmc", genes=["CD3E"], groupby="cell_type", stats=["mean"])["values"]
    """
