"""The governance facade: tokens, grants, groups, dataset policies and the audit log, each
change decided at the door and recorded in the log.

The CLI (``widecube tokens``, ``grant``, ``revoke``, ``access``, ``groups``, ``audit``) and
the API's admin routes both call :class:`Governance`; neither touches the tables.

    >>> gov = Governance(catalog, auth=True)                                # doctest: +SKIP
    >>> issued = gov.create_token(user="ana", scope="read", datasets=["pbmc"],
    ...                           expires_in=timedelta(days=30), actor=Actor.cli())
    >>> issued.text            # shown once; the catalog keeps its SHA-256 only
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..catalog import AuditCheck, AuditRecord, Catalog, GrantRecord, Policy, TokenRecord
from ._actor import ANONYMOUS, Action, Actor
from ._door import SERVER, Door
from ._tokens import mint

__all__ = ["AccessReport", "Governance", "IssuedToken"]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just made: its record and its text, which is never shown again."""

    record: TokenRecord
    text: str


@dataclass(frozen=True, slots=True)
class AccessReport:
    """Who may reach a dataset: its policy and its grants."""

    policy: Policy
    grants: list[GrantRecord]


class Governance:
    """Access administration over one catalog, through its :class:`Door`."""

    def __init__(self, catalog: Catalog, *, auth: bool, door: Door | None = None) -> None:
        self.catalog = catalog
        self.door = door or Door(catalog, auth=auth)

    # -- tokens -----------------------------------------------------------------------------

    def create_token(
        self,
        *,
        user: str,
        scope: str = "read",
        datasets: Sequence[str] | None = None,
        expires_in: timedelta | None = None,
        note: str | None = None,
        actor: Actor = ANONYMOUS,
    ) -> IssuedToken:
        """Make a token for ``user`` (admin); its secret is in the answer only."""
        with self.door.act(actor, "tokens", SERVER, user=user, scope=scope) as act:
            minted = mint()
            expires = None if expires_in is None else datetime.now(UTC) + expires_in
            record = self.catalog.access.create_token(
                id=minted.id,
                secret_sha256=minted.sha256,
                user=user,
                scope=scope,
                datasets=datasets,
                expires_at=expires,
                created_by=actor.user or actor.via,
                note=note,
            )
            act.detail["token"] = record.id
            return IssuedToken(record, minted.text)

    def tokens(self, *, user: str | None = None, actor: Actor = ANONYMOUS) -> list[TokenRecord]:
        """Tokens (never their secrets), newest first (admin)."""
        self.door.authorize(actor, "tokens", SERVER)
        return self.catalog.access.tokens(user)

    def revoke_token(self, token_id: str, *, actor: Actor = ANONYMOUS) -> TokenRecord:
        """Revoke a token: refused from the next request of every process (admin)."""
        with self.door.act(actor, "tokens", SERVER, token=token_id, change="revoke"):
            return self.catalog.access.revoke_token(token_id)

    # -- grants -----------------------------------------------------------------------------

    def grant(self, dataset: str, principal: str, role: str, *, actor: Actor = ANONYMOUS) -> GrantRecord:
        """Give ``principal`` (``user:NAME``/``group:NAME``; a bare name is a user) ``role`` on
        ``dataset`` (owner), or server-wide ``admin`` on ``*`` (admin)."""
        principal = _principal(principal)
        action: Action = "tokens" if dataset == SERVER else "grant"  # server-wide: admin only
        with self.door.act(actor, action, dataset, principal=principal, role=role, change="grant"):
            return self.catalog.access.grant(dataset, principal, role, by=actor.user or actor.via)

    def revoke(self, dataset: str, principal: str, *, actor: Actor = ANONYMOUS) -> bool:
        """Take ``principal``'s role on ``dataset`` away (owner; ``*``: admin)."""
        principal = _principal(principal)
        action: Action = "tokens" if dataset == SERVER else "grant"
        with self.door.act(actor, action, dataset, principal=principal, change="revoke"):
            return self.catalog.access.revoke(dataset, principal)

    def access(self, dataset: str, *, actor: Actor = ANONYMOUS) -> AccessReport:
        """``dataset``'s policy and grants (owner)."""
        self.door.authorize(actor, "grant", dataset)
        return AccessReport(self.catalog.access.policy(dataset), self.catalog.access.grants(dataset=dataset))

    def set_policy(
        self,
        dataset: str,
        *,
        visibility: str | None = None,
        classification: str | None = None,
        actor: Actor = ANONYMOUS,
    ) -> Policy:
        """Change ``dataset``'s visibility or classification (owner)."""
        change = {"visibility": visibility, "classification": classification}
        with self.door.act(actor, "classify", dataset, **{k: v for k, v in change.items() if v}):
            return self.catalog.access.set_policy(
                dataset, visibility=visibility, classification=classification
            )

    def add_member(self, group: str, user: str, *, actor: Actor = ANONYMOUS) -> None:
        """Put ``user`` into the local group ``group`` (admin)."""
        with self.door.act(actor, "tokens", SERVER, group=group, user=user, change="add member"):
            self.catalog.access.add_member(group, user)

    def remove_member(self, group: str, user: str, *, actor: Actor = ANONYMOUS) -> bool:
        """Take ``user`` out of ``group`` (admin)."""
        with self.door.act(actor, "tokens", SERVER, group=group, user=user, change="remove member"):
            return self.catalog.access.remove_member(group, user)

    # -- audit ------------------------------------------------------------------------------

    def audit(
        self,
        *,
        user: str | None = None,
        dataset: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: int = 0,
        limit: int = 1000,
        actor: Actor = ANONYMOUS,
    ) -> list[AuditRecord]:
        """Audit rows in order, filtered (admin)."""
        self.door.authorize(actor, "audit", SERVER)
        return self.catalog.audit.rows(
            actor=user, dataset=dataset, action=action, since=since, until=until, after=after, limit=limit
        )

    def verify_audit(self, *, actor: Actor = ANONYMOUS) -> AuditCheck:
        """Recompute the audit log's hash chain (admin)."""
        self.door.authorize(actor, "audit", SERVER)
        return self.catalog.audit.verify()


def _principal(text: str) -> str:
    return text if text.startswith(("user:", "group:")) else f"user:{text}"
