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

Selecting: an ingest may build only some views (``--views summary,quantiles``);
:func:`select_views` adds what they ``requires`` (a view whose verifier reads another, as the
summary reads the genes view's totals) and the manifest records the views built
(``parameters.views``). Reading a view such a snapshot was built without is a
:class:`ViewMissing` (422) that names the ``--views`` which would build it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import numpy as np

from ..errors import InvalidQuery, UnsupportedEncoding
from ..snapshot import Snapshot, SnapshotWriter
from ._spec import BuildContext, Builder, ViewReader

__all__ = [
    "ViewMissing",
    "ViewSpec",
    "get_view",
    "has_view",
    "missing_view",
    "parse_views",
    "readable",
    "reader",
    "register_read",
    "register_view",
    "select_views",
    "views",
]

R = TypeVar("R", bound=ViewReader)
Key = tuple[str, str, str]  # (view, encoding, encoding_version)

_VIEWS: dict[str, ViewSpec] = {}
_READERS: dict[Key, type[ViewReader]] = {}


class ViewMissing(InvalidQuery):
    """A query needs a view that its version was deliberately built without (``--views``):
    the API answers 422, and the message names the ``--views`` that would build it."""

    def __init__(self, message: str, *, dataset: str, version: str, view: str) -> None:
        super().__init__(message)
        self.dataset = dataset
        self.version = version
        self.view = view


def _no_stats(parameters: Mapping[str, Any]) -> list[str]:
    return []


@dataclass(frozen=True, slots=True)
class ViewSpec:
    """One view: its name, the encoding today's code writes, and its builder.

    Stateless and registered once; ``builder(ctx, out)`` returns a new
    :class:`~widecube.views.Builder` holding one build's state, so builds may run
    concurrently. ``requires`` names the views it cannot do without (built with it whenever
    it is selected, registered before it); ``stats(parameters)`` the per-group statistics it
    would serve when built with a manifest's ``parameters`` (to tell a statistic of a view
    left out from an unknown one). The read methods are shorthands for :func:`reader`.
    """

    name: str
    encoding: str
    encoding_version: str
    builder: Callable[[BuildContext, SnapshotWriter], Builder]
    requires: tuple[str, ...] = ()
    stats: Callable[[Mapping[str, Any]], list[str]] = _no_stats

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
    missing = [r for r in spec.requires if r not in _VIEWS]
    if missing:
        raise ValueError(f"view {spec.name!r} requires {missing[0]!r}, which is not registered before it")
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


def parse_views(value: str | Iterable[str] | None) -> list[str] | None:
    """The view names asked for (``"summary,quantiles"``, or a list of such), checked and in
    registration order; None (every view) for None or nothing named.

    >>> parse_views("quantiles, summary")
    ['quantiles', 'summary']
    >>> parse_views("summary,median")
    Traceback (most recent call last):
    widecube.errors.InvalidQuery: unknown view 'median'; views: genes, markers, matrix, quantiles, summary
    """
    if value is None:
        return None
    parts = [value] if isinstance(value, str) else list(value)
    names = {n.strip() for part in parts for n in str(part).split(",") if n.strip()}
    unknown = sorted(names - set(_VIEWS))
    if unknown:
        raise InvalidQuery(f"unknown view {unknown[0]!r}; views: {', '.join(_VIEWS)}")
    return [n for n in _VIEWS if n in names] or None


def select_views(names: Iterable[str] | None) -> list[ViewSpec]:
    """The views to build for ``names`` (None: every view): those named and every view they
    require, in registration order (the order they are built and verified).

    >>> [v.name for v in select_views(["summary"])]
    ['genes', 'summary']
    """
    wanted = parse_views(None if names is None else list(names))
    if wanted is None:
        return views()
    chosen: set[str] = set()
    todo = list(wanted)
    while todo:
        name = todo.pop()
        if name not in chosen:
            chosen.add(name)
            todo.extend(_VIEWS[name].requires)
    return [v for v in _VIEWS.values() if v.name in chosen]


def missing_view(snap: Snapshot, name: str, needed_for: str | None = None) -> ViewMissing:
    """The 422 for a read of view ``name``, which ``snap`` was built without: it names the
    ``--views`` that build what ``snap`` has, then ``name`` (views another one requires left
    out), and why it is needed (``needed_for``: "it serves median") if given.

    >>> raise missing_view(snap, "quantiles")   # doctest: +SKIP
    ViewMissing: dataset 'pbmc' version 3380… was ingested without the quantiles view;
    re-ingest with --views summary,quantiles
    """
    have = [n for n in _VIEWS if n in snap.manifest.get("views", {}) and n != name]
    implied = {r for n in [*have, name] for r in _VIEWS[n].requires}
    option = ",".join([*(n for n in have if n not in implied), name])
    why = f" ({needed_for})" if needed_for else ""  # unquoted: the API clips long quoted spans
    return ViewMissing(
        f"dataset {snap.dataset!r} version {snap.version} was ingested without the {name} view{why}; "
        f"re-ingest with --views {option}",
        dataset=snap.dataset,
        version=snap.version,
        view=name,
    )


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
    stored encoding when the view is missing or no reader here reads its encoding, and
    :class:`ViewMissing` (a 422) when the snapshot was built without it on purpose
    (``--views``; its manifest lists the views it was built with).

    >>> reader(snap, "genes", GenesReader).table("raw")   # doctest: +SKIP
    """
    entry = snap.manifest.get("views", {}).get(name)
    where = f"version {snap.version} of dataset {snap.dataset!r}"
    if entry is None and name in _VIEWS and snap.manifest.get("parameters", {}).get("views") is not None:
        raise missing_view(snap, name)
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
