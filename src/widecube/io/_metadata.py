"""Cell and gene metadata files (``--obs`` / ``--var``) joined onto a matrix by id.

A metadata file is CSV, TSV (plain or gzip) or Parquet, recognised by content; its first
column (or, in Parquet written by pandas, its index) holds the cell id or gene name. The
join follows the seed pipeline's join of matrix and metadata:

* every matrix cell must have a metadata row, otherwise the error lists the first few
  missing ids; with ``allow_missing`` they get ``"unknown"`` (NaN in numeric columns);
* metadata rows for cells not in the matrix are reported (logged) and ignored;
* metadata columns replace same-named columns read from the matrix file;
* string columns with few distinct values (at most ``max_categories`` and fewer than
  half the rows) become categoricals, so ``--groupby`` and the default groupings use them.

Genes are matched on the var index (gene names), or on ``gene_ids`` when the metadata's
ids match those better (a table keyed by Ensembl id).

    >>> obs = join_metadata(src.obs(), read_table(Path("cells.csv")), file=Path("cells.csv"),
    ...                     what="cell")                                # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq

from ..errors import InputNotFound, MetadataMismatch, UnreadableInput
from ._checks import check_unique, logger
from ._sniff import PARQUET_MAGIC, arrow_stream, first_line, head

__all__ = ["categorize", "join_metadata", "read_table"]

UNKNOWN = "unknown"
_SHOW = 5


def read_table(path: Path) -> pd.DataFrame:
    """A metadata table indexed by its id column (strings), other columns as pandas types."""
    if not path.is_file():
        raise InputNotFound(f"{path}: no such metadata file")
    try:
        if head(path, 4) == PARQUET_MAGIC:
            table = pq.read_table(path)
            meta = json.loads((table.schema.metadata or {}).get(b"pandas", b"{}"))
            index = [c for c in meta.get("index_columns", []) if isinstance(c, str)]
            frame = table.to_pandas(ignore_metadata=True)
            key = index[0] if index else frame.columns[0]
            place = "row {}"
        else:
            header = first_line(path).decode("utf-8-sig")
            delimiter = "\t" if "\t" in header else ","
            with arrow_stream(path) as stream:
                table = pv.read_csv(
                    stream,
                    parse_options=pv.ParseOptions(delimiter=delimiter),
                    convert_options=pv.ConvertOptions(strings_can_be_null=True),
                )
            if table.num_columns:
                table = table.set_column(0, table.schema.names[0], table.column(0).cast(pa.string()))
            frame = table.to_pandas()
            key = frame.columns[0] if len(frame.columns) else None
            place = "line {}"
    except (pa.ArrowException, OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise UnreadableInput(f"{path}: not a readable CSV, TSV or Parquet table ({exc})") from exc
    if key is None or len(frame.columns) == 0:
        raise UnreadableInput(f"{path}: the table has no id column")
    ids = frame.pop(key).astype(str).to_numpy(dtype=object)
    offset = 1 if place == "row {}" else 2  # rows and lines count from 1; line 1 is the header
    check_unique(ids, where=path, what="id", place=lambda i: place.format(i + offset))
    frame.index = pd.Index(ids, dtype=object)
    return frame


def categorize(frame: pd.DataFrame, *, max_categories: int = 10_000) -> pd.DataFrame:
    """String columns with few distinct values as categoricals (in place; returned)."""
    n = len(frame)
    for column in frame.columns:
        series = frame[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            continue
        if not (pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype)):
            continue
        if pd.api.types.infer_dtype(series, skipna=True) != "string":
            continue
        distinct = series.nunique(dropna=True)
        if 0 < distinct <= max_categories and distinct < n / 2:
            frame[column] = pd.Categorical(series.astype(object))
    return frame


def _first(ids: pd.Index) -> str:
    shown = ", ".join(repr(str(i)) for i in ids[:_SHOW])
    return shown + (f", … ({len(ids)} in all)" if len(ids) > _SHOW else "")


def _key(base: pd.DataFrame, meta: pd.DataFrame, what: str) -> pd.Index:
    """The matrix ids the metadata is keyed by: the index, or (genes) ``gene_ids``."""
    if what == "gene" and "gene_ids" in base.columns:
        ids = pd.Index(base["gene_ids"].astype(str))
        if ids.is_unique and ids.isin(meta.index).sum() > base.index.isin(meta.index).sum():
            return ids
    return pd.Index(base.index.astype(str))


def join_metadata(
    base: pd.DataFrame,
    meta: pd.DataFrame,
    *,
    file: Path,
    what: str,
    allow_missing: bool = False,
    max_categories: int = 10_000,
) -> pd.DataFrame:
    """``base`` (obs or var of the matrix) with ``meta``'s columns joined on id."""
    keys = _key(base, meta, what)
    missing = keys[~keys.isin(meta.index)]
    if len(missing) and not allow_missing:
        raise MetadataMismatch(
            f"{file}: {len(missing)} of {len(keys)} {what}s in the matrix have no metadata row "
            f"(first: {_first(missing)}); fix the file or pass --allow-missing-metadata"
        )
    extra = meta.index[~meta.index.isin(keys)]
    if len(extra):
        logger.warning(
            "%s: %d metadata rows name %ss that are not in the matrix (first: %s); ignored",
            file,
            len(extra),
            what,
            _first(extra),
        )
    aligned = meta.reindex(keys)
    if len(missing):
        for column in aligned.columns:
            dtype = meta[column].dtype
            if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
                aligned[column] = aligned[column].astype(object).where(keys.isin(meta.index), UNKNOWN)
        logger.warning(
            "%s: %d %ss have no metadata row (first: %s); filled with %r",
            file,
            len(missing),
            what,
            _first(missing),
            UNKNOWN,
        )
    aligned.index = base.index
    categorize(aligned, max_categories=max_categories)
    out = base.drop(columns=[c for c in aligned.columns if c in base.columns])
    return pd.concat([out, aligned], axis=1)
