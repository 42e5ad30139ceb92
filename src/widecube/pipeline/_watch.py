"""A watched inbox (a folder, or an object-store prefix): each entry dropped into it becomes
one ingest job.

An *entry* is a file or a folder directly in the inbox (on an object store: an object
directly under the prefix, or a "folder" of objects sharing a deeper prefix). It is taken when
it is complete:

* a folder holding a ``_SUCCESS`` file, at once;
* any other entry once it has not changed (names, sizes, mtimes) for ``quiet`` seconds, so a
  file still being copied is not read half-written (an object appears whole when its upload
  completes, so on a store this matters for folders of objects).

The inbox is a :class:`~widecube.snapshot.Storage` (``widecube watch /srv/inbox`` or
``widecube watch s3://bucket/inbox/``): the watcher lists, reads sidecars, moves entries and
writes error reports through it, so a folder and a prefix behave alike. A job's input is the
entry's path, or its URL on a store (the job stages it into its work folder, ``_fetch``).

The dataset is named after the entry (``pbmc_3k.h5ad`` → ``pbmc_3k``; characters a dataset
name cannot hold become ``_``), unless a *sidecar* ``<entry>.json`` or ``<stem>.json`` beside
it says otherwise::

    {"name": "pbmc", "groupbys": ["cell_type", "cell_type,donor"], "obs": "cells.csv"}

(also ``var``, ``layer``, ``format``, ``allow_missing_metadata``, ``input_kind`` (counts, log1p,
scaled; default the watcher's, itself by default detected), and ``views``: the views to
build, ``"summary,quantiles"`` or a list, by default the watcher's ``views``, itself by
default every view; metadata paths are relative to the inbox). Sidecars, the metadata files
they name, checksum companions (``<entry>.sha256``), hidden names (``.x``, ``_x``) and partial
downloads (``*.part``, ``*.tmp``, ``*.crdownload``) are never entries themselves.

When its job ends, the entry (with its sidecar and metadata files) is moved to
``processed/`` or ``failed/``; next to a failed one, ``<entry>.error.json`` says why.

Restarts lose and duplicate nothing: each entry is recorded in the jobs table under a key made
of its path, size and mtime (a unique column), so an entry seen again after a restart finds
its job; a job left unfinished by a killed watcher is resumed by the next worker; entries
whose job ended are moved on the next scan, and only then is the key released.

Changes are noticed by polling every ``poll`` seconds, and in a local folder through
watchdog's file events as well (events do not cross network filesystems, and a store has none
to listen to without a queue).

    >>> Watcher(Path("/srv/inbox"), settings, catalog).run()         # doctest: +SKIP
    >>> Watcher("s3://lab/inbox", settings, catalog).run()           # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..catalog import Catalog, JobRecord, JobState
from ..config import Settings
from ..snapshot import FileInfo, LocalStorage, Storage, is_object_url, open_storage
from ._fetch import COMPANION
from ._runner import JobRunner
from ._supervise import WorkerProcess

__all__ = ["Watcher", "dataset_name"]

log = logging.getLogger("widecube.watch")

MARKER = "_SUCCESS"
PROCESSED, FAILED = "processed", "failed"
_PARTIAL = (".part", ".partial", ".tmp", ".crdownload", ".download", "~")
_SIDECAR_FIELDS = {
    "name",
    "dataset",
    "groupbys",
    "obs",
    "var",
    "layer",
    "format",
    "allow_missing_metadata",
    "views",
    "input_kind",
}
_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def dataset_name(entry: str) -> str:
    """The dataset name an inbox entry gets by default: its name without suffixes, cleaned.

    >>> dataset_name("PBMC 3k (v2).tar.gz")
    'PBMC_3k_v2'
    """
    stem = entry.split(".", 1)[0] if not entry.startswith(".") else entry
    return _BAD.sub("_", stem).strip("_.-")[:128] or "dataset"


@dataclass(frozen=True)
class Entry:
    """One candidate in the inbox: its name, sidecar, and what it looks like now."""

    name: str
    sidecar: str | None
    signature: tuple[int, int, int]  # files, bytes, newest mtime (ns), sidecar included
    marked: bool  # a folder with a _SUCCESS file


class Watcher:
    """Turns complete entries of ``inbox`` into jobs and files them away when the jobs end.

    ``views`` (``"summary,quantiles"`` or a list; None: every view) is what an entry's job
    builds unless its sidecar names ``views`` itself; an unknown name is refused here.
    ``input_kind`` (counts, log1p, scaled; None: detected) likewise, unless the sidecar says.
    """

    def __init__(
        self,
        inbox: Path | str,
        settings: Settings,
        catalog: Catalog,
        *,
        runner: JobRunner | None = None,
        quiet: float | None = None,
        poll: float | None = None,
        views: str | list[str] | None = None,
        input_kind: str | None = None,
    ) -> None:
        from ..views import parse_input_kind, parse_views

        self.views = parse_views(views)
        self.input_kind = parse_input_kind(input_kind)
        self.inbox: Path | str
        if is_object_url(str(inbox)):
            self.files: Storage = open_storage(str(inbox))
            self.inbox = self.files.url
        else:
            self.inbox = Path(inbox).expanduser().resolve()
            self.files = LocalStorage(self.inbox)
            for name in (PROCESSED, FAILED):
                (self.inbox / name).mkdir(parents=True, exist_ok=True)
        self.settings, self.catalog = settings, catalog
        self.runner = runner or JobRunner(settings, catalog)
        self.quiet = settings.watch_quiet if quiet is None else quiet
        self.poll = settings.watch_poll if poll is None else poll
        self._prefix = f"watch:{self.inbox}/"
        self._seen: dict[str, tuple[tuple[int, int, int], float]] = {}
        self._wake = threading.Event()

    def _url(self, name: str) -> str:
        """Where an inbox member is, as a job names it: a path, or a URL on a store."""
        return str(self.inbox / name) if isinstance(self.inbox, Path) else f"{self.inbox}/{name}"

    # -- one scan --------------------------------------------------------------------------

    def scan(self) -> list[JobRecord]:
        """File away entries whose jobs ended; return the jobs made for entries now complete."""
        self.file_away()
        now = time.monotonic()
        created = []
        entries = self.entries()
        self._seen = {n: s for n, s in self._seen.items() if n in entries}
        for entry in entries.values():
            before = self._seen.get(entry.name)
            if before is None or before[0] != entry.signature:
                self._seen[entry.name] = (entry.signature, now)
                before = self._seen[entry.name]
            if entry.marked or now - before[1] >= self.quiet:
                job = self._register(entry)
                if job is not None:
                    created.append(job)
        return created

    def entries(self) -> dict[str, Entry]:
        """The inbox's candidate entries now, by name."""
        files, folders = self.files.children()
        names = set(files) | set(folders)
        sidecars = {n for n in files if n.endswith(".json")}
        referenced = {n for n in files if n.endswith(COMPANION) and n.removesuffix(COMPANION) in names}
        for name in sidecars:
            try:
                found = json.loads(self.files.get(name))
                if isinstance(found, dict):
                    referenced |= {str(found[k]) for k in ("obs", "var") if found.get(k)}
            except (OSError, ValueError):
                pass  # an unreadable sidecar fails its entry's job, with the reason
        found_entries = {}
        for name in sorted(names - sidecars - referenced - {PROCESSED, FAILED}):
            if name.startswith((".", "_")) or name.endswith(_PARTIAL):
                continue
            candidates = (f"{name}.json", f"{name.split('.', 1)[0]}.json")
            sidecar = next((s for s in candidates if s in sidecars), None)
            content = [files[name]] if name in files else self.files.scan(name)
            if not content:  # gone while we looked
                continue
            extra = [files[n] for n in (sidecar, name + COMPANION) if n is not None and n in files]
            marked = name in folders and any(f.path == f"{name}/{MARKER}" for f in content)
            found_entries[name] = Entry(name, sidecar, _signature([*content, *extra]), marked)
        return found_entries

    def _register(self, entry: Entry) -> JobRecord | None:
        """The entry's job, made now unless it exists (None then)."""
        files, size, mtime = entry.signature
        key = f"{self._prefix}{entry.name}:{files}:{size}:{mtime}"
        if self.catalog.jobs.by_key(key) is not None:
            return None
        error = None
        try:
            dataset, params = self._params(entry)
        except ValueError as exc:
            dataset, params, error = dataset_name(entry.name), {}, str(exc)
        members = [entry.name, *([entry.sidecar] if entry.sidecar else [])]
        if self.files.exists(entry.name + COMPANION):
            members.append(entry.name + COMPANION)
        members += [p for p in (params.get("obs"), params.get("var")) if p and p == self._url(_last(p))]
        params["watch"] = {"inbox": str(self.inbox), "members": [_last(m) for m in members]}
        job = self.runner.submit(
            self._url(entry.name),
            dataset=dataset,
            params=params,
            source="watch",
            input_key=key,
            error=error,
        )
        log.info("%s: picked up as job %s (dataset %s)", self._url(entry.name), job.id, dataset)
        return job

    def _params(self, entry: Entry) -> tuple[str, dict[str, Any]]:
        """The dataset name and ingest parameters of an entry, from its sidecar if it has one."""
        if entry.sidecar is None:
            return dataset_name(entry.name), {"views": self.views, "input_kind": self.input_kind}
        try:
            side = json.loads(self.files.get(entry.sidecar))
        except ValueError as exc:
            raise ValueError(f"sidecar {entry.sidecar}: not valid JSON ({exc})") from None
        if not isinstance(side, dict):
            raise ValueError(f"sidecar {entry.sidecar}: must hold a JSON object")
        unknown = set(side) - _SIDECAR_FIELDS
        if unknown:
            raise ValueError(
                f"sidecar {entry.sidecar}: unknown field(s) {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(_SIDECAR_FIELDS))})"
            )
        from ..views import parse_input_kind, parse_views

        groupbys = side.get("groupbys") or []
        try:
            if not isinstance(side.get("views"), str | list | None):
                raise ValueError("views must be a string ('summary,quantiles') or a list of names")
            views = parse_views(side["views"]) if side.get("views") is not None else self.views
            if not isinstance(side.get("input_kind"), str | None):
                raise ValueError("input_kind must be a string: counts, log1p or scaled")
            kind = parse_input_kind(side.get("input_kind")) or self.input_kind
        except ValueError as exc:
            raise ValueError(f"sidecar {entry.sidecar}: {exc}") from None
        params: dict[str, Any] = {
            "groupbys": [groupbys] if isinstance(groupbys, str) else [str(g) for g in groupbys],
            "layer": side.get("layer"),
            "format": side.get("format"),
            "allow_missing_metadata": bool(side.get("allow_missing_metadata", False)),
            "views": views,
            "input_kind": kind,
        }
        for what in ("obs", "var"):
            params[what] = self._url(str(side[what])) if side.get(what) else None
        return str(side.get("name") or side.get("dataset") or dataset_name(entry.name)), params

    # -- filing away ---------------------------------------------------------------------

    def file_away(self) -> list[JobRecord]:
        """Move the entries of ended jobs to processed/ or failed/ (with an error report)."""
        moved = []
        for job in self.catalog.jobs.with_keys(self._prefix):
            if not job.state.final:
                continue
            dest = PROCESSED if job.state == JobState.PUBLISHED else FAILED
            members = job.params.get("watch", {}).get("members", [])
            for name in members:
                if self._present(name):
                    target = f"{dest}/{name}"
                    if self._present(target):
                        target = f"{dest}/{job.id[:8]}-{name}"
                    self.files.move(name, target)
            if job.state != JobState.PUBLISHED and members:  # failed, or superseded: say why
                self.files.put(f"{dest}/{members[0]}.error.json", _error_report(job))
            self.catalog.jobs.forget_key(job.id)  # only now: a restart before it still finds the job
            log.info(
                "%s: %s (job %s), moved to %s/",
                self._url(members[0] if members else "?"),
                _outcome(job),
                job.id,
                dest,
            )
            moved.append(job)
        return moved

    def _present(self, name: str) -> bool:
        """Whether a file, or a folder of files, is at ``name`` in the inbox."""
        return self.files.exists(name) or bool(self.files.scan(name))

    # -- running ---------------------------------------------------------------------------

    def run_once(self) -> list[JobRecord]:
        """Take what is complete now (waiting out the quiet period once), run its jobs, file
        them away; returns the jobs run."""
        self.scan()
        if self.quiet > 0 and self._seen:
            time.sleep(self.quiet)
            self.scan()
        ran = self.runner.run_pending()
        self.file_away()
        return ran

    def run(self, stop: threading.Event | None = None) -> None:
        """Watch until ``stop`` is set, running the jobs in a supervised ``widecube work``
        child process (as ``widecube serve`` does): native code that dies on an entry (a
        segfault on a malformed file, a mapped input truncated in place, the OOM killer)
        takes that process down, not the watcher; its try counts, and a new worker resumes
        or fails the job (``WorkerProcess``)."""
        stop = stop or threading.Event()
        observer = _observe(self.inbox, self._wake) if isinstance(self.inbox, Path) else None
        worker = WorkerProcess(self.settings, self.catalog, backoff=max(self.settings.job_backoff, 0.1))
        worker.start()
        try:
            while not stop.is_set():
                try:
                    self.scan()
                except Exception:  # the catalog or the inbox is away: log, wait, try again
                    log.exception("inbox %s: scan failed", self.inbox)
                self._wake.wait(self._next_wait())
                self._wake.clear()
        finally:
            worker.stop()
            if observer is not None:
                observer.stop()
                observer.join(timeout=5)

    def _next_wait(self) -> float:
        """Until the next poll, or until the first entry waiting out its quiet period is due."""
        now = time.monotonic()
        due = [since + self.quiet - now for _, since in self._seen.values() if now - since < self.quiet]
        return max(0.05, min([self.poll, *due]))


def _outcome(job: JobRecord) -> str:
    """How an entry's job ended, in words: ``published version V of dataset D`` or
    ``failed: reason`` (``superseded: …``)."""
    if job.state == JobState.PUBLISHED:
        return f"published version {job.version} of dataset {job.dataset}"
    return f"{job.state.value}: {job.error}"


def _signature(files: list[FileInfo]) -> tuple[int, int, int]:
    """Files, bytes and the newest mtime (ns) of an entry with its sidecar and companion."""
    return len(files), sum(f.size for f in files), max((f.mtime_ns for f in files), default=0)


def _last(path: str) -> str:
    """The last segment of a path or URL."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def _error_report(job: JobRecord) -> bytes:
    failed: dict[str, Any] = next((e for e in reversed(job.log) if e.get("event") == "failed"), {})
    report = {
        "job": job.id,
        "dataset": job.dataset,
        "input": _last(job.input),
        "state": job.state.value,
        "step": failed.get("step"),
        "error": job.error,
        "finished": (job.finished or datetime.now(UTC)).isoformat(),
    }
    return (json.dumps(report, indent=2) + "\n").encode()


def _observe(inbox: Path, wake: threading.Event) -> Any:
    """A watchdog observer that sets ``wake`` on any change in the inbox (None if it cannot
    start, e.g. out of inotify watches: polling still works)."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    class Waker(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            wake.set()

    observer = Observer()
    try:
        observer.schedule(Waker(), str(inbox), recursive=True)
        observer.start()
    except OSError as exc:
        log.warning("inbox %s: no file events (%s); polling only", inbox, exc)
        return None
    return observer
