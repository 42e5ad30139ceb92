"""``POST /datasets/{name}/genes/resolve``: typed or pasted gene names to the dataset's genes.

The web UI sends every gene entry here (a pasted list, a shared URL's genes) so that symbols
in any case and stable IDs become canonical names, and the unknown ones come back with
suggestions instead of failing the whole request (see :mod:`widecube.genenames`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, StringConstraints

from ._datasets import DatasetName, FromRelease, pick
from ._deps import WC, Caller
from ._responses import body_key, documented, respond
from .models import MAX_BODY_BYTES, Name, StrictBody, Text

__all__ = ["MAX_QUERIES", "GeneResolveRequest", "GeneResolveResponse", "router"]

MAX_QUERIES = 5_000
Query = Annotated[str, StringConstraints(max_length=200), Text]


class GeneResolveRequest(StrictBody):
    """Names as typed: symbols or stable IDs (``ENSG…``), any case; blanks are skipped."""

    query: list[Query] = Field(max_length=MAX_QUERIES, description="at most 5,000 names of ≤ 200 characters")
    version: Name | None = Field(default=None, description="pin a version; default: the live one")


class UnknownGene(BaseModel):
    query: str
    suggestions: list[str] = Field(description="up to 5 similar gene names, best first")


class GeneResolveResponse(BaseModel):
    dataset: str
    version: str
    genes: list[str] = Field(description="canonical names of the known entries, in input order, no repeats")
    unknown: list[UnknownGene]


router = APIRouter(max_body_size=MAX_BODY_BYTES)


@router.post(
    "/datasets/{name}/genes/resolve", response_model=GeneResolveResponse, responses=documented(404, 413, 422)
)
def resolve(
    request: Request,
    name: DatasetName,
    body: GeneResolveRequest,
    wc: WC,
    actor: Caller,
    released: FromRelease = None,
) -> Response:
    """Canonical names for a list of typed names; unknown ones with "did you mean"."""
    result = wc.resolve_genes(name, body.query, version=pick(body.version, released), actor=actor)
    return respond(
        request,
        result,
        version=result["version"],
        key=body_key("genes-resolve", body),
        pinned=body.version is not None or released is not None,
    )
