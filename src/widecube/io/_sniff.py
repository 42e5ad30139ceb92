"""Content sniffing shared by the readers: magic bytes, gzip-aware heads and streams.

Formats are recognised by what a file holds, never by its name, so every reader's
``sniff`` starts here: the first bytes (decompressed when the file is gzip), whether it is
HDF5 and which top-level keys it has.

    >>> head(Path("counts.csv.gz"), 64)[:5]            # doctest: +SKIP
    b'cell,'
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import h5py
import pyarrow as pa

__all__ = [
    "GZIP_MAGIC",
    "HDF5_MAGIC",
    "PARQUET_MAGIC",
    "arrow_stream",
    "first_line",
    "hdf5_keys",
    "head",
    "is_gzip",
    "open_binary",
    "raw_head",
]

GZIP_MAGIC = b"\x1f\x8b"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
PARQUET_MAGIC = b"PAR1"


def is_gzip(path: Path) -> bool:
    """True when ``path`` is a regular file starting with the gzip magic bytes."""
    return raw_head(path, 2) == GZIP_MAGIC


def raw_head(path: Path, n: int) -> bytes:
    """The first ``n`` bytes of ``path`` as stored (not decompressed); b"" if unreadable."""
    if not path.is_file():
        return b""
    try:
        with path.open("rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def open_binary(path: Path) -> io.BufferedIOBase:
    """A binary file object over the (decompressed, when gzip) content of ``path``."""
    return gzip.open(path, "rb") if is_gzip(path) else path.open("rb")


def head(path: Path, n: int = 8192) -> bytes:
    """Up to ``n`` bytes of the content of ``path`` (decompressed when gzip).

    A truncated gzip still gives what could be decompressed, so that the file is recognised
    and then refused by its reader with a precise message; b"" when nothing is readable.
    """
    if not path.is_file():
        return b""
    parts: list[bytes] = []
    got = 0
    try:
        with open_binary(path) as fh:
            while got < n and (chunk := fh.read(min(n - got, 1 << 16))):
                parts.append(chunk)
                got += len(chunk)
    except (OSError, EOFError, zlib.error):
        pass
    return b"".join(parts)


def first_line(path: Path, limit: int = 64 << 20) -> bytes:
    """The first line of ``path`` (decompressed), without its line ending; at most ``limit`` bytes.

    Used for headers only (a 100,000-gene header is a few MB); data lines go to pyarrow.
    """
    with open_binary(path) as fh:
        line = fh.readline(limit)
    return line.rstrip(b"\r\n")


def arrow_stream(path: Path) -> pa.NativeFile:
    """A pyarrow input stream over ``path``, gzip-decompressing by content, not by name."""
    return pa.input_stream(str(path), compression="gzip" if is_gzip(path) else None)


def hdf5_keys(path: Path) -> set[str] | None:
    """The top-level keys of an HDF5 file, or None when ``path`` is not readable HDF5."""
    if not path.is_file():
        return None
    try:
        if not h5py.is_hdf5(path):
            return None
        with h5py.File(path, "r") as f:
            return set(f.keys())
    except (OSError, ValueError):
        return None
