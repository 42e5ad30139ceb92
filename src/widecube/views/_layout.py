"""Where each view stores a grouping's arrays, and how views open them back.

Views of the ``input`` layer (the values as given) live at ``views/<view>/<groupby>.zarr``
(the path issue 2 promised for the summary); other layers add the layer name:
``views/<view>/<groupby>.<layer>.zarr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import zarr

from ..compute import Grouping
from ..errors import InvalidQuery
from ..snapshot import Snapshot, SnapshotWriter
from ._layers import INPUT
from ._spec import BuildContext

__all__ = ["create_grouped", "entry_for", "group_table", "layer_entry", "relpath"]


def relpath(view: str, groupby: str, layer: str, ext: str = "zarr") -> str:
    suffix = "" if layer == INPUT else f".{layer}"
    return f"views/{view}/{groupby}{suffix}.{ext}"


def create_grouped(
    out: SnapshotWriter,
    ctx: BuildContext,
    path: str,
    grouping: Grouping,
    layers: Mapping[str, type],
    *,
    uns: dict[str, object],
) -> dict[str, zarr.Array[Any]]:
    """An AnnData skeleton (obs = groups with n_cells, var = genes) plus empty layers, its
    metadata consolidated: the arrays the view fills, by layer name."""
    obs = grouping.table.copy()
    obs.index = obs.index.astype(str)
    genes = pd.DataFrame(index=pd.Index(ctx.var.index.astype(str)))
    import anndata  # on first use: the facades' import stays light for the CLI

    adata = anndata.AnnData(obs=obs, var=genes, uns=uns)
    return out.write_anndata(path, adata, layers=layers, chunk_cols=ctx.chunk_width)


def layer_entry(snap: Snapshot, entry: dict[str, Any], layer: str) -> Any:
    """What a view's manifest ``entry`` holds for ``layer``, or a 422 naming the layers there are."""
    layers = entry["layers"]
    if layer not in layers:
        raise InvalidQuery(f"dataset {snap.dataset!r} has no layer {layer!r}; available: {', '.join(layers)}")
    return layers[layer]


def entry_for(snap: Snapshot, entry: dict[str, Any], groupby: str, layer: str) -> Any:
    """What a view's manifest ``entry`` holds for one (groupby, layer) (a dict of paths, or a
    path), or a 422 naming what is missing."""
    groupbys = layer_entry(snap, entry, layer)
    if groupby not in groupbys:
        raise InvalidQuery(
            f"dataset {snap.dataset!r} has no groupby {groupby!r}; available: {', '.join(groupbys)}"
        )
    return groupbys[groupby]


@dataclass(frozen=True, slots=True)
class GroupTableKey:
    """The snapshot memo's key for the groups table stored at ``path``."""

    path: str


def group_table(snap: Snapshot, path: str) -> pd.DataFrame:
    """The obs (groups) table of a grouped AnnData view, read once per snapshot."""
    import anndata

    read = lambda: anndata.io.read_elem(snap.group(path)["obs"])  # noqa: E731
    frame: pd.DataFrame = snap.memo(GroupTableKey(path), read)
    return frame
