"""The installed widecube's version (a module of its own, so that any layer can name it
without importing the package root, which offers the client)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("widecube")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"
