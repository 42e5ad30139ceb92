"""Job routes: the ingest jobs of this catalog, their state, progress and errors.

Jobs change while they run, so every answer is ``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from ..catalog import JobState
from ..errors import InvalidQuery
from ..pipeline import JobRunner
from ._jobmodels import JobDetail, JobInfo
from ._responses import JSON
from .models import Name

__all__ = ["router", "runner"]

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
_NO_STORE = {"Cache-Control": "no-store"}


def runner(request: Request) -> JobRunner:
    """The app's job runner (see ``app.create_app``)."""
    found: JobRunner = request.app.state.jobs
    return found


@router.get("", response_model=list[JobInfo])
def list_jobs(
    request: Request,
    state: Annotated[Name | None, Query(description="only jobs in this state")] = None,
    source: Annotated[Name | None, Query(description="only jobs from cli, watch or upload")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Jobs, newest first."""
    try:
        wanted = JobState(state) if state is not None else None
    except ValueError:
        known = ", ".join(s.value for s in JobState)
        raise InvalidQuery(f"unknown job state {state!r} (states: {known})") from None
    found = runner(request).catalog.jobs.list(state=wanted, source=source, limit=limit)
    return JSON([JobInfo.of(j).model_dump(mode="json") for j in found], headers=_NO_STORE)


@router.get("/{job_id}", response_model=JobDetail)
def get_job(request: Request, job_id: Annotated[str, Path(max_length=64)]) -> Response:
    """One job with its step log; 404 if there is none with that id."""
    job = runner(request).catalog.jobs.get(job_id)
    return JSON(JobDetail.of(job).model_dump(mode="json"), headers=_NO_STORE)
