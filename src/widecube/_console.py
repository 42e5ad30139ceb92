"""What every command of the ``widecube`` command line shares: where it prints, who it acts
as, and how a :class:`WidecubeError` becomes one line on stderr and exit code 1."""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.console import Console
from rich.progress import TaskID
from rich.table import Column, Table

from .access import Actor
from .errors import WidecubeError

__all__ = [
    "JSON_HELP",
    "ME",
    "ProgressLines",
    "announce_storage",
    "clean_errors",
    "err",
    "listing",
    "log_lines",
    "server_log_config",
    "out",
    "print_json",
    "show",
    "shown_storage",
]

out = Console()
err = Console(stderr=True)
ME = Actor.cli()
"""Who calls the facades from the command line (passed to every facade method)."""
F = TypeVar("F", bound=Callable[..., Any])


JSON_HELP = "print JSON (every field, full ids) instead of a table"


def _plain(value: Any) -> Any:
    """What :func:`print_json` writes for a value json cannot: dates in ISO 8601, enums by
    value, dataclasses and results as objects, tuples as lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping) or hasattr(value, "items"):
        return dict(value.items())
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def print_json(records: Any) -> None:
    """``records`` (a list of records, or one) as JSON on stdout: one document, for scripts."""
    print(json.dumps(records, default=_plain, ensure_ascii=False))


def listing(headers: Sequence[str], rows: Iterable[Sequence[str]], *, ids: Iterable[str] = ()) -> Table:
    """A table whose ``ids`` columns (version, job, token ids…) are never shortened or wrapped,
    whatever the width of the terminal: they are what other commands take (``rollback --to``,
    ``widecube job``); the other columns wrap instead."""
    rows = [list(r) for r in rows]
    wide = set(ids)
    columns = [
        Column(h, no_wrap=True, min_width=max([len(h), *(len(r[i]) for r in rows)]))
        if h in wide
        else Column(h, overflow="fold")
        for i, h in enumerate(headers)
    ]
    table = Table(*columns)
    for r in rows:
        table.add_row(*r)
    return table


def show(table: Table) -> None:
    """Print a listing: fitted to a terminal's width, or at its natural width when the output
    goes to a file or a pipe (nothing wrapped for grep, whatever COLUMNS says)."""
    (out if out.is_terminal else Console(width=100_000)).print(table)


def shown_storage(storage: Path | str) -> str:
    """``storage`` as a command may print it: a local folder as it is, an object-store URL
    without what could be a secret (``s3://key:secret@bucket/prefix?token=…`` →
    ``s3://bucket/prefix``: no user part, query or fragment)."""
    if isinstance(storage, Path) or "://" not in storage:
        return str(storage)
    parts = urlsplit(storage)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def announce_storage() -> None:
    """One line on stderr naming the storage a command works on — which folder (or bucket)
    holds the catalog and snapshots, and where that came from — so that a command run from
    another folder never silently uses another catalog; on a terminal or not (a log or a
    cron mail says it too), never on stdout (``--json`` stays one JSON document). Settings
    that do not validate print nothing here: the command itself reports them."""
    import os

    from .config import Settings

    try:
        storage = Settings().storage
    except ValueError:
        return
    source = (
        "WIDECUBE_STORAGE" if os.environ.get("WIDECUBE_STORAGE") else "default; WIDECUBE_STORAGE changes it"
    )
    err.print(
        f"storage: {shown_storage(storage)} ({source})",
        style="dim",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def clean_errors(fn: F) -> F:
    """Run a command, turning a WidecubeError into one line and exit 1 (Ctrl-C: exit 130)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except WidecubeError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_lines(name: str = "widecube", *, fmt: str = LOG_FORMAT) -> None:
    """Print the INFO lines of logger ``name`` (and its children) on stderr, once per process:
    for the long-running commands (``watch``, ``work``), whose per-entry and per-job lines
    are log records."""
    import logging

    logger = logging.getLogger(name)
    if not any(getattr(h, "_widecube", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(fmt))
        handler._widecube = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def server_log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with the ``widecube`` logger at INFO through its
    handler: the server's log says what its background work does (a line when a job starts
    and one when it ends, upkeep rounds, uploads removed), beside the access log."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["widecube"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


class ProgressLines:
    """Progress as plain lines, for a log or a pipe (where rich's bars print nothing): one
    line when a task starts, one each time it passes another ``every`` of its total or
    ``seconds`` after the last line, and one when it is done::

        compute: started
        compute: 40% (12 s)
        compute: done in 31.2 s

    The methods used of :class:`rich.progress.Progress` (``add_task``, ``update``,
    ``advance``, use as a context manager), so a command picks one or the other.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        every: float = 0.1,
        seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream, self._every, self._seconds, self._clock = stream, every, seconds, clock
        self._tasks: list[dict[str, Any]] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass

    def add_task(self, description: str, total: float = 100.0) -> TaskID:
        now = self._clock()
        task = {"name": description, "total": total, "done": 0.0, "began": now, "said": now, "mark": 0.0}
        self._tasks.append(task)
        self._say(f"{description}: started")
        return TaskID(len(self._tasks) - 1)

    def advance(self, task: TaskID, advance: float = 1.0) -> None:
        self.update(task, completed=self._tasks[task]["done"] + advance)

    def update(self, task: TaskID, *, completed: float) -> None:
        t = self._tasks[task]
        if t["done"] >= t["total"]:  # said done already
            return
        t["done"] = completed
        now = self._clock()
        fraction = completed / t["total"] if t["total"] else 1.0
        if fraction >= 1.0:
            self._say(f"{t['name']}: done in {now - t['began']:.1f} s")
        elif fraction >= t["mark"] + self._every or now - t["said"] >= self._seconds:
            t["said"], t["mark"] = now, fraction - fraction % self._every
            self._say(f"{t['name']}: {fraction:.0%} ({now - t['began']:.0f} s)")

    def _say(self, line: str) -> None:
        stream = self._stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()
