"""Input readers: each format is one module registered in one registry, detected by content.

Registration order is detection order: the HDF5 formats first (h5ad, 10x, Loom, each
recognised by its own structure), then Parquet (magic bytes), 10x MTX folders, and the
delimited text formats last (their sniff is the loosest). :func:`open_input` is the entry
point the pipeline uses: archives, format detection, metadata joins, counts checks.
"""

# Import order is registration order is detection order: keep it.
from . import h5ad as _h5ad  # noqa: F401, I001 - registers the reader
from . import tenx_h5 as _tenx_h5  # noqa: F401
from . import loom as _loom  # noqa: F401
from . import parquet as _parquet  # noqa: F401
from . import mtx as _mtx  # noqa: F401
from . import delimited as _delimited  # noqa: F401
from ._archive import ArchiveLimits, archive_kind
from ._archive import unpack as unpack_archive
from ._base import Block, MatrixSource
from ._input import InputSource, open_input
from ._prefetch import prefetch
from ._registry import ReaderSpec, open_matrix, readers, register_reader

__all__ = [
    "ArchiveLimits",
    "Block",
    "InputSource",
    "MatrixSource",
    "ReaderSpec",
    "archive_kind",
    "open_input",
    "open_matrix",
    "prefetch",
    "readers",
    "register_reader",
    "unpack_archive",
]
