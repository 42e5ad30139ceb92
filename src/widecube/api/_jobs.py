"""Job routes: the ingest jobs of this catalog, their state, progress and errors.

Jobs change while they run, so every answer is ``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from ._deps import Caller, JobsFacade
from ._jobmodels import JobDetail, JobInfo
from ._responses import JSON
from .models import Name

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
_NO_STORE = {"Cache-Control": "no-store"}


@router.get("", response_model=list[JobInfo])
def list_jobs(
    jobs: JobsFacade,
    actor: Caller,
    state: Annotated[Name | None, Query(description="only jobs in this state")] = None,
    source: Annotated[Name | None, Query(description="only jobs from cli, watch or upload")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Jobs, newest first."""
    found = jobs.list(state=state, source=source, limit=limit, actor=actor)
    return JSON([JobInfo.of(j).model_dump(mode="json") for j in found], headers=_NO_STORE)


@router.get("/{job_id}", response_model=JobDetail)
def get_job(job_id: Annotated[str, Path(max_length=64)], jobs: JobsFacade, actor: Caller) -> Response:
    """One job with its step log; 404 if there is none with that id."""
    job = jobs.get(job_id, actor=actor)
    return JSON(JobDetail.of(job).model_dump(mode="json"), headers=_NO_STORE)
