"""Dense CSV and TSV readers (plain or gzip): cells as rows, genes as columns, id first.

A file is recognised by content: a header line with at least three fields separated by
commas (``csv``) or tabs (``tsv``), and a first data row whose fields after the id parse
as numbers. A two-column file is a list rather than a matrix and is not detected (name it
with ``--format csv``).

The text is read once, at open: the (gzip) byte stream is scanned row by row into CSR by a
numba kernel on two cores (:mod:`._widetext`, :mod:`._csvscan`; values as float32, so
integer counts up to 2^24 are exact), and the CSR is spilled to the work folder
(:mod:`._csrspill`): the cell count and ids are only known at the end of the file, and the
pipeline needs them before the first block. Bad input is refused with the line and field:
empty fields (``Null value found at cell c2, gene Gene1``), NaN/inf, non-numeric tokens,
ragged rows, duplicate ids or gene names, and a file with no cells. Cell ids may be
double-quoted (as R's ``write.csv`` writes them); numeric fields may not.

    >>> with DelimitedSource(Path("counts.csv.gz")) as src:            # doctest: +SKIP
    ...     src.shape
    (20000, 50000)
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ....errors import UnreadableInput
from ..._checks import check_shape, check_unique
from ..._readers import ReaderSpec, register_reader
from ..._sniff import GZIP_MAGIC, PARQUET_MAGIC, first_line, head
from ..._source import Block, MatrixSource
from ..._workdir import scratch_folder
from ._csrspill import CsrSpill, SpilledCsr
from ._widetext import CHUNK_BYTES, scan_into

__all__ = ["CsvSource", "DelimitedSource", "TsvSource"]

_SNIFF_BYTES = (1 << 20, 16 << 20)


def _sniff_delimiter(path: Path) -> str | None:
    """The delimiter of a dense numeric matrix file at ``path``, or None if it is not one."""
    if not path.is_file():
        return None
    stat = path.stat()
    return _sniff_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sniff_cached(name: str, _size: int, _mtime: int) -> str | None:
    """The sniff proper, cached per file version: the csv and tsv readers both ask."""
    path = Path(name)
    for limit in _SNIFF_BYTES:
        data = head(path, limit)
        if data.count(b"\n") >= 2 or len(data) < limit:
            break
    if not data or data[:4] == PARQUET_MAGIC or data[:2] == GZIP_MAGIC or data.startswith(b"%%"):
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    lines = text.split("\n")
    delimiter = "\t" if "\t" in lines[0] else "," if "," in lines[0] else None
    if delimiter is None or "\x00" in text or len(lines[0].split(delimiter)) < 3:
        return None
    complete = lines[:2] if (len(lines) > 2 or len(data) < limit) else lines[:1]
    if len(complete) < 2 or not complete[1].strip():
        return delimiter  # a header alone: an empty matrix, refused at open with that reason
    fields = next(csv.reader([complete[1].rstrip("\r")], delimiter=delimiter), [])
    return delimiter if len(fields) > 1 and all(_number(f) for f in fields[1:]) else None


def _number(field: str) -> bool:
    """True for a numeric field (or an empty one: a null, refused at open with its place)."""
    try:
        float(field or "0")
    except ValueError:
        return False
    return True


class DelimitedSource(MatrixSource):
    """A dense delimited text matrix, parsed and spilled to ``workdir`` at open."""

    format = "delimited"
    delimiter = ","

    def __init__(
        self,
        path: Path,
        *,
        layer: str | None = None,
        workdir: Path | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        super().__init__(path)
        if layer not in (None, "counts"):
            raise UnreadableInput(f"{path}: a {self.format.upper()} file has no layers (asked for {layer!r})")
        try:
            header = first_line(path).decode("utf-8-sig")
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise UnreadableInput(f"{path}: cannot read the header line ({exc})") from exc
        names = next(csv.reader([header], delimiter=self.delimiter), [])
        genes = [n.strip() for n in names[1:]]
        if not genes:
            raise UnreadableInput(f"{path}: empty matrix: the header (line 1) names no gene columns")
        check_unique(genes, where=path, what="gene name", place=lambda i: f"line 1, field {i + 2}")
        self._genes = pd.Index(genes, dtype=object)
        self._scratch = scratch_folder(workdir, self.format)
        try:
            self._stored, self._cells = self._parse(chunk_bytes)
        except BaseException:
            self._scratch.cleanup()
            raise

    def _parse(self, chunk_bytes: int) -> tuple[SpilledCsr, pd.Index]:
        spill = CsrSpill(self._scratch / "csr", n_cols=len(self._genes), dtype=np.float32)
        try:
            cells = scan_into(self.path, self.delimiter, self._genes, spill, chunk_bytes)
        except BaseException:
            spill.abort()
            raise
        check_shape(self.path, len(cells), len(self._genes))
        check_unique(cells, where=self.path, what="cell id", place=lambda i: f"line {i + 2}")
        return spill.finish(), cells

    @property
    def shape(self) -> tuple[int, int]:
        return len(self._cells), len(self._genes)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    @property
    def nnz_hint(self) -> int | None:
        return self._stored.nnz

    def obs(self) -> pd.DataFrame:
        return pd.DataFrame(index=self._cells.copy())

    def var(self) -> pd.DataFrame:
        return pd.DataFrame(index=self._genes.copy())

    def iter_blocks(self, *, block_nnz: int, columns: tuple[int, int] | None = None) -> Iterator[Block]:
        yield from self._stored.iter_blocks(block_nnz=block_nnz, where=self.path)

    def close(self) -> None:
        self._scratch.cleanup()


class CsvSource(DelimitedSource):
    """Comma-separated values."""

    format, delimiter = "csv", ","


class TsvSource(DelimitedSource):
    """Tab-separated values."""

    format, delimiter = "tsv", "\t"


register_reader(ReaderSpec("csv", lambda p: _sniff_delimiter(p) == ",", CsvSource))
register_reader(ReaderSpec("tsv", lambda p: _sniff_delimiter(p) == "\t", TsvSource))
