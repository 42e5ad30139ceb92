"""The local face: :func:`open` reads a storage folder in this process, without a server.

It asks the same read facade the server asks (:class:`widecube.query.Widecube`), so its
answers are the server's, converted by the same code (:mod:`._convert`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..access import Actor
from ..errors import InputNotFound, InvalidQuery
from ._export import SCANPY_LAYERS, scanpy_aggregate
from ._interface import Reader

if TYPE_CHECKING:
    import anndata

    from ..query import Widecube
    from ._convert import Answer

__all__ = ["Local", "open"]


class Local(Reader):
    """The queries of a local store (see :func:`open`), answered as pandas and AnnData."""

    def __init__(self, service: Widecube, actor: Actor | None = None) -> None:
        self.service = service
        self.actor = actor or Actor.local()
        """Who asks: the owner of this process, who can read the store's files anyway (the door
        lets them through and audits reads of controlled data under their name)."""

    def __repr__(self) -> str:
        return f"widecube.open({str(self.service.settings.storage)!r})"

    def close(self) -> None:
        self.service.close()

    def _fetch_datasets(self) -> list[dict[str, Any]]:
        return [dict(d.items()) for d in self.service.datasets(actor=self.actor)]

    def _fetch_releases(self) -> list[dict[str, Any]]:
        return [dict(r.items()) for r in self.service.releases(actor=self.actor)]

    def _fetch_genes(
        self, dataset: str, prefix: str, limit: int, version: str | None, release: str | None
    ) -> list[str]:
        pinned = self._version(dataset, version, release)
        return self.service.genes(dataset, prefix, limit, pinned, actor=self.actor)[1]

    def _fetch_summary(self, dataset: str, query: dict[str, Any]) -> Answer:
        return self.service.summary(dataset, **self._pinned(dataset, query), actor=self.actor)

    def _fetch_aggregate(self, dataset: str, query: dict[str, Any]) -> Answer:
        return self.service.aggregate(dataset, **self._pinned(dataset, query), actor=self.actor)

    def _fetch_markers(self, dataset: str, query: dict[str, Any]) -> Answer:
        return self.service.markers(dataset, **self._pinned(dataset, query), actor=self.actor)

    def _fetch_expression(self, dataset: str, query: dict[str, Any]) -> Answer:
        return self.service.expression(dataset, **self._pinned(dataset, query), actor=self.actor)

    def _pinned(self, dataset: str, query: dict[str, Any]) -> dict[str, Any]:
        """``query`` with its ``release`` turned into the version it names."""
        rest = {k: v for k, v in query.items() if k != "release"}
        return {**rest, "version": self._version(dataset, query.get("version"), query.get("release"))}

    def _version(self, dataset: str, version: str | None, release: str | None) -> str | None:
        """The version a query reads: ``version``, or the one ``release`` names (both: they
        must agree), as a server reads ``release=NAME``."""
        if release is None:
            return version
        released = self.service.release_version(release, dataset, actor=self.actor)
        if version is not None and version != released:
            raise InvalidQuery(f"version {version} is not the version the release names ({released})")
        return released

    def _fetch_compare(self, dataset: str, query: dict[str, Any]) -> Answer:
        return self.service.compare(dataset, **query, actor=self.actor)

    def _fetch_violin(self, dataset: str, query: dict[str, Any]) -> Answer:
        return self.service.violin(dataset, **query, actor=self.actor)

    def pseudobulk(
        self,
        dataset: str,
        groupby: str,
        *,
        layer: str | None = None,
        version: str | None = None,
        release: str | None = None,
    ) -> anndata.AnnData:
        """Every gene of a precomputed grouping as ``scanpy.get.aggregate(adata, groupby,
        func=["sum", "mean", "var", "count_nonzero"])`` returns it (see :mod:`._export`): what
        ``widecube export --view summary`` writes. Local only: a server sends at most 5,000
        genes a request.

        >>> pb = wc.pseudobulk("pbmc", "cell_type", layer="raw")            # doctest: +SKIP
        >>> sorted(pb.layers)                                                 # doctest: +SKIP
        ['count_nonzero', 'mean', 'sum', 'var']
        """
        pinned = self._version(dataset, version, release)
        resolved, var = self.service.var(dataset, pinned, actor=self.actor)
        stats = [*SCANPY_LAYERS.values(), "n_cells"]
        result = self.service.summary(
            dataset,
            genes=[str(g) for g in var.index],
            groupby=groupby,
            stats=stats,
            layer=layer,
            version=resolved,
            actor=self.actor,
        )
        return scanpy_aggregate(result, var)


def open(storage: str | Path, **settings: Any) -> Local:  # shadows the builtin on purpose: widecube.open
    """The store at ``storage`` (the folder ``widecube ingest`` wrote), read in this process.

    It has the methods of :class:`~widecube.Client` with the same answers, and needs no
    server: for a notebook on the machine that holds the data. Other ``settings`` are
    :class:`~widecube.config.Settings` fields (``catalog_url`` for a PostgreSQL catalog,
    ``cache``). Close it (or use ``with``) to release the catalog.

        >>> with widecube.open("./widecube-data") as wc:
        ...     int(wc.summary("pbmc", ["CD3E"], "cell_type").obs["n_cells"].sum())
        240
    """
    from ..config import Settings  # the service stack loads only when used
    from ..query import Widecube

    if isinstance(storage, str) and "://" in storage:  # an object store (a catalog_url is required)
        return Local(Widecube(Settings(storage=storage, **settings)))
    root = Path(storage).expanduser()
    if not root.is_dir():  # else the catalog would make an empty store there, silently
        raise InputNotFound(f"no widecube storage at {root.resolve()} (the folder does not exist)")
    return Local(Widecube(Settings(storage=root, **settings)))
