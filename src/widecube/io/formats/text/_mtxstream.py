"""Parse the entry lines of a MatrixMarket file in pieces, two halves at a time on two cores.

The file is scanned in pieces of whole lines (16 MB; memory stays bounded whatever the
file's size): an uncompressed file straight from the page cache, a map per piece; gzip is
inflated by ISA-L (``isal.igzip``, ~2 × zlib's speed) in a thread of its own, a piece
ahead of the scan. Each piece is cut at a line
boundary into two halves scanned in parallel by :func:`._mtxscan.scan_entries` (numba, GIL
released), and the halves come out in file order as :class:`Entries` batches, the next
piece scanned while the caller uses them (it writes them to the spill). Every failure
is turned into an :class:`~widecube.errors.InputError` naming the file and the line;
checking the entry count against the header is the caller's (it knows when to stop).

    >>> for batch in iter_entries(path, kind=INTEGER, skip_lines=3, cell_is_column=True,
    ...                           n_rows=20_000, n_cols=50_000): ...      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import zlib
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from isal import igzip, isal_zlib

from ....errors import InputError, InvalidValue, UnreadableInput
from ..._prefetch import prefetch
from ..._sniff import is_gzip, open_binary
from ._mtxscan import (
    NON_NUMERIC,
    OK,
    OUT_OF_RANGE,
    PATTERN,
    RAGGED,
    REAL,
    TOO_LARGE,
    run_lengths,
    scan_entries,
)

__all__ = ["Entries", "iter_entries", "line_of"]

PIECE_BYTES = 16 << 20
_BUFFERS = 4
_IGZIP_OPEN: Callable[..., object] = getattr(igzip, "open")  # noqa: B009 - untyped in isal
_INFLATE_ERROR: type[Exception] = getattr(isal_zlib, "error")  # noqa: B009
_LABELS = ("row index", "column index", "value")


@dataclass
class Entries:
    """One scanned stretch of lines: 0-based cells and genes, values, in file order."""

    first_line: int
    """The file's (1-based) line number of the first line of the stretch."""
    lines: int
    cells: np.ndarray
    genes: np.ndarray
    values: np.ndarray
    ordered: bool
    """Cells never decrease within the stretch."""
    counts: np.ndarray | None
    """When ordered: entries per cell ``cells[0]..cells[-1]``."""


@dataclass
class _Scanned:
    buf: memoryview
    entries: int
    lines: int
    code: int
    field: int
    offset: int
    row: int
    column: int
    ordered: bool
    cells: np.ndarray
    genes: np.ndarray
    values: np.ndarray
    counts: np.ndarray | None


def _open(path: Path) -> io.RawIOBase | io.BufferedIOBase:
    if is_gzip(path):
        return cast(io.BufferedIOBase, _IGZIP_OPEN(path, "rb"))
    return path.open("rb", buffering=0)


def _pieces(path: Path, skip_lines: int, size: int) -> Generator[memoryview, None, None]:
    """Pieces of whole lines after the ``skip_lines`` header lines.

    The last piece may lack its final newline. Four buffers take turns, so a piece stays
    valid while the next three are in hand (one being scanned, one ahead, queued by
    :func:`~widecube.io.prefetch`, one being read).
    """
    bufs = [bytearray(2 * size) for _ in range(_BUFFERS)]
    turn, buf = 0, bufs[0]
    have, skipped, header_done = 0, 0, skip_lines == 0
    try:
        with _open(path) as fh:
            while True:
                got = fh.readinto(memoryview(buf)[have : have + size]) if have < len(buf) else 0
                eof = not got
                have += got or 0
                start = 0
                while not header_done and (cut := buf.find(b"\n", start, have)) >= 0:
                    start, skipped = cut + 1, skipped + 1
                    header_done = skipped == skip_lines
                if not header_done:
                    if eof:
                        return
                    buf[: have - start], have = buf[start:have], have - start
                    continue
                cut = have if eof else buf.rfind(b"\n", start, have) + 1
                if cut <= start and not eof:
                    if have - start >= size:
                        raise UnreadableInput(f"{path}: a line is longer than {size >> 20} MB")
                    buf[: have - start], have = buf[start:have], have - start
                    continue
                if cut > start:
                    yield memoryview(buf)[start:cut]
                if eof:
                    return
                turn += 1
                bufs[turn % _BUFFERS][: have - cut] = buf[cut:have]
                buf, have = bufs[turn % _BUFFERS], have - cut
    except (OSError, EOFError, zlib.error, _INFLATE_ERROR) as exc:
        raise UnreadableInput(f"{path}: cannot read, file truncated or corrupt ({exc})") from exc


def _mapped_pieces(path: Path, skip_lines: int, size: int) -> Generator[memoryview, None, None]:
    """Pieces of whole lines of an uncompressed file, each a read-only map of its own.

    No copy: the scan reads the page cache directly. Each map is dropped (unmapped) with
    the last reference to its piece, so only the pieces in flight count toward RSS.
    """
    with path.open("rb") as fh:
        for _ in range(skip_lines):
            fh.readline()
        pos, total = fh.tell(), os.fstat(fh.fileno()).st_size
        while pos < total:
            base = pos - pos % mmap.ALLOCATIONGRANULARITY
            length = min(total - base, size + (pos - base))
            mapped = mmap.mmap(fh.fileno(), length, offset=base, access=mmap.ACCESS_READ)
            cut = length if base + length == total else mapped.rfind(b"\n", pos - base, length) + 1
            if cut <= pos - base:
                raise UnreadableInput(f"{path}: a line is longer than {size >> 20} MB")
            yield memoryview(mapped)[pos - base : cut]
            pos = base + cut


def _halves(piece: memoryview) -> list[memoryview]:
    """``piece`` cut after the first newline past its middle (one part if there is none)."""
    n = len(piece)
    arr = np.frombuffer(piece, dtype=np.uint8)
    mid = n // 2
    while mid < n:
        hits = np.flatnonzero(arr[mid : mid + 4096] == 10)
        if len(hits):
            mid += int(hits[0]) + 1
            break
        mid += 4096
    return [piece[:mid], piece[mid:]] if 0 < mid < n else [piece]


class _Buffers:
    """Output arrays for one half, reused from piece to piece (fresh arrays cost a page fault
    per 4 KB written: ~10 % of the scan)."""

    def __init__(self, kind: int) -> None:
        self.kind, self.slots = kind, 0

    def get(self, slots: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if slots > self.slots:
            self.slots = slots
            self.cells = np.empty(slots, dtype=np.int32)
            self.genes = np.empty(slots, dtype=np.int32)
            self.ivalues = np.empty(slots if self.kind != REAL else 0, dtype=np.int32)
            self.fvalues = np.empty(slots if self.kind == REAL else 0, dtype=np.float64)
        return self.cells, self.genes, self.ivalues, self.fvalues


def _scan(buf: memoryview, out: _Buffers, cell_is_column: bool, n_rows: int, n_cols: int) -> _Scanned:
    raw = np.frombuffer(buf, dtype=np.uint8)
    cells, genes, ivalues, fvalues = out.get(len(raw) // 4 + 1)
    k, lines, code, field, offset, row, col, ordered = scan_entries(
        raw, out.kind, cell_is_column, n_rows, n_cols, cells, genes, ivalues, fvalues
    )
    kind = out.kind
    values = np.ones(k, dtype=np.int32) if kind == PATTERN else (fvalues if kind == REAL else ivalues)[:k]
    cells, genes = cells[:k], genes[:k]
    counts = run_lengths(cells, int(cells[0]), int(cells[-1])) if ordered and k else None
    return _Scanned(buf, k, lines, code, field, offset, row, col, ordered, cells, genes, values, counts)


def iter_entries(
    path: Path,
    *,
    kind: int,
    skip_lines: int,
    cell_is_column: bool,
    n_rows: int,
    n_cols: int,
    piece_bytes: int | None = None,
) -> Generator[Entries, None, None]:
    """Every entry line of ``path`` after its ``skip_lines`` header lines, in file order.

    A batch's arrays are reused for a later batch: use them before asking for the next.
    Each piece is scanned while the batches of the piece before it are used (two sets of
    output arrays take turns).
    """
    size = piece_bytes or PIECE_BYTES
    buffers = [[_Buffers(kind), _Buffers(kind)] for _ in range(2)]  # two pieces in flight

    with ThreadPoolExecutor(2, thread_name_prefix="widecube-mtx") as pool:

        def scan(piece: memoryview | None, outs: list[_Buffers]) -> list[Future[_Scanned]]:
            if piece is None:
                return []
            halves = _halves(piece)
            return [
                pool.submit(_scan, half, out, cell_is_column, n_rows, n_cols)
                for half, out in zip(halves, outs, strict=False)
            ]

        line = skip_lines + 1
        source = (
            prefetch(_pieces(path, skip_lines, size), depth=1)
            if is_gzip(path)
            else _mapped_pieces(path, skip_lines, size)
        )
        with contextlib.closing(source) as pieces:  # the inflating thread stops here, not when collected
            turn = 0
            scanning = scan(next(pieces, None), buffers[turn])
            while scanning:
                turn ^= 1  # the next piece is scanned while this one's entries are used
                following = scan(next(pieces, None), buffers[turn])
                for future in scanning:
                    part = future.result()
                    if part.code != OK:
                        for pending in following:
                            pending.cancel()
                        raise _error(path, part, line + part.lines, n_rows, n_cols, kind)
                    yield Entries(
                        line, part.lines, part.cells, part.genes, part.values, part.ordered, part.counts
                    )
                    line += part.lines
                scanning = following


def _token(buf: memoryview, offset: int) -> str:
    raw = bytes(buf[offset : offset + 64])
    end = min((i for i in (raw.find(c) for c in (b" ", b"\t", b"\r", b"\n")) if i >= 0), default=len(raw))
    return raw[:end][:40].decode("utf-8", "replace")


def _error(path: Path, part: _Scanned, line: int, n_rows: int, n_cols: int, kind: int) -> InputError:
    if part.code == OUT_OF_RANGE:
        return UnreadableInput(
            f"{path}: line {line}: index ({part.row}, {part.column}) is outside the "
            f"{n_rows} × {n_cols} matrix"
        )
    if part.code == RAGGED:
        want = 2 if kind == PATTERN else 3
        return UnreadableInput(
            f"{path}: ragged row at line {line}: {part.field} fields where a "
            f"{'pattern' if kind == PATTERN else 'valued'} entry has {want}"
        )
    token = _token(part.buf, part.offset)
    if part.code == TOO_LARGE:
        what = "index" if part.field < 2 else "integer value"
        return UnreadableInput(
            f"{path}: {what} {token!r} at line {line}, {_LABELS[part.field]}, does not fit in 32 bits"
        )
    assert part.code == NON_NUMERIC
    return InvalidValue(f"{path}: non-numeric value {token!r} at line {line}, {_LABELS[part.field]}")


def line_of(path: Path, batch: Entries, k: int) -> int:
    """The file's line number of entry ``k`` of ``batch`` (for messages: when the stretch
    holds blank or comment lines, the file is read again up to it)."""
    if batch.lines == len(batch.values):
        return batch.first_line + k
    with open_binary(path) as fh:
        for number, raw in enumerate(fh, 1):
            if number < batch.first_line:
                continue
            text = raw.strip()
            if text and not text.startswith(b"%"):
                if k == 0:
                    return number
                k -= 1
    return batch.first_line + k
