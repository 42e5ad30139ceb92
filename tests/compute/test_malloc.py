"""The malloc policies of the two passes, by the page faults a large allocation costs."""

from __future__ import annotations

import resource
from collections.abc import Callable

import pytest

from widecube.compute._malloc import bound_heap, roomy_heap, roomy_policy

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


def test_roomy_policy_holds_from_task_to_task_until_bounded_again() -> None:
    """A Dask worker's pass-2 tasks: the policy pinned by one serves the next (no trim between)."""
    if not bound_heap():
        pytest.skip("the policies are glibc's (mallopt)")
    try:
        assert roomy_policy()
        touch()  # the first task grows the heap once
        assert faults(touch) < PAGES // 10  # a second task finds the memory kept
        assert faults(touch) < PAGES // 10
    finally:
        bound_heap()
    touch()  # the 1 MiB policy trims what was kept on the next free
    assert faults(touch) > PAGES // 2
