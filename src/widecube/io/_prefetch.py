"""Run an iterator in a background thread, so reading overlaps computing.

Pass 1 prefetches a reader's blocks (h5py reads and numpy checks in the producer thread; the
numba scatter kernel, which releases the GIL, in the consumer); the MTX reader prefetches
inflated pieces of a gzip file while it scans the previous one. Errors raised by the
producer are re-raised in the consumer; when the consumer stops early, the producer stops
too and the source iterator is closed (a generator's ``finally`` runs, files close).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterable
from typing import TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")
_DONE = object()


def prefetch(
    items: Iterable[T], *, depth: int = 2, check: Callable[[T], None] | None = None
) -> Generator[T, None, None]:
    """Yield ``items`` produced ``depth`` ahead by a worker thread (after ``check(item)``)."""
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    source = iter(items)

    def produce() -> None:
        try:
            for item in source:
                if check is not None:
                    check(item)
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer
            put(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="widecube-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
