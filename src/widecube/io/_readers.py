"""The one reader registry: formats are detected by content, not by file extension.

Each reader module registers itself with :func:`register_reader`; :func:`open_matrix`
tries each reader's ``sniff`` in registration order (or uses ``format=`` when given).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputNotFound, UnreadableInput
from ._source import MatrixSource

__all__ = ["ReaderSpec", "open_matrix", "readers", "register_reader"]


@dataclass(frozen=True)
class ReaderSpec:
    """A reader: its name, a content sniffer and an opener."""

    name: str
    sniff: Callable[[Path], bool]
    open: Callable[..., MatrixSource]


_READERS: dict[str, ReaderSpec] = {}


def register_reader(spec: ReaderSpec) -> ReaderSpec:
    """Add a reader to the registry (import-time, once per module)."""
    if spec.name in _READERS:
        raise ValueError(f"reader {spec.name!r} is registered twice")
    _READERS[spec.name] = spec
    return spec


def readers() -> list[ReaderSpec]:
    """The registered readers, in detection order."""
    return list(_READERS.values())


def open_matrix(path: str | Path, *, format: str | None = None, layer: str | None = None) -> MatrixSource:
    """Open ``path`` with the reader that recognises its content.

    >>> with open_matrix("pbmc.h5ad", layer="counts") as src:   # doctest: +SKIP
    ...     n_cells, n_genes = src.shape
    """
    path = Path(path)
    if not path.exists():
        raise InputNotFound(f"{path}: no such file or folder")
    if format is not None:
        if format not in _READERS:
            raise UnreadableInput(f"{path}: unknown format {format!r}; known formats: {', '.join(_READERS)}")
        return _READERS[format].open(path, layer=layer)
    for spec in _READERS.values():
        if spec.sniff(path):
            return spec.open(path, layer=layer)
    raise UnreadableInput(f"{path}: not a recognised matrix file (formats tried: {', '.join(_READERS)})")
