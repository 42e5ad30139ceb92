"""Arrow tables for the data responses (sent as an Arrow IPC stream, one record batch).

Layouts (schema metadata carries ``dataset``, ``version`` and the query's names):

* ``/summary``: long format, one row per (group, gene), group-major (all genes of the first
  group, then the next group): ``group`` and ``gene`` as dictionary<int32, utf8>, then one
  float64 column per requested stat, null where undefined. Metadata: ``groupby``, ``layer``.
* ``/embedding/{key}``: one row per cell in obs order: ``x``, ``y`` (``z``, then ``dim3``…)
  float32, and when a colour was asked a ``color`` column: dictionary<int, utf8> for a
  categorical obs column (null where missing), float32 for a numeric column or a gene.
  Metadata: ``key``, ``color`` (its name) and ``color_kind`` (category, numeric, gene).
* ``/aggregate``: the layout of ``/summary``; metadata adds ``source`` (precomputed or
  computed) and ``cells`` (how many the filter keeps).
* ``/expression``: one row per kept cell in obs order: the cells' ids (obs index, utf8) in a
  first column, named by the metadata's ``cell_ids`` (``cell_id``, or ``cell_id_``… when a
  gene has that name; no such column or key with ``cell_ids: false``), then one float32
  column per gene. Metadata: ``layer``, ``cells``, ``cell_ids``.
* ``/genes``: one utf8 column ``gene``. ``/datasets`` and ``/versions``: one row per record.

    >>> pa.ipc.open_stream(response.content).read_all().to_pandas()   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..query import Aggregate, CategoryColor, Embedding, Expression, Result, Summary

__all__ = ["embedding_table", "expression_table", "genes_table", "records_table", "summary_table"]

_AXES = ("x", "y", "z")


def _meta(**fields: object) -> dict[bytes, bytes]:
    return {k.encode(): str(v).encode() for k, v in fields.items() if v is not None}


def summary_table(result: Summary | Aggregate) -> pa.Table:
    """The summary (``{stat: (n_groups, n_genes)}``) in long, group-major format."""
    groups, genes = list(result["groups"]), list(result["genes"])
    n_groups, n_genes = len(groups), len(genes)
    columns: dict[str, pa.Array] = {
        "group": pa.DictionaryArray.from_arrays(
            np.repeat(np.arange(n_groups, dtype=np.int32), n_genes), pa.array(groups, pa.string())
        ),
        "gene": pa.DictionaryArray.from_arrays(
            np.tile(np.arange(n_genes, dtype=np.int32), n_groups), pa.array(genes, pa.string())
        ),
    }
    for stat, values in result["values"].items():
        flat = np.asarray(values, dtype=np.float64).reshape(-1)
        columns[stat] = pa.array(flat, type=pa.float64(), from_pandas=True)  # NaN → null
    meta = _meta(
        dataset=result["dataset"],
        version=result["version"],
        groupby=result["groupby"],
        layer=result.get("layer"),
        source=result.get("source"),
        cells=result.get("cells"),
    )
    return pa.table(columns).replace_schema_metadata(meta)


def expression_table(result: Expression) -> pa.Table:
    """Per-cell values: the kept cells' ids (when asked), then one float32 column per gene,
    one row per kept cell."""
    columns: dict[str, pa.Array] = {}
    ids = result["cell_ids"]
    id_column = None
    if ids is not None:
        id_column = "cell_id"
        while id_column in result["values"]:  # a gene may be called cell_id: the ids give way
            id_column += "_"
        columns[id_column] = pa.array(ids, type=pa.string())
    for g, v in result["values"].items():
        columns[g] = pa.array(np.asarray(v, np.float32), type=pa.float32())
    table = pa.table(columns) if columns else pa.table({})
    meta = _meta(
        dataset=result["dataset"],
        version=result["version"],
        layer=result["layer"],
        cells=result["cells"],
        cell_ids=id_column,
    )
    return table.replace_schema_metadata(meta)


def embedding_table(result: Embedding) -> pa.Table:
    """Coordinates (one column per dimension) and the optional colour column."""
    columns: dict[str, pa.Array] = {}
    for i, values in enumerate(result["coordinates"]):
        columns[_AXES[i] if i < len(_AXES) else f"dim{i}"] = pa.array(values, type=pa.float32())
    color = result["color"]
    if color is not None:
        if isinstance(color, CategoryColor):
            codes = np.asarray(color.codes)
            columns["color"] = pa.DictionaryArray.from_arrays(
                pa.array(codes, mask=codes < 0), pa.array(color.categories, pa.string())
            )
        else:
            columns["color"] = pa.array(np.asarray(color.values, np.float32), type=pa.float32())
    meta = _meta(
        dataset=result["dataset"],
        version=result["version"],
        key=result["key"],
        color=color and color.name,
        color_kind=color and color.kind,
    )
    return pa.table(columns).replace_schema_metadata(meta)


def genes_table(genes: list[str], *, dataset: str, version: str) -> pa.Table:
    """Gene names, one per row."""
    table = pa.table({"gene": pa.array(genes, pa.string())})
    return table.replace_schema_metadata(_meta(dataset=dataset, version=version))


def records_table(records: Sequence[dict[str, Any] | Result]) -> pa.Table:
    """A list of flat records (datasets, versions: dicts or query results) as a table, one row each."""
    return pa.Table.from_pylist([dict(r.items()) for r in records])
