"""Input readers: each format is one module registered in one registry."""

from . import h5ad as _h5ad  # noqa: F401 - registers the reader
from ._base import Block, MatrixSource
from ._registry import ReaderSpec, open_matrix, readers, register_reader

__all__ = ["Block", "MatrixSource", "ReaderSpec", "open_matrix", "readers", "register_reader"]
