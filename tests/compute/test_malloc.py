"""The malloc policies of the two passes, by the page faults a large allocation costs; and
the cyclic collector kept off what a compute step finds alive, by what ``gc.collect`` frees."""

from __future__ import annotations

import gc
import resource
import weakref
from collections.abc import Callable

import pytest

from widecube.compute._malloc import bound_heap, roomy_heap, roomy_policy, settled_objects

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


class Node:
    """A cycle of one: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def cycle() -> tuple[list[Node], weakref.ref[Node]]:
    """A cycle held by a list, and a reference that says whether it was freed."""
    node = Node()
    return [node], weakref.ref(node)


def test_settled_objects_are_left_out_of_collections_until_the_step_ends() -> None:
    assert gc.get_freeze_count() == 0
    holder, old = cycle()
    with settled_objects():
        assert gc.get_freeze_count() > 1000  # the imports' objects, this test's, the cycle
        holder.clear()  # the old cycle is garbage now, but frozen: not freed
        made = Node()
        new = weakref.ref(made)
        del made
        with settled_objects():  # a nested step shares the freeze
            pass
        gc.collect()
        assert old() is not None and new() is None  # what the step made is collected
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert old() is None  # handed back to the collector: freed


def test_a_process_that_froze_its_objects_keeps_them_frozen() -> None:
    holder, before = cycle()  # frozen by the process itself
    gc.freeze()
    try:
        holder2, after = cycle()  # made after the process's freeze: not frozen
        with settled_objects():  # freezes nothing more
            holder2.clear()
            gc.collect()
            assert after() is None
        holder.clear()  # garbage now, but still frozen: the step did not lift the freeze
        gc.collect()
        assert before() is not None and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    gc.collect()
    assert before() is None
