"""Access routes: sign in and out of the UI, who am I, tokens, grants, dataset policies and
the audit log.

Every route reaches the catalog through :class:`~widecube.access.Governance`, whose door
decides (tokens, groups and the audit log: server admins; a dataset's grants and policy: its
owners). Answers are ``Cache-Control: no-store``; a token's secret appears once, in the
answer that creates it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from ..access import NAME_PATTERN, SESSION_MAX_AGE, AccessReport
from ..catalog import AuditRecord, GrantRecord, TokenRecord
from ..errors import AuthenticationFailed, InvalidQuery, NotFound
from ._datasets import DatasetName
from ._deps import CSRF_HEADER, SESSION_COOKIE, Caller, Gov
from ._responses import JSON, errors
from .models import DATASET_PATTERN, StrictBody

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["access"])
_NO_STORE = {"Cache-Control": "no-store"}
_ISO = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$"
"""An ISO 8601 date or date and time (a zone-less time is UTC)."""
_Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)]
_Principal = Annotated[
    str, Field(min_length=1, max_length=210, pattern=r"^((user|group):)?" + NAME_PATTERN.lstrip("^"))
]


# -- models ---------------------------------------------------------------------------------


class SignIn(StrictBody):
    token: str = Field(min_length=1, max_length=200, description="an API token (wc_…)")


class Me(BaseModel):
    """Who the request comes from."""

    auth: bool = Field(description="whether this server authenticates callers (false: single-user mode)")
    user: str | None = Field(description="null: anonymous")
    via: str = Field(description="anonymous, token, oidc or session")
    groups: list[str]
    scope: str | None = Field(description="read, write or admin; null: not narrowed")
    datasets: list[str] | None = Field(
        description="the datasets the credential is narrowed to; null: not narrowed"
    )
    csrf: str | None = Field(
        default=None, description=f"for a UI session: the value state-changing requests send as {CSRF_HEADER}"
    )
    oidc: bool = Field(
        default=False,
        description="whether the UI may sign in through the institute's identity provider "
        "(GET /api/v1/session/oidc/login)",
    )


class TokenCreate(StrictBody):
    user: _Name
    scope: Literal["read", "write", "admin"] = "read"
    datasets: list[Annotated[str, Field(pattern=DATASET_PATTERN)]] | None = Field(
        default=None, max_length=1000, description="narrow the token to these datasets"
    )
    expires_in_days: float | None = Field(
        default=30, gt=0, le=3660, strict=True, description="null: never expires"
    )
    note: str | None = Field(default=None, max_length=500)


class TokenInfo(BaseModel):
    id: str
    user: str
    scope: str
    datasets: list[str] | None
    note: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    state: str = Field(description="active, revoked or expired")

    @classmethod
    def of(cls, t: TokenRecord) -> TokenInfo:
        return cls(
            id=t.id,
            user=t.user,
            scope=t.scope,
            datasets=None if t.datasets is None else list(t.datasets),
            note=t.note,
            created_by=t.created_by,
            created_at=t.created_at,
            expires_at=t.expires_at,
            revoked_at=t.revoked_at,
            state=t.state(datetime.now(t.created_at.tzinfo)),
        )


class TokenIssued(TokenInfo):
    token: str = Field(description="the secret: shown this once, never again")


class GrantIn(StrictBody):
    principal: _Principal = Field(description="user:NAME, group:NAME, or a bare user name")
    role: Literal["reader", "writer", "owner"]


class Grant(BaseModel):
    dataset: str
    principal: str
    role: str
    granted_by: str
    granted_at: datetime

    @classmethod
    def of(cls, g: GrantRecord) -> Grant:
        return cls(
            dataset=g.dataset,
            principal=g.principal,
            role=g.role,
            granted_by=g.granted_by,
            granted_at=g.granted_at,
        )


class PolicyIn(StrictBody):
    visibility: Literal["public", "internal", "restricted"] | None = None
    classification: Literal["open", "internal", "controlled", "phi"] | None = None


class AccessInfo(BaseModel):
    dataset: str
    visibility: str = Field(
        description="public (anyone), internal (signed-in users), restricted (grants only)"
    )
    classification: str = Field(description="open, internal, controlled or phi")
    grants: list[Grant]

    @classmethod
    def of(cls, report: AccessReport) -> AccessInfo:
        p = report.policy
        return cls(
            dataset=p.dataset,
            visibility=p.visibility,
            classification=p.classification,
            grants=[Grant.of(g) for g in report.grants],
        )


class AuditRow(BaseModel):
    seq: int
    at: datetime
    actor: str | None
    via: str
    action: str
    dataset: str | None
    version: str | None
    outcome: str
    detail: dict[str, Any]
    client: str | None
    request_id: str | None
    prev_hash: str
    hash: str


class AuditVerification(BaseModel):
    ok: bool
    rows: int
    head_seq: int
    head_hash: str = Field(description="keep it somewhere else: a rewritten log cannot reproduce it")
    seq: int | None = Field(description="the first row at fault")
    problem: str | None


# -- session ---------------------------------------------------------------------------------


def _me(request: Request, actor: Any, csrf: str | None = None) -> dict[str, Any]:
    return Me(
        auth=request.app.state.widecube.settings.auth,
        user=actor.user,
        via=actor.via,
        groups=sorted(actor.groups),
        scope=actor.scope,
        datasets=None if actor.datasets is None else sorted(actor.datasets),
        csrf=csrf,
        oidc=request.app.state.oidc_login is not None,
    ).model_dump(mode="json")


@router.get("/session", response_model=Me)
def whoami(request: Request, actor: Caller) -> Response:
    """Who this request comes from (anonymous without credentials)."""
    session = getattr(request.state, "session", None) if actor.via == "session" else None
    return JSON(_me(request, actor, None if session is None else session.csrf), headers=_NO_STORE)


@router.post("/session", response_model=Me, responses=errors(401, 422))
def sign_in(body: SignIn, request: Request) -> Response:
    """Sign the UI in with an API token: sets a signed, HttpOnly, SameSite=Strict session cookie
    (Secure over TLS) that names the token, so revoking the token ends the session."""
    client = request.client.host if request.client else None
    actor, cookie, csrf = request.app.state.identities.open_session(body.token, client=client)
    answer = JSON(_me(request, actor, csrf), headers=_NO_STORE)
    _set_session(answer, request, cookie, SESSION_MAX_AGE)
    return answer


def _set_session(answer: Response, request: Request, cookie: str, max_age: int) -> None:
    answer.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


_FLOW_COOKIE = "widecube_oidc_flow"
_FLOW_PATH = "/api/v1/session/oidc"


@router.get("/session/oidc/login", status_code=303, responses=errors(404))
def oidc_sign_in(request: Request) -> Response:
    """Start signing the UI in through the institute's identity provider: redirects to its
    authorization endpoint (code flow with PKCE) and sets a short-lived, signed flow cookie
    (SameSite=Lax: it must come back with the IdP's redirect)."""
    login = request.app.state.oidc_login
    if login is None:
        raise NotFound("sign-in through an identity provider is not configured (WIDECUBE_OIDC_ISSUER)")
    try:
        start = login.start(str(request.url_for("oidc_callback")))
    except AuthenticationFailed as exc:  # the IdP is unreachable or misconfigured: say so in the UI
        return _back_to_ui(str(exc))
    answer = RedirectResponse(start.url, status_code=303, headers=_NO_STORE)
    answer.set_cookie(
        _FLOW_COOKIE,
        start.flow,
        max_age=start.max_age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=_FLOW_PATH,
    )
    return answer


@router.get("/session/oidc/callback", status_code=303, responses=errors(404))
def oidc_callback(
    request: Request,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    state: Annotated[str | None, Query(max_length=512)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    """Where the identity provider sends the browser back: on success, sets the session cookie
    (for ``WIDECUBE_OIDC_SESSION_SECONDS``) and redirects to the UI; on failure, redirects to
    the UI with ``?signin_error=`` saying why (and the audit log records the refusal)."""
    login = request.app.state.oidc_login
    if login is None:
        raise NotFound("sign-in through an identity provider is not configured (WIDECUBE_OIDC_ISSUER)")
    identities = request.app.state.identities
    client = request.client.host if request.client else None
    try:
        if error is not None:
            raise AuthenticationFailed(
                f"the identity provider answered {error!r}"
                if error.isascii() and error.isprintable()
                else "the identity provider refused the sign-in"
            )
        identity = login.finish(code=code, state=state, flow=request.cookies.get(_FLOW_COOKIE))
    except AuthenticationFailed as exc:
        identities.reject(f"OIDC sign-in: {exc}", client=client)
        answer = _back_to_ui(str(exc))
    else:
        seconds = request.app.state.widecube.settings.oidc_session_seconds
        _, cookie, _csrf = identities.open_oidc_session(identity, seconds, client=client)
        answer = RedirectResponse("/", status_code=303, headers=_NO_STORE)
        _set_session(answer, request, cookie, seconds)
    answer.delete_cookie(_FLOW_COOKIE, path=_FLOW_PATH, httponly=True, samesite="lax")
    return answer


def _back_to_ui(problem: str) -> Response:
    """To the UI, which shows why signing in failed (``?signin_error=``)."""
    return RedirectResponse("/?" + urlencode({"signin_error": problem}), status_code=303, headers=_NO_STORE)


@router.delete("/session", status_code=204)
def sign_out() -> Response:
    """Forget the UI session (the token stays valid: revoke it to end every session of it)."""
    answer = Response(status_code=204, headers=_NO_STORE)
    answer.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return answer


# -- tokens (admin) --------------------------------------------------------------------------

_TokenId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]


@router.get("/admin/tokens", response_model=list[TokenInfo], responses=errors(401, 403))
def list_tokens(
    gov: Gov, actor: Caller, user: Annotated[str | None, Query(max_length=200)] = None
) -> Response:
    """Every API token (never a secret), newest first (server admins)."""
    found = gov.tokens(user=user, actor=actor)
    return JSON([TokenInfo.of(t).model_dump(mode="json") for t in found], headers=_NO_STORE)


@router.post("/admin/tokens", response_model=TokenIssued, status_code=201, responses=errors(401, 403, 422))
def create_token(body: TokenCreate, gov: Gov, actor: Caller) -> Response:
    """Make an API token (server admins); its secret is in this answer only."""
    expires = None if body.expires_in_days is None else timedelta(days=body.expires_in_days)
    issued = gov.create_token(
        user=body.user,
        scope=body.scope,
        datasets=body.datasets,
        expires_in=expires,
        note=body.note,
        actor=actor,
    )
    shown = TokenIssued(**TokenInfo.of(issued.record).model_dump(), token=issued.text)
    return JSON(shown.model_dump(mode="json"), status_code=201, headers=_NO_STORE)


@router.delete("/admin/tokens/{token_id}", response_model=TokenInfo, responses=errors(401, 403, 404))
def revoke_token(token_id: _TokenId, gov: Gov, actor: Caller) -> Response:
    """Revoke a token: refused from the next request on, by every server process."""
    return JSON(
        TokenInfo.of(gov.revoke_token(token_id, actor=actor)).model_dump(mode="json"), headers=_NO_STORE
    )


# -- grants and policy (owners) ---------------------------------------------------------------


@router.get("/admin/datasets/{name}/access", response_model=AccessInfo, responses=errors(401, 403, 404))
def get_access(name: DatasetName, gov: Gov, actor: Caller) -> Response:
    """A dataset's visibility, classification and grants (its owners)."""
    return JSON(AccessInfo.of(gov.access(name, actor=actor)).model_dump(mode="json"), headers=_NO_STORE)


@router.patch(
    "/admin/datasets/{name}/access", response_model=AccessInfo, responses=errors(401, 403, 404, 422)
)
def set_access(name: DatasetName, body: PolicyIn, gov: Gov, actor: Caller) -> Response:
    """Change a dataset's visibility or classification (its owners; controlled and phi data
    can never be public: 422)."""
    gov.set_policy(name, visibility=body.visibility, classification=body.classification, actor=actor)
    return JSON(AccessInfo.of(gov.access(name, actor=actor)).model_dump(mode="json"), headers=_NO_STORE)


@router.put("/admin/datasets/{name}/grants", response_model=Grant, responses=errors(401, 403, 404, 422))
def grant(name: DatasetName, body: GrantIn, gov: Gov, actor: Caller) -> Response:
    """Give a user or group a role on the dataset (its owners); replaces the role it had."""
    return JSON(Grant.of(gov.grant(name, body.principal, body.role, actor=actor)).model_dump(mode="json"))


@router.delete("/admin/datasets/{name}/grants/{principal}", status_code=204, responses=errors(401, 403, 404))
def revoke_grant(
    name: DatasetName,
    principal: Annotated[
        str, Path(min_length=1, max_length=210, pattern=r"^((user|group):)?" + NAME_PATTERN.lstrip("^"))
    ],
    gov: Gov,
    actor: Caller,
) -> Response:
    """Take a user's or group's role on the dataset away, effective on the next request
    (404 if it had none)."""
    if not gov.revoke(name, principal, actor=actor):
        return JSON({"detail": f"{principal} has no role on dataset {name!r}"}, status_code=404)
    return Response(status_code=204)


# -- audit (admin) ----------------------------------------------------------------------------


_JSONL: dict[int | str, dict[str, Any]] = {  # format=jsonl: the same rows as JSON Lines, an AuditRow a line
    200: {"content": {"application/jsonl": {"schema": {"type": "string"}}}},
}


@router.get("/audit", response_model=list[AuditRow], responses={**_JSONL, **errors(401, 403, 422)})
def audit(
    gov: Gov,
    actor: Caller,
    user: Annotated[str | None, Query(max_length=200, description="only this actor's rows")] = None,
    dataset: Annotated[str | None, Query(max_length=255)] = None,
    action: Annotated[str | None, Query(max_length=32)] = None,
    since: Annotated[str | None, Query(pattern=_ISO, description="rows at or after (ISO 8601)")] = None,
    until: Annotated[str | None, Query(pattern=_ISO, description="rows before (ISO 8601)")] = None,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="rows after this sequence number")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    format: Annotated[
        Literal["json", "jsonl"], Query(description="jsonl: JSON Lines, one row a line")
    ] = "json",
) -> Response:
    """The audit log in order, filtered (server admins)."""
    rows: list[AuditRecord] = gov.audit(
        user=user,
        dataset=dataset,
        action=action,
        since=_instant(since),
        until=_instant(until),
        after=after,
        limit=limit,
        actor=actor,
    )
    if format == "jsonl":
        import orjson

        body = b"".join(orjson.dumps(r.as_json()) + b"\n" for r in rows)
        return Response(body, media_type="application/jsonl", headers=_NO_STORE)
    return JSON([r.as_json() for r in rows], headers=_NO_STORE)


@router.post("/admin/audit/verify", response_model=AuditVerification, responses=errors(401, 403))
def verify_audit(gov: Gov, actor: Caller) -> Response:
    """Recompute the audit log's hash chain; the first row at fault if it is broken."""
    check = gov.verify_audit(actor=actor)
    return JSON(
        AuditVerification(
            ok=check.ok,
            rows=check.rows,
            head_seq=check.head_seq,
            head_hash=check.head_hash,
            seq=check.seq,
            problem=check.problem,
        ).model_dump(mode="json"),
        headers=_NO_STORE,
    )


def _instant(text: str | None) -> datetime | None:
    """An ISO 8601 query value as an aware datetime (UTC when it names no zone)."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidQuery(f"{text!r} is not an ISO 8601 date or time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
