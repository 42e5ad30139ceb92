"""Keeping a server process's read cache hot and small: warm live versions, evict retired ones.

A background thread (one per server process) runs :meth:`Upkeep.run_once` every
``interval`` seconds:

1. It reads the live version of every dataset (one catalog query).
2. It *warms* each live version it has not warmed yet: every summary grouping is decoded
   into the memory-mapped cache now, so the first query after a publish is as fast as
   the others.
3. It *evicts* every version it holds open that is no longer live and that served no request
   for ``grace`` seconds: the snapshot leaves the in-process map and its cache folder is
   deleted. Pinned readers of a retired version keep it alive while they keep asking; one
   that comes back later re-opens it. In-flight requests are safe either way (they hold the
   snapshot and its memory maps).
4. It *sweeps* cache folders of versions that are not live and untouched for ``grace``
   seconds, whichever process (or earlier run) decoded them.
5. It removes *expired uploads*: unfinished ones idle for ``upload_expiry`` seconds
   (:meth:`widecube.pipeline.Jobs.sweep_uploads`).
6. It writes the versions this process read to the catalog (their last read time, which the
   retention policies keep versions by), and every ``gc_interval`` seconds it runs a
   *garbage collection* of every dataset (:meth:`widecube.query.Widecube.gc`) and of the
   jobs' abandoned work folders.

The decision of what to evict is a pure function (:func:`stale_versions`), tested without a
server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..access import Actor
from ..errors import SnapshotCorrupt, WidecubeError
from ..pipeline import Jobs
from ..query import Widecube

__all__ = ["Upkeep", "Usage", "stale_versions"]

log = logging.getLogger("widecube.upkeep")
_SERVER = Actor.server()


class Usage:
    """When each version last served a request in this process (monotonic seconds)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def touch(self, version: str) -> None:
        self._last[version] = time.monotonic()  # one dict store: atomic under the GIL

    def last(self) -> dict[str, float]:
        return dict(self._last)

    def forget(self, version: str) -> None:
        self._last.pop(version, None)


def stale_versions(
    opened: Iterable[str], live: Iterable[str], last_used: Mapping[str, float], *, now: float, grace: float
) -> list[str]:
    """Opened versions that are not live and served nothing for ``grace`` seconds.

    >>> stale_versions(["a", "b", "c"], ["a"], {"b": 95.0, "c": 10.0}, now=100.0, grace=60)
    ['c']
    """
    live = set(live)
    return [v for v in opened if v not in live and now - last_used.get(v, -float("inf")) >= grace]


@dataclass
class Upkeep:
    """The warm/evict/sweep loop of one server process."""

    service: Widecube
    usage: Usage
    jobs: Jobs | None = None
    """Expires unfinished uploads each round (None: not this loop's job)."""
    interval: float = 10.0
    grace: float = 300.0
    warm: bool = True
    gc_interval: float = 0.0
    """Seconds between garbage collections (0: none in this loop)."""
    _warmed: set[str] = field(default_factory=set)
    _last_gc: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def run_once(self) -> dict[str, list[str]]:
        """One round; returns what it warmed, evicted, swept and expired (for logs and tests)."""
        me = _SERVER
        live = self.service.live_versions(actor=me)
        warmed = []
        if self.warm:
            for version, dataset in live.items():
                if version not in self._warmed:
                    try:
                        self.service.warm(dataset, version, actor=me)
                    except SnapshotCorrupt as exc:  # out of service; the other versions still warm
                        log.warning("upkeep: %s", exc)
                    else:
                        warmed.append(version)
                    self._warmed.add(version)
        stale = stale_versions(
            self.service.opened_versions(actor=me),
            live,
            self.usage.last(),
            now=time.monotonic(),
            grace=self.grace,
        )
        for version in stale:
            self.service.evict(version, actor=me)
            self.usage.forget(version)
            self._warmed.discard(version)
        swept = self.service.sweep_cache(
            keep=set(live) | set(self.service.opened_versions(actor=me)), older_than=self.grace, actor=me
        )
        expired = self.jobs.sweep_uploads(actor=me) if self.jobs is not None else []
        self.service.flush_reads(actor=me)
        collected: list[str] = []
        if not self._last_gc:  # the first collection one interval after the server starts
            self._last_gc = time.monotonic()
        if self.gc_interval > 0 and time.monotonic() - self._last_gc >= self.gc_interval:
            self._last_gc = time.monotonic()
            report = self.service.gc(actor=me)
            work = self.jobs.collect_garbage(actor=me) if self.jobs is not None else []
            collected = [f"{i.kind} {i.path}" for i in report.removed] + [f"work {p}" for p, _, _ in work]
        if warmed or stale or swept or collected:
            log.info("upkeep: warmed %s, evicted %s, swept %s, collected %s", warmed, stale, swept, collected)
        return {
            "warmed": warmed,
            "evicted": stale,
            "swept": swept,
            "expired": expired,
            "collected": collected,
        }

    def start(self) -> None:
        """Run rounds in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._loop, name="widecube-upkeep", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the loop to end and wait up to ``timeout`` s. A round busy warming (decoding a
        large matrix, compiling the aggregate kernel) is not waited for: the thread is a
        daemon and dies with the process, and its half-decoded file is a temporary that the
        next warm-up replaces (the cache publishes a file by atomic rename only)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except WidecubeError as exc:
                log.warning("upkeep round failed: %s", exc)
            except Exception:  # a bad round (catalog down, disk full) must not kill the loop
                log.exception("upkeep round failed")
            self._stop.wait(self.interval)
