"""The view registry: stateless specs (what is built, in which encoding) and readers keyed
by the encoding a snapshot stores, as anndata's IO registry (``anndata/_io/specs/registry.py``).

Building: each view module registers one :class:`ViewSpec` with :func:`register_view`; the
pipeline asks each spec for a fresh :class:`~widecube.views.Builder` per build, and the
snapshot writer stamps the spec's ``encoding``/``encoding_version`` on the view's manifest
entry. Reading: a :class:`~widecube.views.ViewReader` subclass is registered for each
``(view, encoding, encoding_version)`` it reads::

    @register_read("summary", "widecube-summary", "0.2.0")
    class SummaryReader(ViewReader): ...

and :func:`reader` dispatches on what the snapshot's manifest says, so a snapshot is read
the way it was written, and one written in an encoding nothing here reads is a clear
:class:`~widecube.errors.UnsupportedEncoding`, never a wrong answer. When an encoding
changes, its old reader stays registered (and the frozen snapshots under
``tests/data/snapshots/`` keep it honest).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import numpy as np

from ..errors import UnsupportedEncoding
from ..snapshot import Snapshot, SnapshotWriter
from ._base import BuildContext, Builder, ViewReader

__all__ = [
    "ViewSpec",
    "get_view",
    "has_view",
    "readable",
    "reader",
    "register_read",
    "register_view",
    "views",
]

R = TypeVar("R", bound=ViewReader)
Key = tuple[str, str, str]  # (view, encoding, encoding_version)

_VIEWS: dict[str, ViewSpec] = {}
_READERS: dict[Key, type[ViewReader]] = {}


@dataclass(frozen=True, slots=True)
class ViewSpec:
    """One view: its name, the encoding today's code writes, and its builder.

    Stateless and registered once; ``builder(ctx, out)`` returns a new
    :class:`~widecube.views.Builder` holding one build's state, so builds may run
    concurrently. The read methods are shorthands for :func:`reader` on a snapshot.
    """

    name: str
    encoding: str
    encoding_version: str
    builder: Callable[[BuildContext, SnapshotWriter], Builder]

    @property
    def reader_class(self) -> type[ViewReader]:
        """The reader registered for the encoding this spec writes."""
        return _READERS[self.name, self.encoding, self.encoding_version]

    def verify(self, snap: Snapshot) -> None:
        """Check the view stored in ``snap`` (through the reader of its stored encoding)."""
        reader(snap, self.name).verify()

    def served(self, snap: Snapshot) -> list[str]:
        """The statistics the view answers for ``snap`` (none if ``snap`` lacks the view)."""
        return reader(snap, self.name).served() if has_view(snap, self.name) else []

    def query(
        self, snap: Snapshot, groupby: str, layer: str, gene_idx: np.ndarray, stats: Sequence[str]
    ) -> tuple[list[str], dict[str, np.ndarray]]:
        """(groups, {stat: (n_groups, n_genes)}) from the view stored in ``snap``."""
        return reader(snap, self.name).query(groupby, layer, gene_idx, stats)

    def describe(self, snap: Snapshot) -> dict[str, Any]:
        """What the API lists about the view stored in ``snap``."""
        return reader(snap, self.name).describe()


def register_view(spec: ViewSpec) -> ViewSpec:
    """Add a view to the registry (built in registration order); returns ``spec``."""
    if spec.name in _VIEWS:
        raise ValueError(f"view {spec.name!r} is registered twice")
    if (spec.name, spec.encoding, spec.encoding_version) not in _READERS:
        raise ValueError(
            f"view {spec.name!r} writes {spec.encoding} {spec.encoding_version}, "
            "which no registered reader reads (register the reader first)"
        )
    _VIEWS[spec.name] = spec
    return spec


def views() -> list[ViewSpec]:
    """Every registered view, in registration order (the order they are built)."""
    return list(_VIEWS.values())


def get_view(name: str) -> ViewSpec:
    return _VIEWS[name]


def register_read(view: str, encoding: str, encoding_version: str) -> Callable[[type[R]], type[R]]:
    """Class decorator: ``cls`` reads view ``view`` stored as ``(encoding, encoding_version)``.

    >>> @register_read("genes", "widecube-gene-stats", "0.2.0")   # doctest: +SKIP
    ... class GenesReader(ViewReader): ...
    """
    key = (view, encoding, encoding_version)

    def register(cls: type[R]) -> type[R]:
        if key in _READERS:
            raise ValueError(f"a reader of {view!r} as {encoding} {encoding_version} is registered twice")
        cls.name, cls.encoding, cls.encoding_version = key
        _READERS[key] = cls
        return cls

    return register


def readable(view: str) -> list[tuple[str, str]]:
    """The ``(encoding, encoding_version)`` pairs of ``view`` that this code reads."""
    return [(e, v) for (name, e, v) in _READERS if name == view]


def has_view(snap: Snapshot, name: str) -> bool:
    """Whether ``snap``'s manifest lists view ``name`` (readable or not)."""
    return name in snap.manifest.get("views", {})


@overload
def reader(snap: Snapshot, name: str) -> ViewReader: ...
@overload
def reader(snap: Snapshot, name: str, kind: type[R]) -> R: ...
def reader(snap: Snapshot, name: str, kind: type[ViewReader] = ViewReader) -> ViewReader:
    """The reader of view ``name`` as ``snap`` stores it, chosen by the stored encoding.

    ``kind`` is the reader class whose methods the caller uses (a view's first reader;
    readers of later encodings subclass it). Raises
    :class:`~widecube.errors.UnsupportedEncoding` naming the dataset, version, view and
    stored encoding when the view is missing or no reader here reads its encoding.

    >>> reader(snap, "genes", GenesReader).table("raw")   # doctest: +SKIP
    """
    entry = snap.manifest.get("views", {}).get(name)
    where = f"version {snap.version} of dataset {snap.dataset!r}"
    if entry is None:
        raise UnsupportedEncoding(
            f"{where} has no view {name!r} (written by widecube "
            f"{snap.manifest.get('widecube_version', '?')}); build the version again to serve it",
            dataset=snap.dataset,
            version=snap.version,
            view=name,
            encoding=None,
            encoding_version=None,
        )
    encoding, version = str(entry.get("encoding")), str(entry.get("encoding_version"))
    cls = _READERS.get((name, encoding, version))
    if cls is None or not issubclass(cls, kind):
        known = ", ".join(f"{e} {v}" for e, v in readable(name)) or "none"
        raise UnsupportedEncoding(
            f"{where}: view {name!r} is stored as {encoding} {version}, which this widecube "
            f"cannot read (it reads: {known})",
            dataset=snap.dataset,
            version=snap.version,
            view=name,
            encoding=encoding,
            encoding_version=version,
        )
    return cls(snap, dict(entry))
