"""Admin routes: move a dataset's live pointer (publish a version, roll back), verify a version.

They live under ``/api/v1/admin`` so that a reverse proxy can guard them with one rule;
widecube itself does not authenticate. A move is one catalog transaction: new requests see
the new version at once, requests already running finish on the version they started with.
Publish and rollback re-check the target's files first (409 naming a corrupt file); verify
re-checks a version's files and decoded cache and puts it back in service if they pass.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ._datasets import DatasetName
from ._deps import WC, Caller
from ._responses import JSON
from .models import PublishRequest, RollbackRequest, VersionInfo

__all__ = ["ADMIN_PREFIX", "router"]

ADMIN_PREFIX = "/api/v1/admin"
router = APIRouter(prefix=ADMIN_PREFIX, tags=["admin"])
_NO_STORE = {"Cache-Control": "no-store"}


@router.post("/datasets/{name}/publish", response_model=VersionInfo)
def publish(name: DatasetName, body: PublishRequest, wc: WC, actor: Caller) -> Response:
    """Make a verified or retired version live (409 if its status does not allow it)."""
    return JSON(wc.publish(name, body.version, actor=actor), headers=_NO_STORE)


@router.post("/datasets/{name}/rollback", response_model=VersionInfo)
def rollback(name: DatasetName, wc: WC, actor: Caller, body: RollbackRequest | None = None) -> Response:
    """Make ``to``, or the version live before the current one, live again."""
    to = body.to if body is not None else None
    return JSON(wc.rollback(name, to, actor=actor), headers=_NO_STORE)


class VerifyRequest(BaseModel):
    version: str | None = Field(
        default=None, max_length=64, description="version to verify; default: the live one"
    )


class FileFault(BaseModel):
    file: str = Field(description="path relative to the snapshot (or to the version's decoded cache)")
    problem: str = Field(description="e.g. 'does not match its checksum', 'is missing'")


class VerifyReport(BaseModel):
    dataset: str
    version: str
    ok: bool = Field(description="true when no snapshot file and no decoded cache file is at fault")
    files: list[FileFault] = Field(
        description="snapshot files at fault: the version answers 503 until a verify passes again"
    )
    cache: list[FileFault] = Field(
        description="decoded cache files at fault; removed, so the next read "
        "decodes them again from the snapshot"
    )


@router.post("/datasets/{name}/verify", response_model=VerifyReport)
def verify(name: DatasetName, wc: WC, actor: Caller, body: VerifyRequest | None = None) -> Response:
    """Re-check every file of a version (default: the live one) against its manifest sha256.

    Answers 200 with ``ok`` false and the files at fault when the check fails: the version is
    then out of service (its queries answer 503) in this process until a verify passes.
    """
    version = body.version if body is not None else None
    return JSON(wc.verify(name, version, actor=actor), headers=_NO_STORE)
