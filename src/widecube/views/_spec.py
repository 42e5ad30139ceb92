"""What a view is: a precomputed product of the two passes, stored in every snapshot.

The pipeline streams the input once (pass 1, building the gene-major spill and per-cell
library sizes), then walks gene slabs (pass 2). A view is a stateless spec (``_registry``)
whose :class:`Builder`, created afresh for each build, creates the view's arrays, fills the
genes of each slab (from the shared :class:`SlabStats`) and returns its manifest entry, which
the writer stamps with the spec's encoding. Reading is separate: a :class:`ViewReader` per
stored ``(encoding, encoding_version)`` verifies the view and answers queries. The pipeline,
the verifier and the API iterate over the registry; nothing else lists views.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import zarr

from ..compute import (
    GeneSlab,
    Grouping,
    all_cells,
    cell_scale,
    gene_moments,
    log1p_table,
    log_normalize,
    make_grouping,
)
from ..compute.groupings import ALL, ALL_CELLS_GROUP
from ..snapshot import Snapshot, SnapshotWriter
from ._layers import INPUT, NORMALIZED

__all__ = [
    "INPUT",
    "NORMALIZED",
    "BuildContext",
    "Builder",
    "LayerMoments",
    "Put",
    "SlabPart",
    "SlabStats",
    "ViewReader",
]

LOG1P_COUNTS = 4
"""Counts of 1 to 4 take their normalized value from a per-cell table: about 85 % of the
non-zeros of a UMI matrix (the demo B100k: 1 59 %, 2 17 %, 3 7 %, 4 4 %)."""


@dataclass
class BuildContext:
    """What views know about the version being built."""

    dataset: str
    version: str
    obs: pd.DataFrame
    var: pd.DataFrame
    groupbys: list[str]
    max_categories: int = 10_000
    quantiles: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
    target_sum: float = 1e4
    layers: list[str] = field(default_factory=lambda: [INPUT])
    input_kind: str = "counts"  # counts, log1p or scaled (see _layers)
    cell_total: np.ndarray | None = None
    slab_width: int = 4096  # genes per spill bucket
    chunk_width: int = 4096  # genes per column chunk of a per-group array: whole buckets
    nnz: int = 0
    value_dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    all_cells_key: str | None = None  # the synthetic one-group grouping (input without groupings)
    _groupings: dict[str, Grouping] = field(default_factory=dict)
    _buffers: dict[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_cells(self) -> int:
        return len(self.obs)

    @property
    def n_genes(self) -> int:
        return len(self.var)

    def grouping(self, key: str) -> Grouping:
        """The grouping named ``key`` (``ALL`` and ``all_cells_key`` are every cell in one
        group), built once."""
        if key not in self._groupings:
            if key == ALL:
                self._groupings[key] = all_cells(self.n_cells)
            elif key == self.all_cells_key:
                self._groupings[key] = all_cells(self.n_cells, key, ALL_CELLS_GROUP)
            else:
                self._groupings[key] = make_grouping(self.obs, key, max_categories=self.max_categories)
        return self._groupings[key]

    @cached_property
    def stacked(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(keys, offsets, codes): every grouping plus ALL (last; one group, every cell) on one
        stacked group axis."""
        keys = [*self.groupbys, ALL]
        groupings = [self.grouping(k) for k in keys]
        offsets = np.cumsum([0] + [g.n_groups for g in groupings])
        codes = np.empty((len(keys), self.n_cells), dtype=np.int32)
        for i, g in enumerate(groupings):
            codes[i] = g.codes + offsets[i]
        return keys, offsets, codes

    @cached_property
    def scale(self) -> np.ndarray:
        """Per cell ``target_sum / library size`` (0 for empty cells)."""
        assert self.cell_total is not None
        return cell_scale(self.cell_total, self.target_sum)

    @cached_property
    def log1p_table(self) -> np.ndarray:
        """Per cell the normalized value of a count of 1 to :data:`LOG1P_COUNTS`
        (:func:`~widecube.compute.log1p_table`; 32 bytes a cell). Built in each process that
        uses it, never pickled: on a cluster each worker makes its own."""
        return log1p_table(self.scale, LOG1P_COUNTS)

    def slab_stats(self, slab: GeneSlab) -> SlabStats:
        return SlabStats(self, slab)

    def slab_buffer(self, n: int) -> np.ndarray:
        """``n`` float64 values of the calling thread's buffer for its current slab (one
        slab's normalized values): each thread reuses its own from slab to slab, instead of
        fresh pages for every slab. Not pickled: a copy of the context starts with none."""
        key = threading.get_ident()
        buf = self._buffers.get(key)
        if buf is None or buf.shape[0] < n:
            buf = self._buffers[key] = np.empty(n + n // 4)  # room for slabs a little larger
        return buf[:n]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_buffers"] = {}
        state.pop("log1p_table", None)
        return state


@dataclass(frozen=True)
class LayerMoments:
    """Per (gene of the slab, stacked group): sum, sumsq, nnz; per gene: min, max (stored)."""

    sum: np.ndarray
    sumsq: np.ndarray
    nnz: np.ndarray
    min: np.ndarray
    max: np.ndarray

    def of(self, ctx: BuildContext, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Group-major ``(n_groups, n_genes_in_slab)`` moments of grouping ``key``."""
        keys, offsets, _ = ctx.stacked
        i = keys.index(key)
        a, b = offsets[i], offsets[i + 1]
        return self.sum[:, a:b].T, self.sumsq[:, a:b].T, self.nnz[:, a:b].T


class SlabStats:
    """Everything views share about one gene slab, computed at most once.

    The moments of every layer come from one pass over the slab (:func:`gene_moments`, which
    also writes the normalized values); the normalized values alone, when no view asks for
    moments, from :func:`log_normalize`. Both land in the build's buffer of the calling
    thread (:meth:`BuildContext.slab_buffer`): valid until that thread's next slab. Asked
    from two threads (a builder :attr:`~Builder.beside` the others), each is computed once.
    """

    def __init__(self, ctx: BuildContext, slab: GeneSlab) -> None:
        self.ctx = ctx
        self.slab = slab
        self._values: dict[str, np.ndarray] = {INPUT: slab.vals}
        self._moments: dict[str, LayerMoments] = {}
        self._lock = threading.RLock()  # builders beside the others ask from their thread

    def values(self, layer: str) -> np.ndarray:
        """The slab's stored values in ``layer`` (aligned with ``slab.cells``)."""
        with self._lock:
            return self._values_locked(layer)

    def _values_locked(self, layer: str) -> np.ndarray:
        if layer not in self._values:
            if layer != NORMALIZED:
                raise KeyError(f"no layer {layer!r} in this build (layers: {', '.join(self.ctx.layers)})")
            out = self.ctx.slab_buffer(self.slab.vals.shape[0])
            log_normalize(self.slab.cells, self.slab.vals, self.ctx.scale, out)
            self._values[layer] = out
        return self._values[layer]

    def moments(self, layer: str) -> LayerMoments:
        """Per (gene, stacked group) moments of ``layer`` (every layer's, on first call)."""
        with self._lock:
            return self._moments_locked(layer)

    def _moments_locked(self, layer: str) -> LayerMoments:
        if not self._moments:
            ctx, slab = self.ctx, self.slab
            layers = ctx.layers
            if layers[0] != INPUT or layers[1:] not in ([], [NORMALIZED]):
                raise ValueError(
                    f"moments are computed for {INPUT} and optionally {NORMALIZED}, not {layers}"
                )
            _, offsets, codes = ctx.stacked
            n_layers, w, g = len(layers), slab.width, int(offsets[-1])
            s, sq = np.empty((n_layers, w, g)), np.empty((n_layers, w, g))
            nnz = np.empty((w, g), dtype=np.int32)
            lo, hi = np.empty((n_layers, w)), np.empty((n_layers, w))
            normalized = ctx.slab_buffer(slab.vals.shape[0]) if n_layers > 1 else np.empty(0)
            scale = ctx.scale if n_layers > 1 else np.empty(0)
            table = ctx.log1p_table if n_layers > 1 else np.empty((0, 0))
            groupings = codes[:-1]  # ALL, last, is every cell: the kernel adds it apart
            gene_moments(
                slab.indptr, slab.cells, slab.vals, scale, table, groupings, s, sq, nnz, lo, hi, normalized
            )
            if n_layers > 1:
                self._values[NORMALIZED] = normalized
            for i, name in enumerate(layers):
                self._moments[name] = LayerMoments(s[i], sq[i], nnz, lo[i], hi[i])
        return self._moments[layer]


Put = Callable[["zarr.Array[Any]", tuple[slice, ...], np.ndarray], None]
"""``put(array, region, values)``: write ``values`` into ``array[region]`` (the snapshot
writer's background :meth:`~widecube.snapshot.SnapshotWriter.put` in the build's own process;
a direct, chunk-aware write in a pass-2 task on a cluster)."""


class SlabPart(ABC):
    """The half of a build that works on one slab wherever the slab is (this process, or a
    Dask worker): it holds no build state, only where the view's arrays are, so it pickles.

    :meth:`run` writes the slab's genes into the view's arrays through ``put`` and returns
    what the builder needs from the slab (small, picklable; None when nothing), which
    :meth:`Builder.merge` takes in gene order, in the build's own process.
    """

    @abstractmethod
    def run(self, stats: SlabStats, put: Put) -> Any:
        """Write the genes of one slab; return what :meth:`Builder.merge` needs."""

    def combine(self, results: list[Any]) -> list[Any]:
        """What a cluster's task sends back for the :meth:`run` results of its slabs (in gene
        order), each of which :meth:`Builder.merge` takes as it takes one slab's: by default
        all of them; a part whose results fold together sends fewer (the markers: the task's
        best genes, not every gene's statistics)."""
        return results


class Builder(ABC):
    """One build of one view: created per build by its spec (``spec.builder(ctx, out)``),
    it holds every piece of build state, so two builds never share one.

    The constructor creates the view's arrays before the first slab; :meth:`consume` fills
    in the genes of one slab (from the shared :class:`SlabStats`): its :meth:`part` does the
    per-slab work, :meth:`merge` folds what that returned into the build's state, slabs in
    gene order (a cluster runs the parts of many slabs on workers and merges here);
    :meth:`finish` seals the view and returns its manifest entry. The writer stamps the
    spec's encoding on that entry (:meth:`~widecube.snapshot.SnapshotWriter.add_view`): a
    builder never writes it.
    """

    beside: ClassVar[bool] = False
    """Whether :meth:`consume` may run on a thread beside the other builders' (the build
    waits for it before the next slab): a builder whose per-slab work is single-threaded
    numpy (the markers' ranking, the matrix's copies) lets the next builders' kernels use
    the other core meanwhile. It reads only the slab and its :class:`SlabStats` and writes
    through ``put``, both safe from two threads."""

    def __init__(self, ctx: BuildContext, out: SnapshotWriter) -> None:
        self.ctx = ctx
        self.out = out

    @abstractmethod
    def part(self) -> SlabPart:
        """The per-slab half of this build (picklable; it shares no state with the builder)."""

    def merge(self, result: Any) -> None:  # noqa: B027 - a view whose arrays hold it all
        """Fold one slab's :meth:`SlabPart.run` result into the build (slabs in gene order)."""

    def consume(self, stats: SlabStats) -> None:
        """Fill in the genes of one slab, here."""
        self.merge(self.part().run(stats, self.out.put))

    @abstractmethod
    def finish(self) -> dict[str, Any]:
        """Seal the view; return what readers need in its manifest entry (no encoding)."""


class ViewReader:
    """Reads one view of one snapshot as stored in one ``(encoding, encoding_version)``.

    A subclass is registered for the encoding it reads with
    :func:`~widecube.views.register_read`; :func:`~widecube.views.reader` picks it by what the
    snapshot's manifest says and creates one per call (it holds no more than the snapshot
    and the view's manifest entry; decoded data is memoized on the snapshot). A view's first
    reader defines the methods its callers use; a reader of a later encoding subclasses it
    and answers the same calls, so callers never ask which encoding they read.
    """

    name: ClassVar[str]
    encoding: ClassVar[str]
    encoding_version: ClassVar[str]

    def __init__(self, snap: Snapshot, entry: dict[str, Any]) -> None:
        self.snap = snap
        self.entry = entry

    def where(self, *detail: str) -> str:
        """``dataset@version view[detail, ...]``, for messages."""
        inner = f"[{', '.join(detail)}]" if detail else ""
        return f"{self.snap.dataset}@{self.snap.version} {self.name}{inner}"

    def verify(self) -> None:  # noqa: B027 - a view with no invariants has nothing to check
        """Raise :class:`~widecube.errors.VerificationError` if the stored view is wrong."""

    def unread_by_verify(self) -> list[str]:
        """Folders of the snapshot whose files :meth:`verify` never reads (default: none): on
        an object store, verify hashes them without keeping a local copy for the invariants."""
        return []

    def served(self) -> list[str]:
        """The statistics this view answers in per-group queries (none by default)."""
        return []

    def query(
        self, groupby: str, layer: str, gene_idx: np.ndarray, stats: Sequence[str]
    ) -> tuple[list[str], dict[str, np.ndarray]]:
        """(groups, {stat: (n_groups, n_genes)}) for ``stats`` among :meth:`served`."""
        raise NotImplementedError(f"view {self.name!r} answers no per-group statistics")

    def describe(self) -> dict[str, Any]:
        """What the API lists about this view for a dataset (default: its manifest entry)."""
        return dict(self.entry)
