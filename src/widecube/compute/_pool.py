"""Arrays reused once nothing refers to them any more, in place of fresh ones.

A fresh array of a few MiB or more is fresh pages: the kernel zeroes each as it is first
written, and the streaming engine allocates the same sizes slab after slab (the sort's outputs
in pass 2's reader, the matrix view's whole chunks). Under pass 2's heap policy
(``_malloc.roomy_heap``) they still came fresh: a thread's arena lives in heaps of 64 MiB
that glibc unmapped and mapped again (strace over one ingest: dozens of 64 MiB ``munmap``
and 128 MiB ``mmap`` calls from pass 2's threads), and numpy advises huge pages on each large
array, zeroed 2 MiB at a time. On the Poisson B100k, page zeroing under those two took about
1.5 CPU-s of pass 2's 35.

An :class:`ArrayPool` hands out views of arrays it keeps, and hands one out again only when
its reference count says no one else holds it or any view of it (numpy views keep their base,
the array that owns the memory, so a slab, a slice of it or a background write still holding
a piece keeps it busy). One thread takes from a pool; any thread may let go of what it took.

    >>> pool = ArrayPool()
    >>> a = pool.take(1000, np.int32)
    >>> b = pool.take(1000, np.int32)   # `a` is held: another array
    >>> a.base is b.base
    False
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

__all__ = ["ArrayPool"]

_UNHELD = 3
"""``sys.getrefcount`` of a kept array nothing else refers to: the pool's list, the loop's
variable and getrefcount's own argument (tests/compute/test_pool.py pins it)."""


class ArrayPool:
    """At most ``keep`` arrays, each handed out again once nothing else refers to it."""

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self._kept: list[np.ndarray] = []

    def take(self, n: int, dtype: np.dtype[Any] | type) -> np.ndarray:
        """``n`` values of ``dtype`` (uninitialized): the first kept array long enough that
        nothing else holds, else a new one a quarter longer (sizes vary from slab to slab),
        kept in place of the oldest when ``keep`` are (freed once whatever holds it lets go)."""
        dtype = np.dtype(dtype)
        for owner in self._kept:
            if owner.dtype == dtype and owner.shape[0] >= n and sys.getrefcount(owner) <= _UNHELD:
                return owner[:n]
        owner = np.empty(n + n // 4, dtype=dtype)
        self._kept.append(owner)
        if len(self._kept) > self.keep:
            del self._kept[0]
        return owner[:n]

    def __len__(self) -> int:
        return len(self._kept)
