"""The matrix view: a gene-major (CSC) copy of the raw matrix, for per-gene cell values.

Reading every cell's value of one gene touches one contiguous range of ``X/data`` and
``X/indices``. Stored as ``views/matrix.zarr``, an AnnData (Zarr v3) whose X is a
``csc_matrix`` with the dataset's obs (with per-cell ``total_counts`` and
``n_genes_by_counts``) and var: ``anndata.read_zarr(f"{snapshot}/views/matrix.zarr").X``.
The normalized layer is not stored: it is ``log1p(x * target_sum / total_counts)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from ..compute import ArrayPool
from ..errors import VerificationError
from ..snapshot import SnapshotWriter, checked, zarr_array, zarr_group
from ._layers import INPUT
from ._registry import ViewSpec, reader, register_read, register_view
from ._spec import BuildContext, Builder, Put, SlabPart, SlabStats, ViewReader
from .genes import GenesReader

__all__ = ["ENCODING", "MATRIX", "MatrixBuilder", "MatrixPart", "MatrixReader"]

ENCODING = ("widecube-gene-major", "0.1.0")
"""What this code writes; its reader stays registered when a later encoding replaces it."""

PATH = "views/matrix.zarr"
_CHUNK = 1 << 22
"""Stored values per chunk of ``X/data`` and ``X/indices`` (16 MiB of each before
compression). The reader decodes them into the server's cache, so a chunk's size is not paid
per request; on an object store each chunk is one PUT and, in verify, one GET: at 1 Mi values
B1M's matrix was 3,804 of its 7,266 objects, at 4 Mi 952."""

_COPIES = SnapshotWriter.IN_FLIGHT_BYTES // (4 * _CHUNK) + 4
"""Chunk-long copies a builder keeps (:meth:`MatrixBuilder._joined`): as many as the snapshot
writer lets wait (:attr:`~widecube.snapshot.SnapshotWriter.IN_FLIGHT_BYTES` of values and
cells, 4 bytes each at least), the two a slab's tail waits in and the two being joined."""


@dataclass(frozen=True)
class MatrixPart(SlabPart):
    """Writes one slab's values and cells at their gene-major place (``slab.start``);
    returns its genes' pointers."""

    data: zarr.Array[Any]
    indices: zarr.Array[Any]

    def run(self, stats: SlabStats, put: Put) -> tuple[int, int, int, np.ndarray]:
        slab = stats.slab
        region = (slice(slab.start, slab.start + slab.vals.shape[0]),)
        put(self.data, region, slab.vals)
        put(self.indices, region, slab.cells)
        return slab.lo, slab.hi, slab.start, slab.indptr


class MatrixBuilder(Builder):
    """Appends each slab's stored values (already gene-major) to one CSC ``X``."""

    beside = True  # its copies into whole chunks are single-threaded: beside the quantiles

    def __init__(self, ctx: BuildContext, out: SnapshotWriter) -> None:
        super().__init__(ctx, out)
        obs = ctx.obs.copy()
        obs.index = obs.index.astype(str)
        var = pd.DataFrame(index=pd.Index(ctx.var.index.astype(str)))
        import anndata  # on first use: the facades' import stays light for the CLI

        out.write_anndata(PATH, anndata.AnnData(obs=obs, var=var))
        group = zarr.open_group(out.store(PATH), mode="a", zarr_format=3).create_group(
            "X",  # with its attributes: one metadata write, not a group then its attributes
            attributes={
                "encoding-type": "csc_matrix",
                "encoding-version": "0.1.0",
                "shape": [ctx.n_cells, ctx.n_genes],
            },
        )
        n = max(1, ctx.nnz)
        self._data = group.create_array(
            "data",
            shape=(ctx.nnz,),
            dtype=ctx.value_dtype,
            chunks=(min(n, _CHUNK),),
            compressors=checked(ZstdCodec(level=1)),
            config={"write_empty_chunks": True},
        )
        self._indices = group.create_array(
            "indices",
            shape=(ctx.nnz,),
            dtype=np.int32,
            chunks=(min(n, _CHUNK),),
            compressors=checked(BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle", typesize=4)),
            config={"write_empty_chunks": True},
        )
        self._indptr = np.zeros(ctx.n_genes + 1, dtype=np.int64)
        self._group = group
        self._pos = 0
        # values consumed but not written yet (less than a chunk), from value _pending_at on
        self._pending: tuple[np.ndarray, np.ndarray] = (
            np.empty(0, dtype=ctx.value_dtype),
            np.empty(0, dtype=np.int32),
        )
        self._pending_at = 0
        # the copies into whole chunks, reused once written: this builder's thread takes
        # them, the writers let go (see _joined)
        self._copies = ArrayPool(keep=_COPIES)

    def part(self) -> MatrixPart:
        return MatrixPart(self._data, self._indices)

    def merge(self, result: tuple[int, int, int, np.ndarray]) -> None:
        lo, hi, start, indptr = result
        self._indptr[lo + 1 : hi + 1] = start + indptr[1:]
        self._pos += int(indptr[-1])

    def consume(self, stats: SlabStats) -> None:
        """Write whole chunks only: a slab's last, partial chunk waits for the next slab.

        Slabs end anywhere in a chunk; writing each as it comes made zarr write every chunk
        that two slabs share twice and decompress it once in between (15 % of the view's
        CPU, measured). Here the values wait (a copy of less than a chunk) and the chunk is
        written once, whole. A cluster's parts still write their slabs as they are
        (:class:`MatrixPart`, whose chunk sink joins shared chunks)."""
        slab = stats.slab
        vals, cells, start = slab.vals, slab.cells, slab.start
        if start != self._pending_at + self._pending[0].shape[0]:
            raise ValueError(f"matrix: slab at value {start} after values up to {self._pending_at}")
        end = start + vals.shape[0]
        cut = end if end == self.ctx.nnz else end - end % _CHUNK  # the last whole chunk's end
        at = self._pending_at
        if cut > at:
            if self._pending[0].shape[0]:  # the waiting values and this slab's head: one chunk
                head = min(cut, at + _CHUNK) - start
                self._put(
                    at,
                    self._joined(self._pending[0], vals[:head]),
                    self._joined(self._pending[1], cells[:head]),
                )
                at = start + head
            self._put(at, vals[at - start : cut - start], cells[at - start : cut - start])
            self._pending_at = cut
            self._pending = (self._joined(vals[cut - start :]), self._joined(cells[cut - start :]))
        else:
            self._pending = (self._joined(self._pending[0], vals), self._joined(self._pending[1], cells))
        self.merge((slab.lo, slab.hi, slab.start, slab.indptr))

    def _joined(self, *parts: np.ndarray) -> np.ndarray:
        """``parts`` (a chunk's worth at most) one after the other in an array of
        :attr:`_copies`; a background write holds it until it lands.

        Every copy is taken a whole chunk long, so any copy let go fits the next join. Taken
        as long as each join (a slab's tail waiting is shorter than a chunk), a chunk found
        the arrays let go too short and took a fresh one, evicting a kept one: 87 fresh arrays
        in 700 joins on the demo B100k, whose first touch was 0.5 s of page faults and
        zeroing (``perf``: a huge page zeroed under ``np.concatenate``)."""
        n = sum(p.shape[0] for p in parts)
        return np.concatenate(parts, out=self._copies.take(_CHUNK, np.result_type(*parts))[:n])

    def _put(self, at: int, vals: np.ndarray, cells: np.ndarray) -> None:
        if vals.shape[0]:
            region = (slice(at, at + vals.shape[0]),)
            self.out.put(self._data, region, vals)
            self.out.put(self._indices, region, cells)

    def finish(self) -> dict[str, Any]:
        self._put(self._pending_at, *self._pending)  # the last values, if a slab left some waiting
        indptr = self._group.create_array(
            "indptr",
            shape=self._indptr.shape,
            dtype=np.int64,
            chunks=(min(len(self._indptr), _CHUNK),),
            compressors=checked(ZstdCodec()),
        )
        self.out.put(indptr, (slice(None),), self._indptr)
        self.out.consolidate(PATH)
        return {"path": PATH, "nnz": int(self._pos), "target_sum": self.ctx.target_sum}


@register_read("matrix", *ENCODING)
class MatrixReader(ViewReader):
    """``path`` (an AnnData whose ``X`` is a CSC matrix of the raw values), ``nnz``,
    ``target_sum`` (of the normalized layer, which is computed, not stored)."""

    def csc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(indptr, indices, data)`` of the cells × genes CSC matrix, decoded (memory-mapped
        from the decoded cache when the snapshot has one)."""
        x = f"{self.entry['path']}/X"
        return self.snap.array(f"{x}/indptr"), self.snap.array(f"{x}/indices"), self.snap.array(f"{x}/data")

    @property
    def target_sum(self) -> float:
        """What each cell's values are scaled to sum to before ``log1p`` (normalized layer)."""
        return float(self.entry.get("target_sum", 1e4))

    def unread_by_verify(self) -> list[str]:
        """The chunks of the values and their gene indices (the bulk of a snapshot: verify reads
        ``indptr`` and the arrays' metadata, never their values)."""
        x = f"{self.entry['path']}/X"
        return [f"{x}/data/c", f"{x}/indices/c"]

    def verify(self) -> None:
        snap, entry = self.snap, self.entry
        x = zarr_group(snap.group(entry["path"]), "X")
        indptr = np.asarray(zarr_array(x, "indptr")[...])
        where = self.where()
        if indptr.shape != (snap.n_genes + 1,) or indptr[0] != 0 or (np.diff(indptr) < 0).any():
            raise VerificationError(f"{where}: indptr is not a valid CSC pointer over {snap.n_genes} genes")
        if int(indptr[-1]) != int(entry["nnz"]) or zarr_array(x, "data").shape[0] != int(entry["nnz"]):
            raise VerificationError(f"{where}: holds {int(indptr[-1])} values, expected {entry['nnz']}")
        genes = reader(snap, "genes", GenesReader).table(INPUT)["n_cells_expressing"].to_numpy()
        if not np.array_equal(np.diff(indptr), genes):
            j = int(np.argmax(np.diff(indptr) != genes))
            raise VerificationError(
                f"{where}: gene {snap.var_names[j]!r} has {np.diff(indptr)[j]} values, expected {genes[j]}"
            )


MATRIX = register_view(ViewSpec("matrix", *ENCODING, MatrixBuilder, requires=("genes",)))
"""Requires the genes view: its verifier checks each gene's number of values against it."""
