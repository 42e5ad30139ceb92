"""The malloc policies of the two passes, by the page faults a large allocation costs."""

from __future__ import annotations

import resource
from collections.abc import Callable

import pytest

from widecube.compute._malloc import bound_heap, roomy_heap

SIZE = 16 << 20
PAGES = SIZE // 4096


def faults(fn: Callable[[], object]) -> int:
    """Minor page faults while ``fn`` runs."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def touch() -> None:
    """Allocate 16 MiB, write every page (bytearray zeroes it), free it."""
    bytearray(SIZE)


def test_roomy_heap_reuses_freed_memory_then_bounds_it_again() -> None:
    if not bound_heap():
        pytest.skip("the policies are glibc's (mallopt)")
    assert faults(touch) > PAGES // 2  # 1 MiB policy: a fresh mapping, every page faulted in
    with roomy_heap() as applied:
        assert applied
        touch()  # the heap grows once
        assert faults(touch) < PAGES // 10  # then serves the same size again from what it kept
    assert faults(touch) > PAGES // 2  # the 1 MiB policy again, and the kept memory returned
