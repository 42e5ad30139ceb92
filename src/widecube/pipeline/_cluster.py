"""The two passes of an ingest on a Dask cluster: row ranges, then gene ranges, as tasks.

An ingest runs here, in one process, unless the settings name a cluster
(``WIDECUBE_CLUSTER=tcp://scheduler:8786``, ``--cluster``) or ask for a local one
(``WIDECUBE_WORKERS=N``, ``--workers N``: a :class:`distributed.LocalCluster` of N
single-threaded worker processes). :func:`dask_client` opens either (or nothing).

Pass 1 (:func:`spill_on_cluster`, for inputs that read a range of rows alone) is one task per
row range: each opens the input, spills its rows into gene buckets of its own in the job's
work folder (which every worker must then see at the same path) or, with the spill on an
object store (``WIDECUBE_SPILL=s3://…``), into its worker's local folder and then as one object
under the job's spill prefix (``compute.upload_part``; no folder is shared), and returns its
rows' library sizes; they are joined here in row order.

Pass 2 (:func:`build_on_cluster`) is one task per column chunk of the per-group view arrays
(``BuildContext.chunk_width``: whole spill buckets, ``compute.chunk_buckets`` of them). A
task reads its buckets from the work folder (shared storage: every worker must see them at
the same path) or as byte ranges of the objects pass 1 uploaded, runs every view's
:class:`~widecube.views.SlabPart` on their slabs and writes its genes straight into the
snapshot's Zarr arrays. A write goes through a ``ChunkSink``
(``snapshot._chunksink``): a chunk the task covers whole is written by the task, the pieces of
any other chunk (the matrix view's values, whose chunks straddle gene ranges) come back and
are written here, so no two processes ever write one chunk. What each part returns for the task's
slabs, as its ``combine`` sends it (the markers: the task's p-values and best genes, not every
gene's statistics), is merged here by its builder in gene order (the markers' ranking and the
Benjamini-Hochberg correction need every gene), so the snapshot is byte for byte the one a
single process builds.

A task writes nothing but its own chunks and reads its buckets without removing them, so Dask
may run it again on another worker when one dies; the client removes a task's buckets once its
result is in (after pass 2, removing B1M's whole 16 GB spill took 2.7 s; ext4 frees the
extents of every file), and the rest of the spill afterwards.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from ..compute import (
    JoinedSpill,
    ReadBuffers,
    SpillBuckets,
    SpillPart,
    roomy_policy,
    row_bounds,
    spill_rows,
    upload_part,
)
from ..config import Settings
from ..errors import InputError
from ..io import MatrixSource, prefetch
from ..snapshot import ChunkSink, Piece, Storage, absorb_recorded, take_recorded
from ..views import BuildContext, Builder, SlabPart

__all__ = ["ChunkSink", "Piece", "build_on_cluster", "dask_client", "spill_on_cluster"]

_RETRIES = 2  # a task that raised (an I/O error) runs again; a lost worker's tasks always do


@contextlib.contextmanager
def dask_client(settings: Settings) -> Iterator[Any]:
    """A :class:`distributed.Client` of the cluster the settings name, or of a local cluster of
    ``settings.workers`` single-threaded processes; None when they name neither."""
    if not settings.cluster and not settings.workers:
        yield None
        return
    import dask
    from distributed import Client, LocalCluster

    if settings.cluster:
        with Client(settings.cluster, timeout="30s") as client:  # type: ignore[no-untyped-call]
            yield client
        return
    with (
        # no statistical profiler in the workers: its thread takes the GIL every 10 ms to walk
        # the running task's stack (an idle worker: 1.2 against 0.7 CPU-s in 30 s, as
        # tests/_dask.py measured), for a dashboard a local cluster does not have
        dask.config.set({"distributed.worker.profile.enabled": False}),
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=settings.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # no dashboard; the scheduler's HTTP endpoints (health, metrics) on a free port
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            host="127.0.0.1",
        ) as cluster,
        # results straight from the workers: through the scheduler (Dask's default for a
        # client outside the cluster) each crossed loopback twice into this process, the
        # scheduler's and the client's (B1M: 64 pass-2 results of 20-80 MB, the p-values and
        # the shared chunks' pieces; 10 s of the client's CPU, most of it zeroing buffers)
        Client(cluster, direct_to_workers=True) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


def _task(
    ctx: BuildContext, parts: Sequence[SlabPart], buckets: SpillBuckets, first: int, stop: int, scratch: Path
) -> tuple[list[list[Any]], list[Piece], dict[str, Any]]:
    """Pass 2 of buckets ``first..stop-1`` (one column chunk of the per-group arrays) on a
    worker: every part on every slab; (each part's results, as its :meth:`~SlabPart.combine`
    sends them; leftover pieces; the sha256 of every chunk the worker wrote, for the
    manifest: ``snapshot.take_recorded``).

    The worker's heap keeps freed memory for the next slab, and the next task (pass 2's
    policy, as the single process's slab loop has it): without it every slab's arrays are
    fresh ``mmap`` pages the kernel faults in and zeroes (after pass 1, a worker's heap is
    pinned to 1 MiB; a worker Dask's nanny started trims above 64 KiB)."""
    _numba_threads_as_worker()
    roomy_policy()
    if buckets.on_object_store:  # an oversized bucket is split on this worker's own disk
        scratch = _local_folder()
    sink = ChunkSink()
    per_slab = []
    buffers = ReadBuffers()  # the read buffer and the slabs' arrays, reused from slab to slab
    slabs_of = (buckets.slabs(b, consume=False, scratch=scratch, buffers=buffers) for b in range(first, stop))
    with contextlib.closing(prefetch(itertools.chain.from_iterable(slabs_of), depth=1)) as slabs:
        for slab in slabs:  # the next slab is read while the parts work on this one
            stats = ctx.slab_stats(slab)
            per_slab.append([part.run(stats, sink) for part in parts])
    results = [part.combine([slab[i] for slab in per_slab]) for i, part in enumerate(parts)]
    return results, sink.leftovers(), take_recorded()


def _local_folder() -> Path:
    """The worker's own local folder (``dask worker --local-directory``; the system's
    temporary folder outside a worker), for files no other process reads."""
    from distributed import get_worker

    try:
        return Path(get_worker().local_directory)
    except ValueError:  # not in a worker (a test calling the task itself)
        return Path(tempfile.gettempdir())


def _numba_threads_as_worker() -> None:
    """The numba kernels use as many threads as the worker runs tasks (its ``--nthreads``),
    not every core of the host (results do not depend on it: each gene is one thread's)."""
    import numba
    from distributed import get_worker

    with contextlib.suppress(ValueError):  # not in a worker (a test calling the task itself)
        most = int(getattr(numba.config, "NUMBA_NUM_THREADS", 1))
        numba.set_num_threads(max(1, min(most, get_worker().state.nthreads)))


def build_on_cluster(
    client: Any,
    ctx: BuildContext,
    buckets: SpillBuckets,
    builders: Sequence[Builder],
    scratch: Path,
    progress: Callable[[float], None],
) -> None:
    """Pass 2 on ``client``'s cluster, a task per column chunk of the per-group arrays
    (``ctx.chunk_width // ctx.slab_width`` buckets); builders merge here, in gene order, and
    the chunks that tasks share are put together and written here (one writer each: never
    the snapshot writer's background pool, whose locks are per array object)."""
    [ctx_future] = client.scatter([ctx], broadcast=True, hash=False)
    parts = [builder.part() for builder in builders]
    run = uuid.uuid4().hex[:8]  # a step run again never meets the keys of a run it replaced
    step, n = max(1, ctx.chunk_width // buckets.width), buckets.n_buckets
    spans = [(b, min(b + step, n)) for b in range(0, n, step)]  # a column chunk's buckets each
    futures = [
        client.submit(
            _task,
            ctx_future,
            parts,
            buckets,
            first,
            stop,
            scratch,
            key=f"widecube-pass2-{ctx.version}-{run}-{first:05d}",
            pure=False,
            retries=_RETRIES,
        )
        for first, stop in spans
    ]
    shared = ChunkSink()  # the chunks tasks share: each written whole, here, once complete
    try:
        for (first, stop), future in zip(spans, futures, strict=True):
            results, leftovers, recorded = future.result()
            future.release()
            absorb_recorded(recorded)
            for builder, part_results in zip(builders, results, strict=True):
                for result in part_results:
                    builder.merge(result)
            for array, inter, values in leftovers:
                shared(array, tuple(slice(start, stop) for start, stop in inter), values)
            buckets.remove(first, stop)  # read for good: gone now, as one process consumes them
            lo, hi = buckets.genes(first)[0], buckets.genes(stop - 1)[1]
            progress((hi - lo) / ctx.n_genes)
        missing = shared.leftovers()
        if missing:  # every gene was written, so every chunk is complete: a bug if not
            array, inter, _ = missing[0]
            raise RuntimeError(f"pass 2 left chunk of {array.path} at {inter} incomplete")
    finally:
        client.cancel(futures)
        client.cancel([ctx_future])


class _Names(Sequence[str]):
    """Cell or gene names read only if asked for (a pass-1 task names them in errors alone)."""

    def __init__(self, read: Callable[[], Sequence[str]]) -> None:
        self._read = read
        self._names: Sequence[str] | None = None

    def _all(self) -> Sequence[str]:
        if self._names is None:
            self._names = self._read()
        return self._names

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...
    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        return self._all()[i]

    def __len__(self) -> int:
        return len(self._all())


def _pass1_task(
    opener: Callable[[], MatrixSource],
    start: int,
    stop: int,
    workdir: Path,
    block_nnz: int,
    slab_bytes: int,
    direct: bool,
    remote: tuple[Storage, str] | None = None,
) -> SpillPart | InputError:
    """Pass 1 of rows ``start..stop-1`` on a worker, into a spill of its own under ``workdir``,
    or with ``remote`` ``(storage, name)``, under the worker's local folder and then as the
    object ``name`` in ``storage`` (the local files removed).

    A bad input is returned, not raised: Dask would retry a task that raised, and reading the
    same rows again finds the same fault."""
    _numba_threads_as_worker()
    if remote is not None:  # the worker's own folder; read back around the cache for the upload
        workdir = _local_folder() / f"widecube-pass1-{uuid.uuid4().hex}"
    try:
        with opener() as source:
            part = _spill_rows(source, start, stop, workdir, block_nnz, slab_bytes, direct)
        return part if remote is None else upload_part(part, *remote)
    except InputError as exc:
        return exc
    finally:
        if remote is not None:  # the worker's own copy: uploaded, or of no use
            shutil.rmtree(workdir, ignore_errors=True)


def _spill_rows(
    source: MatrixSource, start: int, stop: int, workdir: Path, block_nnz: int, slab_bytes: int, direct: bool
) -> SpillPart:
    return spill_rows(
        source,
        start,
        stop,
        obs_names=_Names(lambda: source.obs().index),
        var_names=_Names(lambda: source.var().index),
        workdir=workdir,
        block_nnz=block_nnz,
        slab_bytes=slab_bytes,
        direct=direct,
    )


def spill_on_cluster(
    client: Any,
    opener: Callable[[], MatrixSource],
    source: MatrixSource,
    *,
    workdir: Path,
    block_nnz: int,
    slab_bytes: int,
    version: str,
    progress: Callable[[float], None],
    direct: bool = True,
    remote: Storage | None = None,
) -> JoinedSpill:
    """Pass 1 split by rows on ``client``'s cluster: each task opens the input (``opener``,
    picklable, the same path on every worker), spills its rows into ``workdir/pass1/p<i>``
    (with ``remote``: into its worker's own folder, then as the object ``p<i>.spill`` there);
    the library sizes and bucket sizes are put together here, in row order.

    ``source`` (open here) must read row ranges (:attr:`MatrixSource.row_ranges`). Rows are
    cut into at least two tasks per worker thread, and more for a large input (about 16
    blocks of ``block_nnz`` values each). The first bad input in row order is raised, as
    the single-process pass 1 raises it. ``direct`` as :func:`~widecube.compute.spill_by_gene`
    says.
    """
    n_cells, n_genes = source.shape
    threads = max(1, sum(client.nthreads().values()))
    bounds = row_bounds(n_cells, source.nnz_expected, threads, block_nnz)
    root = workdir / "pass1"
    run = uuid.uuid4().hex[:8]
    futures = [
        client.submit(
            _pass1_task,
            opener,
            a,
            b,
            root / f"p{i:05d}",
            block_nnz,
            slab_bytes,
            direct,
            None if remote is None else (remote, f"p{i:05d}.spill"),
            key=f"widecube-pass1-{version}-{run}-{i:05d}",
            pure=False,
            retries=_RETRIES,
        )
        for i, (a, b) in enumerate(itertools.pairwise(bounds))
    ]
    parts: list[SpillPart] = []
    try:
        for future in futures:
            part = future.result()
            future.release()
            if isinstance(part, InputError):
                raise part
            parts.append(part)
            progress((part.stop - part.start) / max(1, n_cells))
        return JoinedSpill(parts, n_cells=n_cells, n_genes=n_genes)
    except BaseException:
        client.cancel(futures)
        shutil.rmtree(root, ignore_errors=True)
        if remote is not None:  # a task still running may upload after this: reclaim_orphans
            remote.remove()
        raise
