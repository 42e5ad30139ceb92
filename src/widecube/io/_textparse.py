"""pyarrow's streaming CSV reader, with its errors translated to messages naming the place.

pyarrow reports a bad field as ``In CSV column #2: Row #5: CSV conversion error to float:
invalid value 'x'`` and a short row as ``CSV parse error: Row #5: Expected 4 columns, got
3``, where the row number is the physical line of the file (1-based). :func:`parse_error`
turns those into :class:`~widecube.errors.InputError` messages that name the file, the line
and the column, with the column's name when the caller knows it.

    >>> batches = stream_batches(path, names=["r", "c", "v"], skip_rows=3, delimiter=" ",
    ...                          types={"r": pa.int64(), "c": pa.int64(), "v": pa.float64()})
    ...                                                                       # doctest: +SKIP
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pv

from ..errors import InputError, InvalidValue, UnreadableInput
from ._sniff import arrow_stream

__all__ = ["parse_error", "stream_batches"]

_CONVERSION = re.compile(
    r"In CSV column #(\d+): Row #(\d+): CSV conversion error to (\w+): invalid value '(.*)'", re.S
)
_RAGGED = re.compile(r"Row #(\d+): Expected (\d+) columns, got (\d+)")


def stream_batches(
    path: Path,
    *,
    names: list[str],
    types: dict[str, pa.DataType],
    delimiter: str,
    skip_rows: int,
    block_size: int = 64 << 20,
    use_threads: bool = False,
    column_label: Callable[[int], str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of ``path`` (gzip or plain) with forced column types; errors translated.

    Single-threaded by default: on very wide files pyarrow's parallel conversion is slower
    than one thread (measured in ``benchmarks/readers.py``), and only one thread gives
    exact line numbers in every error.
    """
    try:
        with arrow_stream(path) as stream:
            yield from pv.open_csv(
                stream,
                read_options=pv.ReadOptions(block_size=block_size, use_threads=use_threads,
                                            column_names=names, skip_rows=skip_rows),
                parse_options=pv.ParseOptions(delimiter=delimiter),
                convert_options=pv.ConvertOptions(column_types=types, null_values=[""],
                                                  strings_can_be_null=False,
                                                  quoted_strings_can_be_null=False),
            )  # fmt: skip
    except (pa.ArrowException, OSError, EOFError, zlib.error) as exc:
        raise parse_error(path, exc, column_label) from exc


def parse_error(path: object, exc: BaseException, column_label: Callable[[int], str] | None = None
                ) -> InputError:  # fmt: skip
    """The widecube error for a pyarrow CSV failure on ``path``."""
    text = str(exc)
    label = column_label or (lambda c: f"column {c + 1}")
    if m := _CONVERSION.search(text):
        col, line, _type, token = int(m[1]), int(m[2]), m[3], m[4]
        return InvalidValue(f"{path}: non-numeric value {token!r} at line {line}, {label(col)}")
    if m := _RAGGED.search(text):
        line, want, got = int(m[1]), int(m[2]), int(m[3])
        return UnreadableInput(
            f"{path}: ragged row at line {line}: {got} fields where the header has {want}"
        )
    if "straddling" in text or "block size" in text:
        return UnreadableInput(f"{path}: a line is longer than the parser's block ({text})")
    return UnreadableInput(f"{path}: cannot parse, file truncated or corrupt ({text})")
