"""Keep the C heap from growing with the number of blocks streamed (glibc only), let pass 2
reuse its memory instead of faulting in fresh pages for every slab, and keep Python's cyclic
collector off the objects that outlive a compute step.

glibc serves a large allocation from ``mmap`` (returned to the system on ``free``) only
above its mmap threshold, and it *raises* that threshold, up to 32 MiB, each time such a
block is freed. After the first blocks, the streaming engine's arrays of 1-32 MiB (a block's
buckets, a slab's temporaries) come from the heap arenas instead, where the reader thread
allocates and the compute thread frees; the arenas fragment and the process's RSS creeps up
block after block and never comes down.

Measured on B1M's pass 1 (1,000,000 x 30,000, 2 billion non-zeros), first 60 blocks of 8 M
values: RSS 676 -> 1023 MB and still rising with the default policy; flat at 680 MB with a
fixed 1 MiB threshold. :func:`bound_heap` pins the threshold (which also stops the dynamic
raise) and trims freed heap memory above 1 MiB, through ``mallopt(3)``.

Pass 2 allocates the same few sizes slab after slab (zarr's chunk buffers of a few MiB, the
views' per-slab arrays, the next slab's temporaries): under the 1 MiB policy every one is a
fresh ``mmap`` whose pages fault in and are zeroed by the kernel, then unmapped. Measured on
106 M values (pass 2, every view): 2.2-2.6 s of system time, 1.2-1.7 s with
:func:`roomy_heap`'s 32 MiB mmap and 128 MiB trim thresholds, at 160 MB more peak RSS (583
-> 741-751 MB), flat from slab to slab. The ingest holds it for the slab loop only.

Numba's first call in a process (at the start of pass 1: loading the cached kernels builds
its typing and target contexts) allocates enough objects to set off a full collection of
Python's cyclic collector, which walks every container object alive: the imports' and the
job's (170,000 of them on an ingest of the Poisson B100k), 0.06-0.085 s of pass 1, with one
core idle meanwhile. :func:`settled_objects` leaves what exists when a compute step starts
out of the collector's passes while it runs (``gc.freeze``): that collection took 0.017 s.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

__all__ = ["bound_heap", "roomy_heap", "roomy_policy", "settled_objects"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 20
_ROOMY_MMAP = 32 << 20
_ROOMY_TRIM = 128 << 20


@cache
def _libc() -> Any:
    """glibc's ``mallopt`` and ``malloc_trim``, or None (not Linux, or not glibc)."""
    if not sys.platform.startswith("linux"):
        return None
    try:  # glibc's soname, not ctypes.util.find_library (it runs `ldconfig -p` in a child)
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return None
    return libc


def _policy(mmap_threshold: int, trim_threshold: int) -> bool:
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )


def bound_heap() -> bool:
    """Pin the 1 MiB policy (again after :func:`roomy_heap`); True if it applies (glibc)."""
    return _policy(_THRESHOLD, _THRESHOLD)


def roomy_policy() -> bool:
    """Pin pass 2's policy: allocations up to 32 MiB come from the heap and up to 128 MiB of
    freed heap is kept for the next ones, until :func:`bound_heap` pins the 1 MiB one again
    (a Dask worker's pass-2 tasks, one after another; a pass-1 task pins its own). True if
    it applies (glibc)."""
    return _policy(_ROOMY_MMAP, _ROOMY_TRIM)


@contextmanager
def roomy_heap() -> Iterator[bool]:
    """Inside: :func:`roomy_policy` (pass 2's slab loop in one process). After: the 1 MiB
    policy again, and what the heap kept is returned to the system. Yields whether it
    applies (glibc)."""
    applied = roomy_policy()
    try:
        yield applied
    finally:
        if applied:
            bound_heap()
            _libc().malloc_trim(0)


_settled = threading.Lock()
_settling = [0, False]  # steps inside settled_objects(); whether the outermost froze


@contextmanager
def settled_objects() -> Iterator[None]:
    """Inside: the objects alive on entry are left out of the cyclic collector's passes
    (``gc.freeze``); on leaving, they are handed back to it (``gc.unfreeze``, into its oldest
    generation). Nested and concurrent steps share one freeze, lifted when the last leaves. A
    process that froze objects itself (before forking its workers, say) keeps them frozen:
    nothing is frozen or unfrozen here then."""
    with _settled:
        if _settling[0] == 0:
            _settling[1] = gc.get_freeze_count() == 0
            if _settling[1]:
                gc.freeze()
        _settling[0] += 1
    try:
        yield
    finally:
        with _settled:
            _settling[0] -= 1
            if _settling[0] == 0 and _settling[1]:
                gc.unfreeze()
