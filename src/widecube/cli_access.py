"""The access commands of the ``widecube`` command line: tokens, grants, dataset policies,
local groups and the audit log. :func:`register` adds them to :data:`widecube.cli.app`; each one calls
:class:`~widecube.access.Governance`, whose door records it in the audit log.

    widecube tokens create --user ana --scope read --dataset pbmc --expires 30d
    widecube grant pbmc group:lab writer
    widecube access pbmc --visibility internal --classification controlled
    widecube audit --dataset pbmc --jsonl > pbmc-audit.jsonl
    widecube audit verify
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from ._console import JSON_HELP, ME, err, listing, out, print_json, show
from ._console import clean_errors as _clean_errors
from .access import Governance
from .catalog import Catalog
from .config import Settings
from .errors import InvalidQuery

__all__ = ["audit_app", "first_admin", "groups_app", "register", "tokens_app"]

tokens_app = typer.Typer(
    help="API tokens: create (the secret is shown once), list, revoke.", no_args_is_help=True
)
groups_app = typer.Typer(help="Local groups of token users (OIDC users bring theirs).", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log: list and export rows, verify the hash chain.")


def register(app: typer.Typer) -> None:
    """Add the access commands to the ``widecube`` app."""
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(groups_app, name="groups")
    app.add_typer(audit_app, name="audit")
    for command in (grant, revoke, access):
        app.command()(command)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


@contextmanager
def _governance() -> Iterator[Governance]:
    settings = Settings()
    with Catalog(settings.catalog_url) as catalog:
        yield Governance(catalog, auth=settings.auth)


def _expiry(text: str) -> timedelta | None:
    """``30d``, ``12h``, ``90m`` or ``never``."""
    if text == "never":
        return None
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise InvalidQuery(
            f"--expires {text!r}: a number of days, hours or minutes (30d, 12h, 90m) or 'never'"
        )
    return timedelta(**{_UNITS[found.group(2)]: float(found.group(1))})


def _when(value: datetime | None) -> str:
    return "" if value is None else value.isoformat(timespec="seconds")


def first_admin(settings: Settings, host: str, port: int) -> None:
    """On the first start of a server with authentication (no token and no admin yet): make
    the ``admin`` user a server-wide admin with an admin token, and print a sign-in URL for it
    once, as Jupyter does. Only the token's hash is stored; later starts print nothing."""
    if not settings.auth:
        return
    with Catalog(settings.catalog_url) as catalog:
        gov = Governance(catalog, auth=True)
        if catalog.access.tokens() or any(g.role == "admin" for g in catalog.access.grants(dataset="*")):
            return
        gov.grant("*", "user:admin", "admin", actor=ME)
        issued = gov.create_token(user="admin", scope="admin", expires_in=None, note="first start", actor=ME)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    err.print(
        "First start: user 'admin' is a server-wide admin. Sign in to the UI with this link "
        "(shown once; `widecube tokens revoke " + issued.record.id + "` ends it):",
        highlight=False,
        soft_wrap=True,
    )
    err.print(f"    http://{shown}:{port}/?token={issued.text}", highlight=False, soft_wrap=True)


# -- tokens ---------------------------------------------------------------------------------


@tokens_app.command("create")
@_clean_errors
def tokens_create(
    user: Annotated[str, typer.Option(help="whose token it is")],
    scope: Annotated[str, typer.Option(help="read, write or admin: caps the user's roles")] = "read",
    dataset: Annotated[
        list[str] | None, typer.Option(help="narrow the token to this dataset; repeatable")
    ] = None,
    expires: Annotated[str, typer.Option(help="lifetime: 30d, 12h, 90m, or never")] = "30d",
    note: Annotated[str | None, typer.Option(help="what it is for")] = None,
) -> None:
    """Make an API token; its secret is printed once (only its SHA-256 is stored)."""
    with _governance() as gov:
        issued = gov.create_token(
            user=user, scope=scope, datasets=dataset, expires_in=_expiry(expires), note=note, actor=ME
        )
    r = issued.record
    err.print(
        f"token {r.id} for {r.user} (scope {r.scope}, "
        f"{'datasets ' + ', '.join(r.datasets) if r.datasets else 'every dataset the user may reach'}, "
        f"{'expires ' + _when(r.expires_at) if r.expires_at else 'never expires'}); "
        "the secret below is shown once:",
        highlight=False,
        soft_wrap=True,
    )
    print(issued.text)


@tokens_app.command("list")
@_clean_errors
def tokens_list(
    user: Annotated[str | None, typer.Option(help="only this user's")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List tokens (never their secrets)."""
    with _governance() as gov:
        found = gov.tokens(user=user, actor=ME)
    now = datetime.now().astimezone()
    if as_json:
        print_json([{**dataclasses.asdict(t), "state": t.state(now)} for t in found])
        return
    rows = [
        (
            t.id,
            t.user,
            t.scope,
            ", ".join(t.datasets) if t.datasets else "*",
            t.state(now),
            _when(t.expires_at),
            t.created_by,
            t.note or "",
        )
        for t in found
    ]
    headers = ("id", "user", "scope", "datasets", "state", "expires", "created by", "note")
    show(listing(headers, rows, ids=["id"]))


@tokens_app.command("revoke")
@_clean_errors
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="token id (see `widecube tokens list`)")],
) -> None:
    """Revoke a token: every server process refuses it from its next request."""
    with _governance() as gov:
        record = gov.revoke_token(token_id, actor=ME)
    out.print(f"token {record.id} of {record.user} revoked at {_when(record.revoked_at)}", highlight=False)


# -- grants and policy --------------------------------------------------------------------------


@_clean_errors
def grant(
    dataset: Annotated[str, typer.Argument(help="dataset name, or '*' for the server-wide admin role")],
    principal: Annotated[str, typer.Argument(help="user name, user:NAME or group:NAME")],
    role: Annotated[str, typer.Argument(help="reader, writer or owner (admin with '*')")],
) -> None:
    """Give a user or group a role on a dataset (replacing the role it had)."""
    with _governance() as gov:
        g = gov.grant(dataset, principal, role, actor=ME)
    out.print(f"{g.principal} is {g.role} of {g.dataset}", highlight=False)


@_clean_errors
def revoke(
    dataset: Annotated[str, typer.Argument(help="dataset name, or '*'")],
    principal: Annotated[str, typer.Argument(help="user name, user:NAME or group:NAME")],
) -> None:
    """Take a user's or group's role on a dataset away (effective on the next request)."""
    with _governance() as gov:
        gone = gov.revoke(dataset, principal, actor=ME)
    if not gone:
        err.print(f"[bold red]error:[/] {principal} has no role on {dataset}", highlight=False)
        raise typer.Exit(1)
    out.print(f"{principal}: role on {dataset} revoked", highlight=False)


@_clean_errors
def access(
    dataset: Annotated[str, typer.Argument(help="dataset name")],
    visibility: Annotated[
        str | None, typer.Option(help="public (anyone), internal (signed-in users), restricted (grants only)")
    ] = None,
    classification: Annotated[
        str | None, typer.Option(help="open, internal, controlled or phi (controlled/phi: never public)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Show who may reach a dataset; with options, change its visibility or classification."""
    with _governance() as gov:
        if visibility is not None or classification is not None:
            gov.set_policy(dataset, visibility=visibility, classification=classification, actor=ME)
        report = gov.access(dataset, actor=ME)
    if as_json:
        print_json(report)
        return
    p = report.policy
    out.print(f"{dataset}: {p.visibility}, classified {p.classification}", highlight=False)
    table = Table("principal", "role", "granted by", "at")
    for g in report.grants:
        table.add_row(g.principal, g.role, g.granted_by, _when(g.granted_at))
    out.print(table)


# -- groups --------------------------------------------------------------------------------------


@groups_app.command("add")
@_clean_errors
def groups_add(group: Annotated[str, typer.Argument()], user: Annotated[str, typer.Argument()]) -> None:
    """Put a user into a local group."""
    with _governance() as gov:
        gov.add_member(group, user, actor=ME)
    out.print(f"{user} is in group {group}", highlight=False)


@groups_app.command("remove")
@_clean_errors
def groups_remove(group: Annotated[str, typer.Argument()], user: Annotated[str, typer.Argument()]) -> None:
    """Take a user out of a local group."""
    with _governance() as gov:
        if not gov.remove_member(group, user, actor=ME):
            err.print(f"[bold red]error:[/] {user} is not in group {group}", highlight=False)
            raise typer.Exit(1)
    out.print(f"{user} left group {group}", highlight=False)


# -- audit ---------------------------------------------------------------------------------------


@audit_app.callback(invoke_without_command=True)
@_clean_errors
def audit(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(help="only this actor's rows")] = None,
    dataset: Annotated[str | None, typer.Option(help="only this dataset's rows")] = None,
    action: Annotated[str | None, typer.Option(help="only this action (publish, read, grant, ...)")] = None,
    since: Annotated[datetime | None, typer.Option(help="rows at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, typer.Option(help="rows before (ISO 8601)")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many rows")] = 1000,
    jsonl: Annotated[bool, typer.Option(help="print JSON Lines (an export) instead of a table")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help=JSON_HELP + " (one array; --jsonl: a line a row)")
    ] = False,
) -> None:
    """List audit rows in order (see also `widecube audit verify`)."""
    if ctx.invoked_subcommand is not None:
        return
    since, until = (None if t is None else t.astimezone() for t in (since, until))
    with _governance() as gov:
        rows = gov.audit(
            user=user, dataset=dataset, action=action, since=since, until=until, limit=limit, actor=ME
        )
    if jsonl:
        for r in rows:
            print(json.dumps(r.as_json(), ensure_ascii=False))
        return
    if as_json:
        print_json([r.as_json() for r in rows])
        return
    lines = [
        (
            str(r.seq),
            _when(r.at),
            *(c or "" for c in (e.actor, e.via, e.action, e.dataset, e.version, e.outcome, e.client)),
        )
        for r in rows
        if (e := r.event) is not None
    ]
    headers = ("seq", "at", "actor", "via", "action", "dataset", "version", "outcome", "client")
    show(listing(headers, lines, ids=["version"]))


@audit_app.command("verify")
@_clean_errors
def audit_verify() -> None:
    """Recompute the audit log's hash chain; exit 1 naming the first row at fault."""
    with _governance() as gov:
        check = gov.verify_audit(actor=ME)
    if not check.ok:
        err.print(f"[bold red]audit log broken:[/] {check.problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    out.print(
        f"audit log intact: {check.rows:,} rows, head {check.head_seq} {check.head_hash} "
        "(keep this hash elsewhere: a rewritten log cannot reproduce it)",
        highlight=False,
        soft_wrap=True,
    )
