"""The ingest pipeline: jobs that build a version, verify it and publish it; their triggers.

The faces (CLI, API) go through :class:`Jobs` (submit, list, get, run, watch, supervise) and
:class:`Uploads` (files sent over HTTP that become jobs); both take the caller as ``actor``.
"""

from ..catalog import JobRecord, JobState, PointerMoved
from ..views import INPUT_KINDS, parse_input_kind, parse_views
from ._cleanup import reclaim_orphans
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

__all__ = [
    "COMPUTE_PHASES",
    "INPUT_KINDS",
    "Held",
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
