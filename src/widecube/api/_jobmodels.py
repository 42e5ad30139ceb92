"""Response and request models of the jobs and uploads routes.

What a job shows to HTTP clients names the user's files, never the server's: absolute paths
in error texts are cut to their last part (the uploaded file's name, an archive member), and
the worker running a step is an opaque id, not its host and process id (``widecube job``
still shows those to the operator).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ..catalog import JobRecord
from .models import DATASET_PATTERN, INPUT_KIND_HELP, ColumnName, InputKind, Name, StrictBody

__all__ = ["JobDetail", "JobInfo", "UploadStart", "UploadStatus", "public_text", "public_worker"]

# An absolute path: a '/' not inside a word, a number or a URL, then segments up to a quote,
# space, colon, comma or bracket. The last segment is kept.
_PATH = re.compile(r"(?<![\w./:~-])/(?:[^\s'\"/:,;()\[\]{}<>]+/)*([^\s'\"/:,;()\[\]{}<>]+)")


def public_text(text: str | None) -> str | None:
    """``text`` with every absolute path cut to its last part, for HTTP clients.

    >>> public_text("/srv/wc/uploads/4f1c/pbmc.h5ad: NaN found at row 3; see '/srv/wc/work/ab/x'")
    "pbmc.h5ad: NaN found at row 3; see 'x'"
    """
    return None if text is None else _PATH.sub(r"\1", text)


def public_worker(worker: str | None) -> str | None:
    """An opaque, stable id of a worker (its name holds the host and process id).

    >>> public_worker("node7:4242:a1b2c3")
    'w-326a1924'
    """
    return None if worker is None else "w-" + hashlib.sha256(worker.encode()).hexdigest()[:8]


class JobInfo(BaseModel):
    """An ingest job: where it is, how far along, and why it failed if it did."""

    id: str
    dataset: str
    state: str = Field(
        description="received, unpacked, validated, computed, verified, published, failed "
        "or superseded (verified, not published: a newer version went live meanwhile)"
    )
    step: str | None = Field(description="the step running now: unpack, validate, compute, verify, publish")
    progress: dict[str, Any] = Field(description="the running step's last report: step, fraction, elapsed_s")
    source: str = Field(description="what made the job: cli, watch or upload")
    input: str = Field(description="the input's file name")
    version: str | None = Field(description="the dataset version the job builds")
    attempts: int = Field(
        description="tries of the step running now (or where the job ended), each counted as it starts"
    )
    error: str | None = Field(description="why the job failed or was superseded")
    created: datetime
    updated: datetime
    started: datetime | None
    finished: datetime | None

    @classmethod
    def of(cls, job: JobRecord) -> JobInfo:
        return cls(
            id=job.id,
            dataset=job.dataset,
            state=job.state.value,
            step=job.step,
            progress=job.progress,
            source=job.source,
            input=Path(job.input).name,
            version=job.version,
            attempts=job.attempts,
            error=public_text(job.error),
            created=job.created,
            updated=job.updated,
            started=job.started,
            finished=job.finished,
        )


class JobDetail(JobInfo):
    """A job with its step log (start, done, retry, failed, died, interrupted, superseded events,
    oldest first); ``worker`` in each event is an opaque id."""

    log: list[dict[str, Any]]

    @classmethod
    def of(cls, job: JobRecord) -> JobDetail:
        return cls(**JobInfo.of(job).model_dump(), log=[_public_event(e) for e in job.log])


def _public_event(event: dict[str, Any]) -> dict[str, Any]:
    shown = dict(event)
    if "worker" in shown:
        shown["worker"] = public_worker(shown["worker"])
    if isinstance(shown.get("error"), str):
        shown["error"] = public_text(shown["error"])
    return shown


class UploadStart(StrictBody):
    """Start a resumable upload; then send its bytes with ``PUT`` and ``Content-Range``."""

    filename: str = Field(max_length=1024, description="the file's name; its suffixes tell archives apart")
    size: int = Field(ge=0, description="the file's size in bytes")
    sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-fA-F]{64}$", description="hex digest the bytes must have"
    )
    dataset: str | None = Field(
        default=None, pattern=DATASET_PATTERN, description="dataset name; default: from the file name"
    )
    groupbys: list[ColumnName] = Field(
        default_factory=list, max_length=64, description="obs columns to group by"
    )
    layer: Name | None = None
    format: Name | None = None
    views: list[Name] | None = Field(
        default=None,
        max_length=64,
        description="views to build (names, or names joined by ','); those they require come too; "
        "default: every view",
    )
    input_kind: InputKind | None = Field(default=None, description=INPUT_KIND_HELP)
    meta: dict[str, Any] | None = Field(
        default=None,
        description="dataset metadata (title, organism, tags, ... as `ingest --meta` takes them), "
        "set when the job publishes; a bad field is a 422 naming it, before the upload starts",
        examples=[{"title": "PBMC 3k", "organism": "human", "tags": ["demo"]}],
    )


class UploadStatus(BaseModel):
    """How far an upload is: bytes received, and its job once complete."""

    upload: str
    filename: str
    dataset: str
    size: int | None
    offset: int
    complete: bool
    job: str | None
