"""What a client can ask, written once for both faces (HTTP and local).

:class:`Reader` holds the public methods, their arguments and documentation, and turns
answers into pandas and AnnData (by :mod:`._convert`). A face implements only the
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
CellSet = str | Mapping[str, Any]
"""A group name of ``groupby``, or a cell set as the API takes it (``{"filter": …}``…)."""


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

    @abc.abstractmethod
    def _fetch_compare(self, dataset: str, query: dict[str, Any]) -> _convert.Answer: ...

    @abc.abstractmethod
    def _fetch_violin(self, dataset: str, query: dict[str, Any]) -> _convert.Answer: ...

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
        group: str | None = None,
        *,
        layer: str | None = None,
        limit: int = 100,
        version: str | None = None,
        release: str | None = None,
    ) -> pd.DataFrame:
        """The top ``limit`` (≤ 100) marker genes of ``group`` against all other cells, from
        the stored markers view, best first (ranked by Welch t, as scanpy's ``t-test``).
        Without ``group``: of every group at once, in the grouping's order, with a ``group``
        column first (as ``scanpy.get.rank_genes_groups_df(adata, group=None)``; a group with
        fewer than two cells has no markers).

        >>> m = wc.markers("pbmc", "cell_type", "B", limit=3)
        >>> m[["gene", "logfoldchange", "pct_in", "pct_out"]].round(2)
            gene  logfoldchange  pct_in  pct_out
        0  MS4A1          11.48     1.0     0.09
        1  CD79A          10.27     1.0     0.16
        2   ACTB           0.84     0.2     0.14
        >>> list(m.columns), m.attrs["layer"]
        (['gene', 'logfoldchange', 'pct_in', 'pct_out', 't', 'pval', 'pval_adj'], 'normalized')
        >>> every = wc.markers("pbmc", "cell_type", limit=1)
        >>> every[["group", "gene"]]         # no markers for 'solo': one cell has no Welch t
          group   gene
        0     T   IL7R
        1     B  MS4A1
        2    NK   NKG7
        3  Mono   CD14
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

    def compare(
        self,
        dataset: str,
        a: CellSet,
        b: CellSet | None = None,
        *,
        groupby: str | None = None,
        within: CellSet | None = None,
        genes: Sequence[str] | None = None,
        top: int = 100,
        rank: str = "up",
        layer: str | None = None,
        version: str | None = None,
    ) -> pd.DataFrame:
        """Two sets of cells compared gene by gene, exactly, on the fly: Welch's t, two-sided
        p, Benjamini-Hochberg adjusted p (over the genes compared), log2 fold change (of
        ``expm1`` of the means on log1p values, as scanpy), means and fractions expressing.
        One row per gene: ``gene``, then :data:`COMPARE_COLUMNS` (float64, NaN where undefined).

        A set is a group name of ``groupby``, or a cell set as the API takes it: the AND of
        ``filter`` (``{column: [categories] | {"min", "max"}}``), ``lasso``, ``group``
        (``{"groupby", "group"}``), ``indices`` (obs positions, 0-based) and ``cells`` (ids).
        ``b`` defaults to the rest (every cell of ``within`` not in ``a``). Without ``genes``
        every gene is compared and the ``top`` best by ``rank`` come back (``up``: largest t
        first; ``down``; ``abs``); with ``genes``, those, in their order. ``attrs`` names the
        dataset, version, layer, both sets (with their ``cells``), ``genes_tested`` and ``rank``.

        >>> c = wc.compare("pbmc", "B", "T", groupby="cell_type", genes=["MS4A1", "CD3E"], layer="input")
        >>> c[["gene", "mean_a", "mean_b", "pct_a", "pct_b"]].round(2)
            gene  mean_a  mean_b  pct_a  pct_b
        0  MS4A1    4.57    0.47    1.0    0.1
        1   CD3E    0.96    4.64    0.2    1.0
        >>> c.attrs["a"]["cells"], c.attrs["b"]["cells"]
        (70, 105)
        >>> rest = wc.compare("pbmc", {"filter": {"cell_type": ["NK"], "donor": ["d1"]}}, top=2)
        >>> list(rest["gene"]), rest.attrs["b"]
        (['GNLY', 'NKG7'], {'rest': True, 'cells': 229})
        """
        query = {
            "a": _cell_set(a, groupby, "a"),
            "b": None if b is None else _cell_set(b, groupby, "b"),
            "within": None if within is None else _cell_set(within, groupby, "within"),
            "genes": None if genes is None else list(genes),
            "top": top,
            "rank": rank,
            "layer": layer,
            "version": version,
        }
        return _convert.compare_frame(self._fetch_compare(dataset, query))

    def violin(
        self,
        dataset: str,
        genes: Sequence[str],
        groupby: str,
        *,
        bins: int = 40,
        filter: Mapping[str, Any] | None = None,
        layer: str | None = None,
        version: str | None = None,
    ) -> pd.DataFrame:
        """The exact distribution of each gene's values per group of ``groupby`` (any
        categorical obs column, or columns joined by ``,``), over the cells ``filter`` keeps:
        what a violin plot draws, without sending every cell.

        One row per (gene, group, bin): ``lo``, ``hi`` and ``count``, the cells whose value
        is in ``[lo, hi)`` (the last bin includes ``hi``). The first row of each (gene, group)
        is the exact zeros (``lo == hi == 0``); the ``bins`` bins after it hold the non-zero
        values, with edges shared by the groups (``numpy.histogram_bin_edges`` of the gene's
        non-zero values over the kept cells; none if no kept cell expresses it). Counts of a
        (gene, group) add up to the group's cells. ``attrs`` names the dataset, version,
        groupby, layer, the kept ``cells`` and the ``filter``.

        >>> v = wc.violin("pbmc", ["MS4A1"], "cell_type", bins=4, layer="input")
        >>> v[v["group"] == "B"]
            gene group    lo    hi  count
        5  MS4A1     B   0.0   0.0      0
        6  MS4A1     B   1.0   4.5     61
        7  MS4A1     B   4.5   8.0      6
        8  MS4A1     B   8.0  11.5      0
        9  MS4A1     B  11.5  15.0      3
        >>> v.groupby("group", observed=True, sort=False)["count"].sum().to_dict()
        {'T': 105, 'B': 70, 'NK': 47, 'Mono': 17, 'solo': 1}
        """
        query = {
            "genes": list(genes),
            "groupby": groupby,
            "bins": bins,
            "filter": {str(k): v for k, v in (filter or {}).items()},
            "layer": layer,
            "version": version,
        }
        return _convert.violin_frame(self._fetch_violin(dataset, query))

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
        one row per cell that ``filter`` keeps, in obs order, indexed by the cells' ids (obs
        names): for violins and scatter plots.

        >>> x = wc.expression("pbmc", ["LYZ", "CD14"], filter={"cell_type": ["Mono"], "donor": ["d1"]},
        ...                   layer="input")
        >>> x.head(3)
                LYZ  CD14
        cell20  4.0   6.0
        cell38  4.0   4.0
        cell81  4.0   4.0
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


def _cell_set(spec: CellSet, groupby: str | None, name: str) -> dict[str, Any]:
    """A set given as a group name (of ``groupby``) or as a cell set, as the API's cell set."""
    if isinstance(spec, str):
        if groupby is None:
            raise TypeError(f"set {name} is the group {spec!r}: say which grouping with groupby=")
        return {"group": {"groupby": groupby, "group": spec}}
    return {str(k): v for k, v in spec.items()}


def _with_counts(stats: Sequence[str]) -> list[str]:
    """``stats`` and ``n_cells`` (asked once, for ``obs["n_cells"]``)."""
    if isinstance(stats, str):
        raise TypeError(f"stats must be a list of names, not the string {stats!r}")
    return list(dict.fromkeys([*stats, "n_cells"]))
