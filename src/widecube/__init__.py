"""widecube: precomputed, atomically published, millisecond-served views of wide matrices."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("widecube")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
