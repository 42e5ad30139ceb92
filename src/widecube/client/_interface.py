"""What a client can ask, written once for both faces (HTTP and local).

:class:`Reader` holds the public methods, their arguments and documentation, and turns
answers into pandas and AnnData (by :mod:`._convert`). A face implements only the six
``_fetch_*`` methods, each returning the read facade's shapes (see
:class:`widecube.query.Widecube`): :class:`~widecube.client.Client` asks a server,
:func:`~widecube.open` asks the facade in the same process. The examples below run against
both (``wc`` is either) in the test suite.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import pandas as pd

from . import _convert

if TYPE_CHECKING:
    import anndata

__all__ = ["DEFAULT_STATS", "Reader"]

DEFAULT_STATS = ("mean", "frac_expressing")
"""The statistics asked for when none are named (the API's default too)."""

Filter = Mapping[str, Sequence[str]]


class Reader(abc.ABC):
    """The queries of a widecube store, answered as pandas DataFrames and AnnData."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection (or the catalog and snapshots)."""

    # -- what a face implements: answers in the read facade's shapes ------------------------
    # (each ``query`` may hold ``release``: the face reads the version that release names)

    @abc.abstractmethod
    def _fetch_datasets(self) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def _fetch_releases(self) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def _fetch_genes(
        self, dataset: str, prefix: str, limit: int, version: str | None, release: str | None
    ) -> list[str]: ...

    @abc.abstractmethod
    def _fetch_summary(self, dataset: str, query: dict[str, Any]) -> _convert.Answer: ...

    @abc.abstractmethod
    def _fetch_aggregate(self, dataset: str, query: dict[str, Any]) -> _convert.Answer: ...

    @abc.abstractmethod
    def _fetch_markers(self, dataset: str, query: dict[str, Any]) -> _convert.Answer: ...

    @abc.abstractmethod
    def _fetch_expression(self, dataset: str, query: dict[str, Any]) -> _convert.Answer: ...

    # -- the public queries -----------------------------------------------------------------

    def datasets(self) -> pd.DataFrame:
        """Every dataset with a live version, one row each, indexed by name.

        >>> wc.datasets()[["n_cells", "n_genes", "groupbys"]]
              n_cells  n_genes                   groupbys
        name
        pbmc      240       12  [cell_type, cell_type,donor]
        """
        return _convert.datasets_frame(self._fetch_datasets())

    def releases(self) -> pd.DataFrame:
        """Every release whose datasets this caller may read, newest first, indexed by name;
        ``datasets`` is ``{dataset: version}``. Pass ``release=NAME`` to any query to read
        the version it names (the same answer for ever, whatever is live since).

        >>> wc.releases().columns.tolist()      # a row such as atlas-1: {'pbmc': '3f2a9c...'}
        ['created', 'created_by', 'note', 'datasets']
        """
        return _convert.releases_frame(self._fetch_releases())

    def genes(
        self,
        dataset: str,
        prefix: str = "",
        *,
        limit: int = 10_000,
        version: str | None = None,
        release: str | None = None,
    ) -> list[str]:
        """Gene names of ``dataset`` that start with ``prefix`` (case-insensitive), sorted
        case-insensitively, at most ``limit`` of them (a server answers up to 10,000).

        >>> wc.genes("pbmc", "cd")
        ['CD14', 'CD3E', 'CD79A']
        """
        return self._fetch_genes(dataset, prefix, limit, version, release)

    def summary(
        self,
        dataset: str,
        genes: Sequence[str],
        groupby: str,
        *,
        stats: Sequence[str] = DEFAULT_STATS,
        layer: str | None = None,
        version: str | None = None,
        release: str | None = None,
    ) -> anndata.AnnData:
        """Per-group statistics of ``genes`` over all cells, from the precomputed views:
        the pseudobulk AnnData of ``scanpy.get.aggregate`` (groups as obs, genes as var, one
        layer per statistic).

        ``groupby`` is a precomputed grouping (an obs column, or columns joined by ``,``);
        ``stats`` any of ``sum``, ``sumsq``, ``nnz``, ``n_cells``, ``mean``, ``var`` (ddof=1,
        as scanpy), ``frac_expressing``, ``mean_expressing`` and the dataset's quantiles
        (``median``, ``q10``…); ``layer`` is ``input`` (the values as given) or ``normalized``
        (default: normalized for count data); ``version`` pins a version (default: the live
        one, named in ``uns["version"]``), ``release`` reads the version a release names (see
        :meth:`releases`; with ``version`` too, both must name the same). Every query takes
        ``version`` and ``release`` alike.

        >>> pb = wc.summary("pbmc", ["CD3E", "MS4A1"], "cell_type", stats=["mean", "nnz"], layer="input")
        >>> pb
        AnnData object with n_obs × n_vars = 5 × 2
            obs: 'cell_type', 'n_cells'
            uns: 'dataset', 'version', 'groupby', 'layer'
            layers: 'mean', 'nnz'
        >>> pb.obs
             cell_type  n_cells
        T            T      105
        B            B       70
        NK          NK       47
        Mono      Mono       17
        solo      solo        1
        >>> pb.to_df(layer="nnz")
               CD3E  MS4A1
        T     105.0   10.0
        B      14.0   70.0
        NK      8.0    2.0
        Mono    7.0    3.0
        solo    0.0    0.0
        """
        query = {
            "genes": list(genes),
            "groupby": groupby,
            "stats": _with_counts(stats),
            "layer": layer,
            "version": version,
            "release": release,
        }
        return _convert.pseudobulk(self._fetch_summary(dataset, query), list(stats))

    def aggregate(
        self,
        dataset: str,
        genes: Sequence[str],
        groupby: str,
        *,
        stats: Sequence[str] = DEFAULT_STATS,
        filter: Filter | None = None,
        layer: str | None = None,
        version: str | None = None,
        release: str | None = None,
    ) -> anndata.AnnData:
        """The statistics of :meth:`summary` over the cells ``filter`` keeps, for any
        categorical obs column as ``groupby`` (or columns joined by ``,``), exactly.

        ``filter`` is ``{obs column: [categories to keep]}``: AND across columns, OR within
        one. Groups the filter empties stay, with ``n_cells`` 0 and NaN statistics (0 sums
        and counts). ``uns`` adds ``cells`` (kept), ``filter`` and ``source`` (whether the
        stored views answered, or the gene-major view on the fly).

        >>> pb = wc.aggregate("pbmc", ["NKG7", "CD3E"], "cell_type", stats=["mean", "sum"],
        ...                   filter={"donor": ["d1"]}, layer="input")
        >>> pb.obs["n_cells"].to_dict(), pb.uns["cells"], pb.uns["source"]
        ({'T': 36, 'B': 26, 'NK': 11, 'Mono': 9, 'solo': 0}, 82, 'computed')
        >>> pb.to_df(layer="mean").round(2)
              NKG7  CD3E
        T     0.42  4.47
        B     0.19  0.85
        NK    4.45  0.82
        Mono  1.00  2.11
        solo   NaN   NaN
        """
        spec = _convert.filter_spec(filter)
        query = {
            "genes": list(genes),
            "groupby": groupby,
            "stats": _with_counts(stats),
            "filter": spec,
            "layer": layer,
            "version": version,
            "release": release,
        }
        result = self._fetch_aggregate(dataset, query)
        adata = _convert.pseudobulk(result, list(stats))
        adata.uns["filter"] = spec
        return adata

    def markers(
        self,
        dataset: str,
        groupby: str,
        group: str,
        *,
        layer: str | None = None,
        limit: int = 100,
        version: str | None = None,
        release: str | None = None,
    ) -> pd.DataFrame:
        """The top ``limit`` (≤ 100) marker genes of ``group`` against all other cells, from
        the stored markers view, best first (ranked by Welch t, as scanpy's ``t-test``).

        >>> m = wc.markers("pbmc", "cell_type", "B", limit=3)
        >>> m[["gene", "logfoldchange", "pct_in", "pct_out"]].round(2)
            gene  logfoldchange  pct_in  pct_out
        0  MS4A1          11.48     1.0     0.09
        1  CD79A          10.27     1.0     0.16
        2   ACTB           0.84     0.2     0.14
        >>> list(m.columns), m.attrs["layer"]
        (['gene', 'logfoldchange', 'pct_in', 'pct_out', 't', 'pval', 'pval_adj'], 'normalized')
        """
        query = {
            "groupby": groupby,
            "group": group,
            "layer": layer,
            "limit": limit,
            "version": version,
            "release": release,
        }
        return _convert.markers_frame(self._fetch_markers(dataset, query))

    def expression(
        self,
        dataset: str,
        genes: Sequence[str],
        *,
        filter: Filter | None = None,
        layer: str | None = None,
        version: str | None = None,
        release: str | None = None,
    ) -> pd.DataFrame:
        """Per-cell values of ``genes`` (float32; a server answers up to 32 genes a call),
        one row per cell that ``filter`` keeps, in obs order: for violins and scatter plots.

        >>> x = wc.expression("pbmc", ["LYZ", "CD14"], filter={"cell_type": ["Mono"], "donor": ["d1"]},
        ...                   layer="input")
        >>> x.head(3)
           LYZ  CD14
        0  4.0   6.0
        1  4.0   4.0
        2  4.0   4.0
        >>> x.attrs["cells"], x.dtypes.tolist()
        (9, [dtype('float32'), dtype('float32')])
        """
        query = {
            "genes": list(genes),
            "filter": _convert.filter_spec(filter),
            "layer": layer,
            "version": version,
            "release": release,
        }
        return _convert.expression_frame(self._fetch_expression(dataset, query))


def _with_counts(stats: Sequence[str]) -> list[str]:
    """``stats`` and ``n_cells`` (asked once, for ``obs["n_cells"]``)."""
    if isinstance(stats, str):
        raise TypeError(f"stats must be a list of names, not the string {stats!r}")
    return list(dict.fromkeys([*stats, "n_cells"]))
