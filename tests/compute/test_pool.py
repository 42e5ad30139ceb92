"""ArrayPool: an array comes back only once nothing holds it or any view of it."""

from __future__ import annotations

import threading

import numpy as np

from widecube.compute import ArrayPool, ReadBuffers


def test_an_array_is_handed_out_again_only_once_nothing_refers_to_it() -> None:
    pool = ArrayPool(keep=4)
    a = pool.take(100, np.int32)
    assert a.base is not None and a.base.shape[0] >= 100 and a.shape == (100,)
    owner = id(a.base)  # not the array itself: a reference held here would keep it busy
    b = pool.take(100, np.int32)  # `a` is held: another array
    assert id(b.base) != owner
    tail = a[60:][::2]  # a view of a view: numpy keeps the owner as its base
    del a
    assert id(pool.take(100, np.int32).base) != owner
    del tail
    again = pool.take(90, np.int32)
    assert id(again.base) == owner  # released: reused, shorter is fine
    del again
    assert id(pool.take(100, np.float32).base) != owner  # another type: never
    assert id(pool.take(1000, np.int32).base) != owner  # too short: a new one


def test_a_background_holder_keeps_its_array_until_it_lets_go() -> None:
    """As the snapshot's writer threads hold a chunk's values until they are compressed."""
    pool = ArrayPool()
    held = pool.take(1000, np.float32)
    held[:] = 7.0
    owner = id(held.base)
    go, done = threading.Event(), threading.Event()

    def write(values: np.ndarray) -> None:
        go.wait()
        assert (values == 7.0).all()  # nobody wrote into it meanwhile
        done.set()

    t = threading.Thread(target=write, args=(held[10:],))
    t.start()
    del held
    other = pool.take(1000, np.float32)
    assert id(other.base) != owner
    other[:] = -1.0
    go.set()
    t.join()
    assert done.is_set()
    assert id(pool.take(1000, np.float32).base) == owner  # the thread let go (run() drops its args)


def test_at_most_keep_arrays_are_kept() -> None:
    pool = ArrayPool(keep=3)
    held = [pool.take(10, np.int64) for _ in range(7)]
    assert len({id(h.base) for h in held}) == 7  # all held: each its own
    assert len(pool) == 3
    buffers = ReadBuffers()
    outs = [buffers.output(10, np.int32) for _ in range(2 * buffers.KEEP)]
    assert len(outs) == 2 * buffers.KEEP and len(buffers._outputs) == buffers.KEEP
