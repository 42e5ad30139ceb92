"""The ingest pipeline: jobs that build a version, verify it and publish it; their triggers.

The faces (CLI, API) go through :class:`Jobs` (submit, list, get, run, watch, supervise) and
:class:`Uploads` (files sent over HTTP that become jobs); both take the caller as ``actor``.

Its names load on first use (PEP 562), each from its own module, and the job steps (the
engine: views, kernels, readers) load when a job first runs: a ``widecube work`` process
waiting for jobs, as ``serve`` keeps one, imports the catalog and the runner only (0.9 against
2.4 CPU-s at start).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..catalog import JobRecord, JobState, PointerMoved
    from ..views import INPUT_KINDS, parse_input_kind, parse_views
    from ._cleanup import reclaim_orphans
    from ._digest import hash_early
    from ._ingest import COMPUTE_PHASES, Held, Progress
    from ._jobs_facade import Jobs, job_state
    from ._runner import JobRunner, JobWorker, ingest, next_step, retry_delay
    from ._supervise import WorkerProcess
    from ._upload_store import (
        TooManyUploads,
        Upload,
        UploadConflict,
        UploadNotFound,
        Uploads,
        UploadTooLarge,
        Writer,
        sweep_uploads,
    )
    from ._verify import verify_snapshot
    from ._watch import Watcher, dataset_name

_WHERE = {
    "JobRecord": "..catalog",
    "JobState": "..catalog",
    "PointerMoved": "..catalog",
    "INPUT_KINDS": "..views",
    "parse_input_kind": "..views",
    "parse_views": "..views",
    "reclaim_orphans": "._cleanup",
    "hash_early": "._digest",
    "COMPUTE_PHASES": "._ingest",
    "Held": "._ingest",
    "Progress": "._ingest",
    "Jobs": "._jobs_facade",
    "job_state": "._jobs_facade",
    "JobRunner": "._runner",
    "JobWorker": "._runner",
    "ingest": "._runner",
    "next_step": "._runner",
    "retry_delay": "._runner",
    "WorkerProcess": "._supervise",
    "TooManyUploads": "._upload_store",
    "Upload": "._upload_store",
    "UploadConflict": "._upload_store",
    "UploadNotFound": "._upload_store",
    "Uploads": "._upload_store",
    "UploadTooLarge": "._upload_store",
    "Writer": "._upload_store",
    "sweep_uploads": "._upload_store",
    "verify_snapshot": "._verify",
    "Watcher": "._watch",
    "dataset_name": "._watch",
}
"""Each public name and the module that defines it."""

__all__ = [
    "COMPUTE_PHASES",
    "Held",
    "INPUT_KINDS",
    "JobRecord",
    "JobRunner",
    "JobState",
    "JobWorker",
    "Jobs",
    "PointerMoved",
    "Progress",
    "TooManyUploads",
    "Upload",
    "UploadConflict",
    "UploadNotFound",
    "UploadTooLarge",
    "Uploads",
    "Watcher",
    "WorkerProcess",
    "Writer",
    "dataset_name",
    "hash_early",
    "ingest",
    "job_state",
    "next_step",
    "parse_input_kind",
    "parse_views",
    "reclaim_orphans",
    "retry_delay",
    "sweep_uploads",
    "verify_snapshot",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value
