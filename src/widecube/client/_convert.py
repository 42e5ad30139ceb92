"""Answers → pandas and AnnData: the one set of conversions both faces of the client use.

:class:`~widecube.client.Client` (HTTP) receives Arrow IPC streams and JSON;
:func:`~widecube.open` (local) receives the read facade's dicts of numpy arrays. Each face
first brings its answer to the facade's shape (``*_result`` here turn an Arrow table back into
it), and then the same function makes the DataFrame or AnnData, so the two faces cannot
drift apart.

Per-group results become the pseudobulk AnnData that ``scanpy.get.aggregate`` returns:
groups as obs (with the groupby columns, as scanpy has them, and ``n_cells``, as the
snapshot's summary view has it), genes as var, no ``X``, one float64 layer per statistic
(NaN where a statistic is undefined, e.g. ``var`` of a one-cell group).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from typing import TypeAlias

    import anndata

    from ..query.results import Result

    Answer: TypeAlias = dict[str, Any] | Result
    """A query's answer read by key: a dict (from the API) or a query result (in process)."""

__all__ = [
    "ARROW",
    "COMPARE_COLUMNS",
    "MARKER_COLUMNS",
    "compare_frame",
    "datasets_frame",
    "expression_frame",
    "expression_result",
    "filter_spec",
    "genes_list",
    "markers_frame",
    "releases_frame",
    "pseudobulk",
    "read_ipc",
    "records",
    "summary_result",
    "violin_frame",
]

ARROW = "application/vnd.apache.arrow.stream"
"""The media type of an Arrow IPC stream (the API's ``Accept`` for Arrow answers)."""

DATASET_COLUMNS = ("name", "version", "n_cells", "n_genes", "groupbys", "created")
MARKER_COLUMNS = ("gene", "logfoldchange", "pct_in", "pct_out", "t", "pval", "pval_adj")
COMPARE_COLUMNS = ("t", "pval", "pval_adj", "logfoldchange", "mean_a", "mean_b", "pct_a", "pct_b")
"""Per gene of a comparison, after ``gene`` (:data:`widecube.query.compare.FIELDS`)."""
_SEPARATOR = "_"  # joins the values of a multi-column grouping into a group name (compute.groupings)


def read_ipc(content: bytes) -> pa.Table:
    """An Arrow IPC stream's bytes as one table."""
    return pa.ipc.open_stream(content).read_all()


def _meta(table: pa.Table) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}


def _dictionary(table: pa.Table, column: str) -> list[str]:
    """The dictionary (all values, in order) of a dictionary-encoded column."""
    chunks = table.column(column).chunks
    return [str(v) for v in chunks[0].dictionary.to_pylist()] if chunks else []


# -- Arrow tables back to the read facade's shapes -------------------------------------------


def records(table: pa.Table) -> list[dict[str, Any]]:
    """``/datasets`` (or ``/versions``) as the facade's list of records."""
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def genes_list(table: pa.Table) -> list[str]:
    """``/genes`` as a list of names."""
    return [str(g) for g in table.column("gene").to_pylist()]


def summary_result(table: pa.Table) -> dict[str, Any]:
    """``/summary`` or ``/aggregate`` (long, group-major) as the facade's dict:
    ``groups``, ``genes`` and ``values`` ``{stat: (n_groups, n_genes) float64}``, with NaN
    where the table has null."""
    meta = _meta(table)
    groups, genes = _dictionary(table, "group"), _dictionary(table, "gene")
    shape = (len(groups), len(genes))
    values = {
        name: table.column(name).to_numpy(zero_copy_only=False).astype(np.float64).reshape(shape)
        for name in table.column_names
        if name not in ("group", "gene")
    }
    result: dict[str, Any] = {
        "dataset": meta["dataset"],
        "version": meta["version"],
        "groupby": meta["groupby"],
        "layer": meta["layer"],
        "groups": groups,
        "genes": genes,
        "values": values,
    }
    if "cells" in meta:
        result["cells"] = int(meta["cells"])
    if "source" in meta:
        result["source"] = meta["source"]
    return result


def expression_result(table: pa.Table, genes: Sequence[str]) -> dict[str, Any]:
    """``/expression`` (the cells' ids in the column the metadata's ``cell_ids`` names, then
    one float32 column per gene) as the facade's dict."""
    meta = _meta(table)
    ids = meta.get("cell_ids")
    return {
        "dataset": meta["dataset"],
        "version": meta["version"],
        "layer": meta["layer"],
        "genes": list(genes),
        "cells": int(meta["cells"]),
        "values": {g: table.column(g).to_numpy() for g in dict.fromkeys(genes)},
        "cell_ids": None if ids is None else table.column(ids).to_numpy(zero_copy_only=False),
    }


# -- the facade's shapes to pandas and AnnData (both faces end here) ------------------------


def filter_spec(filter: Mapping[str, Iterable[str]] | None) -> dict[str, list[str]]:
    """A filter as the service reports it: columns sorted, each one's categories sorted, unique."""
    return {str(c): sorted(set(map(str, v))) for c, v in sorted((filter or {}).items())}


def datasets_frame(found: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per dataset, indexed by name: live version, sizes, groupbys, created (UTC)."""
    frame = pd.DataFrame.from_records(found, columns=list(DATASET_COLUMNS))
    frame["n_cells"] = frame["n_cells"].astype(np.int64)
    frame["n_genes"] = frame["n_genes"].astype(np.int64)
    frame["groupbys"] = [[str(g) for g in gs] for gs in frame["groupbys"]]
    frame["created"] = pd.to_datetime(frame["created"], utc=True)
    return frame.set_index("name")


RELEASE_COLUMNS = ("name", "created", "created_by", "note", "datasets")


def releases_frame(found: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per release, indexed by name, newest first: created (UTC), by whom, its note
    and ``datasets`` (``{dataset: version}``, the versions a ``release=`` read answers)."""
    frame = pd.DataFrame.from_records(
        [{c: r.get(c) for c in RELEASE_COLUMNS} for r in found], columns=list(RELEASE_COLUMNS)
    )
    frame["created"] = pd.to_datetime(frame["created"], utc=True)
    frame["datasets"] = [{str(d): str(v) for d, v in dict(m).items()} for m in frame["datasets"]]
    return frame.set_index("name")


def pseudobulk(result: Answer, stats: Sequence[str]) -> anndata.AnnData:
    """A ``/summary`` or ``/aggregate`` answer as AnnData: groups × genes, a layer per stat.

    ``result["values"]`` must hold ``n_cells`` (it becomes ``obs["n_cells"]``, an int64) and
    every stat of ``stats`` (each becomes a float64 layer). ``uns`` names the dataset, the
    version that answered, the groupby and the layer (and, for ``/aggregate``, the kept
    ``cells``, the ``filter`` and the ``source``), so a result says where it came from.
    """
    import anndata  # a second's import, paid only by the calls that build one

    groups = [str(g) for g in result["groups"]]
    genes = [str(g) for g in result["genes"]]
    shape = (len(groups), len(genes))
    values = {
        s: np.asarray(result["values"][s], dtype=np.float64).reshape(shape) for s in (*stats, "n_cells")
    }
    obs = _group_columns(result["groupby"], groups)
    counts = values["n_cells"][:, 0] if genes else np.zeros(len(groups))
    obs["n_cells"] = counts.astype(np.int64)
    uns = {k: result[k] for k in ("dataset", "version", "groupby", "layer", "cells", "source") if k in result}
    if "cells" in result:
        uns["cells"] = int(result["cells"])
    return anndata.AnnData(
        obs=obs, var=pd.DataFrame(index=pd.Index(genes)), layers={s: values[s] for s in stats}, uns=uns
    )


def _group_columns(groupby: str, groups: list[str]) -> pd.DataFrame:
    """Obs of the groups, indexed by name, with one categorical column per groupby column
    (as ``scanpy.get.aggregate`` has). A combination's name joins its values with ``_``; when
    a value has ``_`` in it the split is ambiguous, and the columns are left out."""
    columns = groupby.split(",")
    parts = [g.split(_SEPARATOR) if len(columns) > 1 else [g] for g in groups]
    obs = pd.DataFrame(index=pd.Index(groups))
    if all(len(p) == len(columns) for p in parts):
        for i, column in enumerate(columns):
            values = [p[i] for p in parts]
            obs[column] = pd.Categorical(values, categories=list(dict.fromkeys(values)))
    return obs


def expression_frame(result: Answer) -> pd.DataFrame:
    """Per-cell values: one float32 column per gene, one row per kept cell (obs order),
    indexed by the cells' ids (obs names; 0…cells-1 when the answer has none).

    ``attrs`` names the dataset, version, layer and the number of kept cells.
    """
    genes = list(dict.fromkeys(str(g) for g in result["genes"]))
    ids = result.get("cell_ids")
    index = pd.RangeIndex(int(result["cells"])) if ids is None else pd.Index(np.asarray(ids, dtype=object))
    frame = pd.DataFrame(
        {g: np.asarray(result["values"][g], dtype=np.float32) for g in genes},
        index=index,
        columns=genes,
    )
    frame.attrs.update({k: result[k] for k in ("dataset", "version", "layer")}, cells=int(result["cells"]))
    return frame


def markers_frame(result: Answer) -> pd.DataFrame:
    """Markers, best first: ``gene``, ``logfoldchange``, ``pct_in``, ``pct_out``, ``t``,
    ``pval``, ``pval_adj`` (float64, NaN where undefined); of every group (``result["group"]``
    None), a ``group`` column first, categorical in the grouping's order. ``attrs`` names the
    dataset, version, groupby, group and layer."""
    every = result["group"] is None
    columns = ["group", *MARKER_COLUMNS] if every else list(MARKER_COLUMNS)
    frame = pd.DataFrame.from_records(result["markers"], columns=columns)
    numeric = list(MARKER_COLUMNS[1:])
    frame[numeric] = frame[numeric].astype(np.float64)
    frame["gene"] = frame["gene"].astype(str)
    if every:
        frame["group"] = pd.Categorical(
            frame["group"].astype(str), categories=list(dict.fromkeys(frame["group"]))
        )
    frame.attrs.update({k: result[k] for k in ("dataset", "version", "groupby", "group", "layer")})
    return frame


def compare_frame(result: Answer) -> pd.DataFrame:
    """A comparison, one row per gene in the answer's order: ``gene`` and
    :data:`COMPARE_COLUMNS` (float64, NaN where undefined). ``attrs`` names the dataset,
    version, layer, sets ``a`` and ``b`` (with their ``cells``), ``genes_tested`` and ``rank``."""
    frame = pd.DataFrame.from_records(result["results"], columns=["gene", *COMPARE_COLUMNS])
    frame[list(COMPARE_COLUMNS)] = frame[list(COMPARE_COLUMNS)].astype(np.float64)
    frame["gene"] = frame["gene"].astype(str)
    keys = ("dataset", "version", "layer", "a", "b", "genes_tested", "rank")
    frame.attrs.update({k: _plain(result[k]) for k in keys})
    return frame


def violin_frame(result: Answer) -> pd.DataFrame:
    """Violins as one row per (gene, group, bin): ``gene``, ``group`` (categorical, in the
    answer's order), ``lo``, ``hi`` (float64) and ``count`` (int64). Each (gene, group) starts
    with its exact zeros (``lo == hi == 0``: the group's cells less its non-zero values), then
    one row per histogram bin of the non-zero values (none when no kept cell expresses the
    gene). ``attrs`` names the dataset, version, groupby, layer, kept ``cells`` and ``filter``."""
    groups = [str(g) for g in result["groups"]]
    n_cells = np.asarray(result["n_cells"], dtype=np.int64)
    parts: list[pd.DataFrame] = []
    for violin in result["violins"]:
        edges = np.asarray([] if violin["edges"] is None else violin["edges"], dtype=np.float64)
        bins = max(len(edges) - 1, 0)
        counts = np.asarray(violin["counts"], dtype=np.int64).reshape(len(groups), -1)[:, :bins]
        zeros = n_cells - np.asarray(violin["nnz"], dtype=np.int64)
        lo = np.concatenate([[0.0], edges[:-1]]) if bins else np.zeros(1)
        hi = np.concatenate([[0.0], edges[1:]]) if bins else np.zeros(1)
        parts.append(
            pd.DataFrame(
                {
                    "gene": str(violin["gene"]),
                    "group": np.repeat(groups, bins + 1),
                    "lo": np.tile(lo, len(groups)),
                    "hi": np.tile(hi, len(groups)),
                    "count": np.column_stack([zeros, counts]).reshape(-1),
                }
            )
        )
    frame = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({"gene": [], "group": [], "lo": [], "hi": [], "count": []})
    )
    frame["gene"] = frame["gene"].astype(str)
    frame["group"] = pd.Categorical(frame["group"], categories=groups)
    frame["count"] = frame["count"].astype(np.int64)
    keys = ("dataset", "version", "groupby", "layer", "cells", "filter")
    frame.attrs.update({k: _plain(result[k]) for k in keys})
    return frame


def _plain(value: Any) -> Any:
    """An answer's value as JSON would carry it (a local answer's numpy numbers, tuples and
    arrays as Python's), so that both faces' ``attrs`` are equal."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value
