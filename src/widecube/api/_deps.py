"""The API's dependencies, one style everywhere: ``Annotated[X, Depends(get_x)]``.

Routes get the facades (reads and admin: :class:`~widecube.query.Widecube`; jobs:
:class:`~widecube.pipeline.Jobs`; uploads: :class:`~widecube.pipeline.Uploads`) from the app's
state, set once per process by ``app.create_app``, and the caller from :func:`current_actor`,
which they pass to every facade method.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..access import Actor
from ..pipeline import Jobs, Uploads
from ..query import Widecube

__all__ = [
    "Caller",
    "JobsFacade",
    "UploadsFacade",
    "WC",
    "current_actor",
    "get_jobs",
    "get_uploads",
    "get_widecube",
]


async def get_widecube(request: Request) -> Widecube:  # async: no thread hop per request
    """The read and admin facade of this process."""
    wc: Widecube = request.app.state.widecube
    return wc


async def get_jobs(request: Request) -> Jobs:
    """The jobs facade of this process."""
    jobs: Jobs = request.app.state.jobs
    return jobs


async def current_actor(request: Request) -> Actor:
    """Who is asking. Always anonymous until the API authenticates (tokens, OIDC): then this
    reads the credentials, and :func:`widecube.access.authorize` decides."""
    return Actor.anonymous()


async def get_uploads(
    jobs: Annotated[Jobs, Depends(get_jobs)], actor: Annotated[Actor, Depends(current_actor)]
) -> Uploads:
    """The uploads facade of this process."""
    return jobs.uploads(actor=actor)


WC = Annotated[Widecube, Depends(get_widecube)]
JobsFacade = Annotated[Jobs, Depends(get_jobs)]
UploadsFacade = Annotated[Uploads, Depends(get_uploads)]
Caller = Annotated[Actor, Depends(current_actor)]
