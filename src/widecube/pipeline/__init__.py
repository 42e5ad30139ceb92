"""The ingest pipeline: jobs that build a version, verify it and publish it; their triggers."""

from ._cleanup import reclaim_orphans
from ._ingest import Progress
from ._jobs import JobRunner, JobWorker, ingest, next_step, retry_delay
from ._supervise import WorkerProcess
from ._verify import verify_snapshot
from ._watch import Watcher, dataset_name

__all__ = [
    "JobRunner",
    "JobWorker",
    "Progress",
    "Watcher",
    "WorkerProcess",
    "dataset_name",
    "ingest",
    "next_step",
    "reclaim_orphans",
    "retry_delay",
    "verify_snapshot",
]
