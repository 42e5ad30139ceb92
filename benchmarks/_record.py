"""Record one benchmark run as one JSON file in ``benchmarks/results/``: the only place figures live.

Every entry point (``run.py``, ``serve.py``, ``aggregate.py``, ``readers.py``) goes through
this module, in two calls:

* :func:`begin`, before anything is measured: refuses to start a run that would be recorded
  from a dirty tree (tracked files changed, or untracked files under ``src/``), unless forced
  (``--force`` or ``WIDECUBE_BENCH_FORCE=1``), so a figure always names code that exists in a
  commit; returns the machine (cores, memory, load average at start) and the commit;
* :func:`save`, after: adds the load average at the end, the ``dirty`` flag and the targets
  with PASS/FAIL (``targets``), and writes ``results/<UTC stamp>-<slug>.json``.

``RESULTS.md`` and the README's numbers are generated from these files by ``report.py``; the
peer's figures are part of each run's JSON, measured in the same run. Free text about a run
(its profile, why a target was missed) goes into the run's ``notes`` (a list of Markdown
paragraphs), never into ``RESULTS.md`` by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _report import machine_info
from capacity import main as capacity_main
from report import main as report_main
from report import verdicts_of

__all__ = [
    "FORCE_ENV",
    "RESULTS",
    "DirtyTree",
    "TreeState",
    "begin",
    "forced",
    "regenerate",
    "save",
    "targets",
    "tree_state",
]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
FORCE_ENV = "WIDECUBE_BENCH_FORCE"


class DirtyTree(RuntimeError):
    """A run would be recorded from a tree whose code is not the commit it names."""

    def __init__(self, repo: Path, paths: list[str]) -> None:
        shown = ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")
        super().__init__(
            f"{repo}: the working tree has uncommitted changes ({shown}); commit them first, or "
            f"record anyway with --force (or {FORCE_ENV}=1) and the run is marked dirty"
        )
        self.paths = paths


@dataclass(frozen=True)
class TreeState:
    """The commit a run measures, and what in the tree differs from it."""

    commit: str
    changes: tuple[str, ...]

    @property
    def dirty(self) -> bool:
        return bool(self.changes)


def tree_state(repo: Path = REPO) -> TreeState:
    """HEAD's short hash, and the changed tracked files plus untracked files under ``src/``.

    Untracked files elsewhere (data, notes, scratch) do not change the code measured; an
    untracked module under ``src/`` does, so it counts.
    """
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    status = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
    )
    if head.returncode or status.returncode:
        return TreeState("unknown", ("(not a git checkout)",))
    changes = []
    for line in status.stdout.splitlines():
        code, path = line[:2], line[3:]
        if code == "??" and not path.startswith("src/"):
            continue
        changes.append(path)
    return TreeState(head.stdout.strip(), tuple(changes))


def forced(flag: bool = False) -> bool:
    """Whether recording from a dirty tree was asked for (``--force`` or the environment)."""
    return flag or os.environ.get(FORCE_ENV, "") not in ("", "0")


def begin(*, record: bool, force: bool = False, repo: Path = REPO) -> dict[str, Any]:
    """The machine and the commit, checked before a run: raises :class:`DirtyTree` when a run
    that would be recorded starts from a dirty tree and recording was not forced."""
    state = tree_state(repo)
    if record and state.dirty and not forced(force):
        raise DirtyTree(repo, list(state.changes))
    machine = machine_info()
    machine["git_commit"] = state.commit
    machine["git_dirty"] = state.dirty
    return machine


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of a run as ``{benchmark, what, value, shown, target, verdict}``, with
    verdict ``PASS``, ``FAIL`` or ``n/a`` (a figure recorded without a pass mark)."""
    return [
        {
            "benchmark": v["benchmark"],
            "what": v["what"],
            "value": v["value"],
            "shown": v["shown"],
            "target": v["target"],
            "verdict": v["verdict"],
        }
        for v in verdicts_of(result)
    ]


def save(result: dict[str, Any], slug: str, *, folder: Path = RESULTS, stamp: str | None = None) -> Path:
    """Write ``result`` as ``<folder>/<stamp>-<slug>.json`` with the load average at the end,
    the ``dirty`` flag (from the machine recorded by :func:`begin`) and its targets."""
    result.setdefault("load_average_at_end", [round(x, 2) for x in os.getloadavg()])
    result["dirty"] = bool(result["machine"]["git_dirty"])
    result["targets"] = targets(result)
    result.setdefault("notes", [])
    stamp = stamp or result.get("stamp") or _stamp(result["started_utc"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stamp}-{slug}.json"
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return path


def regenerate() -> None:
    """Rewrite ``RESULTS.md`` and the README's numbers from every recorded run (``report.py``),
    and ``docs/capacity.md``, derived from them too (``capacity.py``; a B1M record left it
    stale twice, and its test failed)."""
    report_main([])
    capacity_main([])


def _stamp(started_utc: str) -> str:
    """``2026-11-22 04:28 UTC`` → ``20261122T0428Z`` (entry points pass a finer stamp)."""
    day, clock = started_utc.split()[:2]
    return f"{day.replace('-', '')}T{clock.replace(':', '')}Z"
