"""The 10x MTX reader: a folder with ``matrix.mtx[.gz]``, ``barcodes.tsv[.gz]`` and
``features.tsv[.gz]`` (or the legacy ``genes.tsv``), as Cell Ranger and GEO ship them.

The folder is recognised by its MatrixMarket banner and the 10x file set, with or without a
common prefix (``GSM123_matrix.mtx.gz``). Gene names are column 2 of the features file,
ids (column 1) and feature types (column 3) are kept in var. The matrix is genes × cells as
10x writes it, or cells × genes when its dimensions say so.

The entries are parsed once, at open, by a numba scanner on two cores (:mod:`._mtxstream`,
:mod:`._mtxscan`; gzip inflated by ISA-L in a thread of its own) and stored as a binary CSR
in the work folder (:mod:`._csrspill`), checking each index, value and the entry count on the
way. Entries sorted by cell (Cell Ranger, R's ``writeMM``, scipy from CSC)
are written straight through; other orders go through an external bucket sort.

    >>> with MtxSource(Path("filtered_feature_bc_matrix")) as src: ...   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pv

from ....errors import InvalidValue, UnreadableInput
from ..._checks import check_shape, check_unique, unique_gene_names
from ..._readers import ReaderSpec, register_reader
from ..._sniff import arrow_stream, head, open_binary
from ..._source import Block, MatrixSource
from ..._workdir import scratch_folder
from ._csrspill import CsrSpill, SpilledCsr, TripletBuckets
from ._mtxscan import INTEGER, PATTERN, REAL
from ._mtxstream import Entries, iter_entries, line_of

__all__ = ["MtxSource"]

_MATRIX = re.compile(r"^(.*)matrix\.mtx(\.gz)?$")
_FIELDS = {
    "integer": (INTEGER, np.int32),
    "real": (REAL, np.float64),
    "double": (REAL, np.float64),
    "pattern": (PATTERN, np.int32),
}


@dataclass(frozen=True)
class _Layout:
    matrix: Path
    barcodes: Path
    features: Path


def _first(folder: Path, names: list[str]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _layout(path: Path) -> _Layout | None:
    """The three files of a 10x MTX set at ``path`` (a folder, or its matrix file)."""
    if path.is_dir():
        folder, matrices = path, [p for p in path.iterdir() if _MATRIX.match(p.name) and p.is_file()]
    elif path.is_file() and _MATRIX.match(path.name):
        folder, matrices = path.parent, [path]
    else:
        return None
    if len(matrices) != 1:
        return None
    match = _MATRIX.match(matrices[0].name)
    prefix = match[1] if match else ""
    barcodes = _first(folder, [f"{prefix}barcodes.tsv.gz", f"{prefix}barcodes.tsv"])
    features = _first(folder, [f"{prefix}{n}.tsv{z}" for n in ("features", "genes") for z in (".gz", "")])
    if barcodes is None or features is None:
        return None
    return _Layout(matrices[0], barcodes, features)


def _sniff(path: Path) -> bool:
    layout = _layout(path)
    return layout is not None and head(layout.matrix, 14).lower() == b"%%matrixmarket"


class _Unsorted(Exception):
    """Entries are not sorted by cell: parse again into buckets."""


def _read_tsv(path: Path) -> pd.DataFrame:
    """A headerless TSV of strings (barcodes, features), every column kept as text."""
    try:
        with arrow_stream(path) as stream:
            table = pv.read_csv(
                stream,
                read_options=pv.ReadOptions(autogenerate_column_names=True),
                parse_options=pv.ParseOptions(delimiter="\t", quote_char=False),
                convert_options=pv.ConvertOptions(
                    strings_can_be_null=False, column_types={f"f{i}": pa.string() for i in range(8)}
                ),
            )
    except (pa.ArrowException, OSError, EOFError) as exc:
        raise UnreadableInput(f"{path}: cannot read ({exc})") from exc
    return table.to_pandas().astype(str)


def _column(frame: pd.DataFrame, i: int) -> pd.Index:
    return pd.Index(frame.iloc[:, i].to_numpy() if frame.shape[1] > i else [], dtype=object)


class MtxSource(MatrixSource):
    """An opened 10x MTX set; the matrix is parsed and spilled to ``workdir`` at open."""

    format = "mtx"

    def __init__(
        self, path: Path, *, layer: str | None = None, workdir: Path | None = None, block_nnz: int = 8_000_000
    ) -> None:
        super().__init__(path)
        if layer not in (None, "counts"):
            raise UnreadableInput(f"{path}: an MTX matrix has no layers (asked for {layer!r})")
        layout = _layout(path)
        if layout is None:
            raise UnreadableInput(
                f"{path}: not a 10x MTX folder (matrix.mtx[.gz], "
                "barcodes.tsv[.gz] and features.tsv[.gz] or genes.tsv)"
            )
        self._layout = layout
        self._obs, self._var = self._read_names()
        field, n_rows, n_cols, self._nnz, self._header_lines = self._header()
        n_cells, n_genes = len(self._obs), len(self._var)
        if (n_rows, n_cols) == (n_genes, n_cells):
            self._cell_column = 1
        elif (n_rows, n_cols) == (n_cells, n_genes):
            self._cell_column = 0
        else:
            raise UnreadableInput(
                f"{layout.matrix}: matrix is {n_rows} × {n_cols} but {layout.features.name} lists "
                f"{n_genes} genes and {layout.barcodes.name} {n_cells} barcodes"
            )
        self._field = field
        self._dtype = np.dtype(_FIELDS[field][1])
        self._scratch = scratch_folder(workdir, "mtx")
        try:
            self._stored = self._parse(block_nnz)
        except BaseException:
            self._scratch.cleanup()
            raise

    def _read_names(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        lay = self._layout
        barcodes = _read_tsv(lay.barcodes)
        features = _read_tsv(lay.features)
        obs_names = _column(barcodes, 0)
        check_unique(obs_names, where=lay.barcodes, what="barcode", place=lambda i: f"line {i + 1}")
        ids = _column(features, 0)
        symbols = _column(features, 1) if features.shape[1] > 1 else ids
        names = unique_gene_names(symbols, ids, where=lay.features, place=lambda i: f"line {i + 1}")
        var = pd.DataFrame({"gene_ids": ids.to_numpy()}, index=names)
        var["feature_types"] = features.iloc[:, 2].to_numpy() if features.shape[1] > 2 else "Gene Expression"
        check_shape(lay.matrix, len(obs_names), len(var))
        return pd.DataFrame(index=obs_names), var

    def _header(self) -> tuple[str, int, int, int, int]:
        where = self._layout.matrix
        try:
            with open_binary(where) as fh:
                banner = fh.readline(4096).decode("ascii", "replace").lower().split()
                lines, size = 1, ""
                while not size:
                    raw = fh.readline(4096)
                    if not raw:
                        break
                    lines += 1
                    text = raw.decode("ascii", "replace").strip()
                    size = "" if text.startswith("%") else text
        except (OSError, EOFError) as exc:
            raise UnreadableInput(f"{where}: cannot read ({exc})") from exc
        if banner[:3] != ["%%matrixmarket", "matrix", "coordinate"] or len(banner) < 5:
            raise UnreadableInput(f"{where}: line 1: not a MatrixMarket coordinate matrix banner")
        if banner[3] not in _FIELDS or banner[4] != "general":
            raise UnreadableInput(
                f"{where}: line 1: {banner[3]} {banner[4]} matrices are not "
                "supported (integer, real or pattern; general)"
            )
        parts = size.split()
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise UnreadableInput(f"{where}: line {lines}: expected 'rows columns entries', got {size!r}")
        return banner[3], int(parts[0]), int(parts[1]), int(parts[2]), lines

    def _parse(self, block_nnz: int) -> SpilledCsr:
        try:
            return self._parse_sorted()
        except _Unsorted:
            return self._parse_buckets(block_nnz)

    def _entries(self) -> Iterator[Entries]:
        """Every entry in file order, each index, value and the entry count checked."""
        where, seen = self._layout.matrix, 0
        cells, genes = len(self._obs), len(self._var)
        n_rows, n_cols = (genes, cells) if self._cell_column else (cells, genes)
        batches = iter_entries(
            where,
            kind=_FIELDS[self._field][0],
            skip_lines=self._header_lines,
            cell_is_column=self._cell_column == 1,
            n_rows=n_rows,
            n_cols=n_cols,
        )
        last = self._header_lines
        with contextlib.closing(batches):  # its scanning threads stop here, not when collected
            for batch in batches:
                values = batch.values
                if values.dtype.kind == "f" and not np.isfinite(values).all():
                    k = int(np.argmin(np.isfinite(values)))
                    what = "NaN" if np.isnan(values[k]) else "infinite value"
                    cell, gene = self._obs.index[batch.cells[k]], self._var.index[batch.genes[k]]
                    raise InvalidValue(
                        f"{where}: {what} found at line {line_of(where, batch, k)} "
                        f"(cell {cell!r}, gene {gene!r})"
                    )
                seen += len(values)
                if seen > self._nnz:
                    k = len(values) - (seen - self._nnz)
                    raise UnreadableInput(
                        f"{where}: more entries than the {self._nnz} the header declares "
                        f"(line {line_of(where, batch, k)})"
                    )
                last = batch.first_line + batch.lines - 1
                yield batch
        if seen != self._nnz:
            raise UnreadableInput(
                f"{where}: file truncated: the header declares {self._nnz} entries, "
                f"found {seen} (last line read: {last})"
            )

    def _parse_sorted(self) -> SpilledCsr:
        spill = CsrSpill(self._scratch / "csr", n_cols=len(self._var), dtype=self._dtype)
        counts = np.zeros(len(self._obs), dtype=np.int64)
        last = 0
        try:
            for batch in self._entries():
                cells = batch.cells
                if len(cells) == 0:
                    continue
                if not batch.ordered or cells[0] < last or batch.counts is None:
                    raise _Unsorted
                lo, hi = int(cells[0]), int(cells[-1])
                counts[lo : hi + 1] += batch.counts
                spill.append_entries(np.zeros(0), batch.genes, batch.values)
                last = hi
        except BaseException:
            spill.abort()
            raise
        return spill.finish(counts)

    def _parse_buckets(self, block_nnz: int) -> SpilledCsr:
        buckets = TripletBuckets(
            self._scratch / "buckets",
            n_rows=len(self._obs),
            nnz=self._nnz,
            bucket_nnz=block_nnz,
            dtype=self._dtype,
        )
        try:
            for batch in self._entries():
                buckets.add(batch.cells, batch.genes, batch.values)
        except BaseException:
            buckets.abort()
            raise
        spill = CsrSpill(self._scratch / "sorted", n_cols=len(self._var), dtype=self._dtype)
        return buckets.drain_into(spill)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self._obs), len(self._var)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def nnz_hint(self) -> int | None:
        return self._stored.nnz

    def obs(self) -> pd.DataFrame:
        return self._obs.copy()

    def var(self) -> pd.DataFrame:
        return self._var.copy()

    def iter_blocks(self, *, block_nnz: int, columns: tuple[int, int] | None = None) -> Iterator[Block]:
        yield from self._stored.iter_blocks(block_nnz=block_nnz, where=self._layout.matrix)

    def close(self) -> None:
        self._scratch.cleanup()


register_reader(ReaderSpec("mtx", _sniff, MtxSource))
