"""Input readers: each format is one module registered in one registry, detected by content.

The readers live in :mod:`.formats`, one folder per family of storage (``hdf5/``,
``columnar/``, ``text/``), each reader beside the scanners and streamers only it uses; this
package keeps what every reader shares: the :class:`MatrixSource` contract (``_source``),
the registry (``_readers``), content sniffing, value and shape checks, safe archive
unpacking, metadata joins and :func:`open_input` (``_input``), the work folder and the
read-ahead thread (``_prefetch``).

Registration order is detection order: the HDF5 formats first (h5ad, 10x, Loom, each
recognised by its own structure), then Parquet (magic bytes), 10x MTX folders, and the
delimited text formats last (their sniff is the loosest). :func:`open_input` is the entry
point the pipeline uses: archives, format detection, metadata joins, counts checks.
"""

# Import order is registration order is detection order: keep it.
from .formats.hdf5 import h5ad as _h5ad  # noqa: F401, I001 - registers the reader
from .formats.hdf5 import tenx_h5 as _tenx_h5  # noqa: F401
from .formats.hdf5 import loom as _loom  # noqa: F401
from .formats.columnar import parquet as _parquet  # noqa: F401
from .formats.text import mtx as _mtx  # noqa: F401
from .formats.text import delimited as _delimited  # noqa: F401
from ._archive import ArchiveLimits, archive_kind
from ._archive import unpack as unpack_archive
from ._source import Block, MatrixSource
from ._input import InputSource, open_input
from ._prefetch import prefetch
from ._readers import ReaderSpec, open_matrix, readers, register_reader

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
