"""Read a wide delimited matrix into a :class:`~._csrspill.CsrSpill`, chunk by chunk, on two cores.

The (gzip-decompressed) byte stream is cut into chunks of whole lines; each chunk is split
at a line boundary into two halves scanned in parallel by :func:`._csvscan.scan_lines`
(numba, GIL released), and the halves' CSR rows are appended in order. Every failure is
turned into an :class:`~widecube.errors.InputError` naming the file, the line and the field
(1-based, the id being field 1), the cell and the gene.

    >>> ids = scan_into(Path("counts.csv"), ",", genes, spill)     # doctest: +SKIP
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from ....errors import InputError, InvalidValue, UnreadableInput
from ..._checks import nonfinite_error
from ..._sniff import arrow_stream
from ._csrspill import CsrSpill
from ._csvscan import BAD_QUOTE, NON_NUMERIC, NULL, OK, RAGGED, scan_lines

__all__ = ["scan_into"]

CHUNK_BYTES = 16 << 20


@dataclass
class _Part:
    """One scanned stretch of lines: its CSR rows and ids, or the error it stopped at."""

    buf: bytes
    rows: int
    lines: int
    """Lines scanned (blank ones included); on an error, the line at fault (0-based)."""
    row_lines: np.ndarray
    matrix: sp.csr_matrix | None
    ids: np.ndarray | None
    code: int
    col: int
    offset: int


def _line_chunks(path: Path, size: int) -> Iterator[bytes]:
    """Chunks of whole lines (the last may lack its newline), the header line skipped."""
    pending = b""
    header_done = False
    try:
        with arrow_stream(path) as stream:
            while block := stream.read(size):
                data = pending + block
                if not header_done:
                    cut = data.find(b"\n")
                    if cut < 0:
                        pending = data
                        continue
                    data, header_done = data[cut + 1 :], True
                cut = data.rfind(b"\n") + 1
                pending = data[cut:]
                if cut:
                    yield data[:cut]
    except (OSError, EOFError, zlib.error, pa.ArrowException) as exc:
        raise UnreadableInput(f"{path}: cannot read, file truncated or corrupt ({exc})") from exc
    if header_done and pending.strip():
        yield pending


def _scan(buf: bytes, n_cols: int, delimiter: int) -> _Part:
    raw = np.frombuffer(buf, dtype=np.uint8)
    lines = buf.count(b"\n") + 1
    fields = min(len(buf) // 2 + 1, lines * n_cols)
    indptr = np.zeros(lines + 1, dtype=np.int64)
    indices = np.empty(fields, dtype=np.int32)
    data = np.empty(fields, dtype=np.float32)
    id_bytes = np.empty(len(buf), dtype=np.uint8)
    id_offsets = np.zeros(lines + 1, dtype=np.int32)
    row_lines = np.zeros(lines + 1, dtype=np.int64)
    rows, nnz, n_lines, code, col, offset = scan_lines(
        raw, n_cols, delimiter, indptr, indices, data, id_bytes, id_offsets, row_lines
    )
    if code != OK:
        return _Part(buf, rows, n_lines, row_lines, None, None, code, col, offset)
    m = sp.csr_matrix((data[:nnz], indices[:nnz], indptr[: rows + 1]), shape=(rows, n_cols))
    m.has_sorted_indices = True
    ids = pa.Array.from_buffers(
        pa.binary(),
        rows,
        [None, pa.py_buffer(id_offsets[: rows + 1]), pa.py_buffer(id_bytes[: id_offsets[rows]])],
    )
    cells = np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object)
    return _Part(buf, rows, n_lines, row_lines, m, cells, OK, 0, 0)


def _halves(buf: bytes) -> list[bytes]:
    mid = buf.rfind(b"\n", 0, len(buf) // 2) + 1
    return [buf[:mid], buf[mid:]] if 0 < mid < len(buf) else [buf]


def scan_into(
    path: Path, delimiter: str, genes: pd.Index, spill: CsrSpill, chunk_bytes: int = CHUNK_BYTES
) -> pd.Index:
    """Scan every data line of ``path`` into ``spill``; return the cell ids (file order)."""
    ids: list[np.ndarray] = []
    line = 2  # the file's line number of the first line of the current part
    rows = 0
    delim = ord(delimiter)
    with ThreadPoolExecutor(2, thread_name_prefix="widecube-csv") as pool:
        for chunk in _line_chunks(path, chunk_bytes):
            for part in pool.map(lambda b: _scan(b, len(genes), delim), _halves(chunk)):
                if part.code != OK:
                    raise _error(path, part, line, genes)
                assert part.matrix is not None and part.ids is not None
                _check_finite(path, part, line, rows, genes)
                spill.append(part.matrix)
                ids.append(part.ids)
                line += part.lines
                rows += part.rows
    cells = np.concatenate(ids) if ids else np.zeros(0, dtype=object)
    try:
        return pd.Index([c.decode("utf-8") for c in cells], dtype=object)
    except UnicodeDecodeError as exc:
        raise UnreadableInput(f"{path}: a cell id is not UTF-8 text ({exc})") from exc


def _token(buf: bytes, offset: int, delimiter_end: bytes) -> str:
    end = min((i for i in (buf.find(d, offset) for d in delimiter_end) if i >= 0), default=len(buf))
    return buf[offset:end][:40].decode("utf-8", "replace")


def _cell(part: _Part) -> str:
    start = part.buf.rfind(b"\n", 0, part.offset) + 1
    return _token(part.buf, start, b",\t\r\n").strip('"')


def _error(path: Path, part: _Part, first_line: int, genes: pd.Index) -> InputError:
    line = first_line + part.lines
    if part.code == RAGGED:
        return UnreadableInput(
            f"{path}: ragged row at line {line}: {part.col + 1} fields where the header has {len(genes) + 1}"
        )
    if part.code == BAD_QUOTE:
        return UnreadableInput(f"{path}: unterminated quoted cell id at line {line}")
    if part.col < 0:
        text = _token(part.buf, part.offset, b"\n")
        return UnreadableInput(f"{path}: malformed line {line} near {text!r}")
    gene = genes[part.col]
    if part.code == NULL:
        return InvalidValue(
            f"{path}: Null value found at cell {_cell(part)}, gene {gene} (line {line}, field {part.col + 2})"
        )
    assert part.code == NON_NUMERIC
    token = _token(part.buf, part.offset, b",\t\r\n")
    return InvalidValue(
        f"{path}: non-numeric value {token!r} at line {line}, field {part.col + 2} "
        f"(cell {_cell(part)!r}, gene {gene!r})"
    )


def _check_finite(path: Path, part: _Part, first_line: int, rows_before: int, genes: pd.Index) -> None:
    m = part.matrix
    assert m is not None and part.ids is not None
    finite = np.isfinite(m.data)
    if finite.all():
        return
    k = int(np.argmin(finite))
    row = int(np.searchsorted(m.indptr, k, side="right")) - 1
    col = int(m.indices[k])
    cell = part.ids[row].decode("utf-8", "replace")
    line = first_line + int(part.row_lines[row])
    raise nonfinite_error(
        path,
        float(m.data[k]),
        row=rows_before + row,
        col=col,
        cell=cell,
        gene=genes[col],
        extra=f" (line {line}, field {col + 2})",
    )
