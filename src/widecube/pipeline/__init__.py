"""The ingest pipeline: jobs that build a version, verify it and publish it; their triggers."""

from ._ingest import Progress
from ._jobs import JobRunner, JobWorker, ingest, next_step, retry_delay
from ._verify import verify_snapshot
from ._watch import Watcher, dataset_name

__all__ = [
    "JobRunner",
    "JobWorker",
    "Progress",
    "Watcher",
    "dataset_name",
    "ingest",
    "next_step",
    "retry_delay",
    "verify_snapshot",
]
