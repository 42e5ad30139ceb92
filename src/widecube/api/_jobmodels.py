"""Response and request models of the jobs and uploads routes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ..catalog import JobRecord
from .models import DATASET_PATTERN, ColumnName, Name, StrictBody

__all__ = ["JobDetail", "JobInfo", "UploadStart", "UploadStatus"]


class JobInfo(BaseModel):
    """An ingest job: where it is, how far along, and why it failed if it did."""

    id: str
    dataset: str
    state: str = Field(description="received, unpacked, validated, computed, verified, published or failed")
    step: str | None = Field(description="the step running now: unpack, validate, compute, verify, publish")
    progress: dict[str, Any] = Field(description="the running step's last report: step, fraction, elapsed_s")
    source: str = Field(description="what made the job: cli, watch or upload")
    input: str = Field(description="the input's file name")
    version: str | None = Field(description="the dataset version the job builds")
    attempts: int = Field(description="retries after transient errors")
    error: str | None
    created: datetime
    updated: datetime
    started: datetime | None
    finished: datetime | None

    @classmethod
    def of(cls, job: JobRecord) -> JobInfo:
        return cls(id=job.id, dataset=job.dataset, state=job.state.value, step=job.step,
                   progress=job.progress, source=job.source, input=Path(job.input).name, version=job.version,
                   attempts=job.attempts, error=job.error, created=job.created, updated=job.updated,
                   started=job.started, finished=job.finished)  # fmt: skip


class JobDetail(JobInfo):
    """A job with its step log (start, done, retry, failed events, oldest first)."""

    log: list[dict[str, Any]]

    @classmethod
    def of(cls, job: JobRecord) -> JobDetail:
        return cls(**JobInfo.of(job).model_dump(), log=job.log)


class UploadStart(StrictBody):
    """Start a resumable upload; then send its bytes with ``PUT`` and ``Content-Range``."""

    filename: str = Field(max_length=1024, description="the file's name; its suffixes tell archives apart")
    size: int = Field(ge=0, description="the file's size in bytes")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$",
                               description="hex digest the bytes must have")  # fmt: skip
    dataset: str | None = Field(default=None, pattern=DATASET_PATTERN,
                                description="dataset name; default: from the file name")  # fmt: skip
    groupbys: list[ColumnName] = Field(default_factory=list, max_length=64,
                                       description="obs columns to group by")  # fmt: skip
    layer: Name | None = None
    format: Name | None = None


class UploadStatus(BaseModel):
    """How far an upload is: bytes received, and its job once complete."""

    upload: str
    filename: str
    dataset: str
    size: int | None
    offset: int
    complete: bool
    job: str | None
