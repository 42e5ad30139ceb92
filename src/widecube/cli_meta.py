"""The data-lake commands of the ``widecube`` command line: describe a dataset, search the
catalog, export a grouping's summary. :func:`register` adds them to :data:`widecube.cli.app`;
each calls a facade (:class:`~widecube.query.Widecube`, or the local client over it).

    widecube describe pbmc --set title="PBMC 3k" --set organism="Homo sapiens" --set tags=demo,blood
    widecube describe pbmc --set donors=6 --unset license        # unknown keys are free key/values
    widecube search "t cell" --organism "Homo sapiens" --tag demo
    widecube export pbmc@3f2a… --view summary --groupby cell_type -o pbmc.h5ad   # or .zarr, .parquet
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ._console import ME, err, out
from ._console import clean_errors as _clean_errors
from .catalog import FIELDS, LIST_FIELDS
from .config import Settings

__all__ = ["changes_from", "register"]

_VIEWS = ("summary",)


def register(app: typer.Typer) -> None:
    """Add the data-lake commands to the ``widecube`` app."""
    for command in (describe, search, export):
        app.command()(command)


def changes_from(assignments: list[str], removals: list[str]) -> dict[str, Any]:
    """``--set key=value`` and ``--unset key`` as a metadata merge patch: a field's name sets
    that field (list fields split on commas: ``tags=a,b``); ``extra.key`` or any other name is
    a free key/value; ``--unset`` removes either."""
    changes: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise typer.BadParameter(f"--set {item!r}: expected key=value")
        if key.startswith("extra."):
            extra[key.removeprefix("extra.")] = value
        elif key in FIELDS and key != "extra":
            changes[key] = [v.strip() for v in value.split(",")] if key in LIST_FIELDS else value
        else:
            extra[key] = value
    for key in removals:
        key = key.strip()
        if key.startswith("extra.") or key not in FIELDS:
            extra[key.removeprefix("extra.")] = None
        else:
            changes[key] = None
    if extra:
        changes["extra"] = extra
    return changes


@_clean_errors
def describe(
    dataset: Annotated[str, typer.Argument(help="dataset name")],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help=f"key=value, repeatable; fields: {', '.join(f for f in FIELDS if f != 'extra')} "
            f"({', '.join(LIST_FIELDS)}: comma-separated); any other key is a free key/value",
        ),
    ] = None,
    unset: Annotated[list[str] | None, typer.Option(help="a field or free key to remove; repeatable")] = None,
    meta: Annotated[
        Path | None, typer.Option(help="a YAML (or JSON) file of fields to set, as ingest --meta takes")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the metadata as JSON")] = False,
) -> None:
    """Show or change a dataset's metadata (title, description, organism, tissue, tags, ...)."""
    from .query import Widecube, read_metadata

    changes = read_metadata(meta, dataset) if meta is not None else {}
    changes.update(changes_from(set_ or [], unset or []))
    wc = Widecube(Settings())
    try:
        found = wc.describe(dataset, changes, actor=ME) if changes else wc.metadata(dataset, actor=ME)
    finally:
        wc.close()
    fields = found["metadata"]
    if as_json:
        print(json.dumps(fields, ensure_ascii=False, indent=2))
        return
    if not fields:
        out.print(f"{dataset}: no metadata (set some with --set key=value)", highlight=False)
    for key in FIELDS:
        value = fields.get(key)
        if isinstance(value, list):
            value = ", ".join(value)
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        if value:
            out.print(f"[bold]{key:>12}[/] {value}", highlight=False, soft_wrap=True)


@_clean_errors
def search(
    query: Annotated[str, typer.Argument(help="words to find (each a prefix), in any field")] = "",
    organism: Annotated[list[str] | None, typer.Option(help="keep this organism; repeatable (any)")] = None,
    tissue: Annotated[list[str] | None, typer.Option(help="keep this tissue; repeatable (any)")] = None,
    assay: Annotated[list[str] | None, typer.Option(help="keep this assay; repeatable (any)")] = None,
    disease: Annotated[list[str] | None, typer.Option(help="keep this disease; repeatable (any)")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="keep this tag; repeatable (any)")] = None,
) -> None:
    """Search live datasets by their metadata; prints the hits and the facet counts."""
    from .query import Widecube

    filters = {"organism": organism, "tissue": tissue, "assay": assay, "disease": disease, "tag": tag}
    wc = Widecube(Settings())
    try:
        found = wc.search(query, {k: v for k, v in filters.items() if v}, actor=ME)
    finally:
        wc.close()
    table = Table("dataset", "title", "organism", "tissue", "cells", "tags")
    for hit in found["datasets"]:
        m = hit["metadata"]
        table.add_row(
            hit["name"],
            m.get("title", ""),
            ", ".join(m.get("organism", [])),
            ", ".join(m.get("tissue", [])),
            f"{hit['n_cells']:,}" if hit["n_cells"] is not None else "",
            ", ".join(m.get("tags", [])),
        )
    out.print(table)
    for facet, counts in found["facets"].items():
        if counts:
            shown = ", ".join(f"{v} ({n})" for v, n in counts.items())
            out.print(f"[bold]{facet:>9}[/] {shown}", highlight=False, soft_wrap=True)


@_clean_errors
def export(
    target: Annotated[
        str,
        typer.Argument(metavar="DATASET[@VERSION]", help="dataset, and a version (default: the live one)"),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="the file to write: .h5ad, .zarr or .parquet")
    ],
    groupby: Annotated[str, typer.Option(help="a precomputed grouping (see `widecube datasets`)")],
    view: Annotated[str, typer.Option(help="what to export: summary (scanpy's pseudobulk)")] = "summary",
    layer: Annotated[
        str | None, typer.Option(help="raw or normalized; default: the dataset's (normalized for counts)")
    ] = None,
    force: Annotated[bool, typer.Option(help="replace OUTPUT if it exists")] = False,
) -> None:
    """Write a grouping's per-group view as the AnnData scanpy.get.aggregate returns
    (layers sum, mean, var, count_nonzero; obs the groups, var the genes)."""
    from .client import open as open_store
    from .client import write_pseudobulk

    if view not in _VIEWS:
        raise typer.BadParameter(f"--view {view!r}: views that export: {', '.join(_VIEWS)}")
    if output.exists() and not force:
        err.print(f"[bold red]error:[/] {output} exists (--force replaces it)", highlight=False)
        raise typer.Exit(1)
    dataset, _, version = target.partition("@")
    settings = Settings()
    with open_store(settings.storage, catalog_url=settings.catalog_url) as wc:
        wc.actor = ME
        adata = wc.pseudobulk(dataset, groupby, layer=layer, version=version or None)
    if output.exists():
        import shutil

        shutil.rmtree(output) if output.is_dir() else output.unlink()
    write_pseudobulk(adata, output)
    uns = adata.uns
    out.print(
        f"wrote {output} ({adata.n_obs:,} groups × {adata.n_vars:,} genes, layers "
        f"{', '.join(adata.layers)}) from {dataset} version {uns['version']}, layer {uns['layer']}",
        highlight=False,
        soft_wrap=True,
    )
