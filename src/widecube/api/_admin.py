"""Admin routes: move a dataset's live pointer (publish a version, roll back).

They live under ``/api/v1/admin`` so that a reverse proxy can guard them with one rule;
widecube itself does not authenticate. Each is one catalog transaction: new requests see
the new version at once, requests already running finish on the version they started with.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..service import Widecube
from ._responses import JSON
from .models import PublishRequest, RollbackRequest, VersionInfo

__all__ = ["ADMIN_PREFIX", "router"]

ADMIN_PREFIX = "/api/v1/admin"
router = APIRouter(prefix=ADMIN_PREFIX, tags=["admin"])
_NO_STORE = {"Cache-Control": "no-store"}


def _service(request: Request) -> Widecube:
    wc: Widecube = request.app.state.widecube
    return wc


@router.post("/datasets/{name}/publish", response_model=VersionInfo)
def publish(request: Request, name: str, body: PublishRequest) -> Response:
    """Make a verified or retired version live (409 if its status does not allow it)."""
    return JSON(_service(request).publish(name, body.version), headers=_NO_STORE)


@router.post("/datasets/{name}/rollback", response_model=VersionInfo)
def rollback(request: Request, name: str, body: RollbackRequest | None = None) -> Response:
    """Make ``to``, or the version live before the current one, live again."""
    to = body.to if body is not None else None
    return JSON(_service(request).rollback(name, to), headers=_NO_STORE)
