"""The door: every facade method asks it before it touches data, and it writes the audit log.

:meth:`Door.authorize` looks up the dataset's policy and the caller's grants in the catalog
(on every call: no permission cache outlives a commit, so a revocation holds from the next
request of every process), decides with :func:`~._policy.decide`, records what the audit
policy asks for, and raises what the faces map to HTTP statuses: :class:`DatasetNotFound`
(404, the caller may not know the dataset exists), :class:`AuthenticationFailed` (401, an
anonymous caller might sign in), :class:`PermissionDenied` (403).

:meth:`Door.act` wraps a state change (ingest, upload, publish, rollback, grant): it
authorizes, runs the block, and records ``ok`` or ``failed`` with the version it made.

    >>> with door.act(actor, "publish", "pbmc") as act:                     # doctest: +SKIP
    ...     act.version = admin.publish(...)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..catalog import AuditEvent, Catalog, Lookup, Policy
from ..errors import AuthenticationFailed, DatasetNotFound, PermissionDenied
from ._actor import Action, Actor
from ._policy import AUDITED_READS, SERVER_ACTIONS, Decision, decide, decide_server, effective_rank

__all__ = ["Act", "Door", "SERVER"]

SERVER = "*"
"""The resource of a server-wide action."""
_WHOLE = frozenset({"catalog", "jobs", "uploads", "cache", SERVER})


@dataclass(slots=True)
class Act:
    """A state change in progress: the block sets ``version`` (and ``detail``) for the log."""

    decision: Decision
    version: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class Door:
    """Authorization and audit over one catalog; ``auth`` False lets everyone in (still
    recording every change)."""

    def __init__(self, catalog: Catalog, *, auth: bool) -> None:
        self.catalog, self.auth = catalog, auth

    def authorize(self, actor: Actor, action: Action, resource: str) -> Decision:
        """Allow ``actor`` to do ``action`` on ``resource`` (a dataset's name, or ``*`` and the
        legacy whole-resource names for server-wide actions), or raise."""
        if resource in _WHOLE or action in SERVER_ACTIONS:
            return self._server(actor, action, resource)
        lookup = self._lookup(actor, resource)
        decision = decide(actor, action, lookup, auth=self.auth)
        if not decision.allowed:
            self._refuse(actor, action, resource, decision)
        if action == "read" and lookup.policy.classification in AUDITED_READS:
            self.record(
                actor, "read", resource, outcome="allowed", classification=lookup.policy.classification
            )
        return decision

    @contextmanager
    def act(self, actor: Actor, action: Action, dataset: str, **detail: Any) -> Iterator[Act]:
        """Authorize a state change, run the block, record how it ended. A caller that
        creates a dataset (its first ingest or upload) becomes its owner."""
        decision = self.authorize(actor, action, dataset)
        if decision.outcome == "created" and actor.user is not None:
            self.catalog.access.set_policy(dataset)
            self.catalog.access.grant(dataset, f"user:{actor.user}", "owner", by=actor.user)
        act = Act(decision, detail=dict(detail))
        try:
            yield act
        except BaseException as exc:
            error = type(exc).__name__
            self.record(
                actor, action, dataset, version=act.version, outcome="failed", error=error, **act.detail
            )
            raise
        self.record(actor, action, dataset, version=act.version, outcome="ok", **act.detail)

    def visible(self, actor: Actor, names: Iterable[str]) -> list[str]:
        """The datasets among ``names`` that ``actor`` may read (a listing shows only these)."""
        names = list(names)
        if not self.auth or actor.trusted:
            return names
        policies = self.catalog.access.policies()
        roles = self.catalog.access.roles_of(actor.principals)
        server = roles.get(SERVER, ())
        shown = []
        for name in names:
            if actor.datasets is not None and name not in actor.datasets:
                continue
            policy = policies.get(name, Policy(name, "restricted", "internal", exists=False))
            if effective_rank(actor, Lookup(policy, (*roles.get(name, ()), *server))) >= 1:
                shown.append(name)
        return shown

    def may(self, actor: Actor, action: Action, dataset: str) -> bool:
        """Whether ``actor`` may do ``action`` on ``dataset`` (no log, no error: for filters)."""
        if not self.auth or actor.trusted:
            return True
        return decide(actor, action, self._lookup(actor, dataset), auth=self.auth).allowed

    def record(
        self,
        actor: Actor,
        action: str,
        dataset: str | None = None,
        *,
        version: str | None = None,
        outcome: str = "ok",
        **detail: Any,
    ) -> None:
        """Append one row to the audit log for ``actor``."""
        self.catalog.audit.append(
            AuditEvent(
                action=action,
                outcome=outcome,
                actor=actor.user,
                via=actor.via,
                dataset=dataset,
                version=version,
                detail=detail,
                client=actor.client,
                request_id=actor.request_id,
            )
        )

    # -- inside ------------------------------------------------------------------------------

    def _lookup(self, actor: Actor, dataset: str) -> Lookup:
        return self.catalog.access.lookup(dataset, actor.principals)

    def _server(self, actor: Actor, action: Action, resource: str) -> Decision:
        if action in ("read", "submit", "upload") and resource in _WHOLE:
            # listing the catalog, creating an upload: allowed here, each dataset is checked
            # (listings filtered with :meth:`visible`, an upload when it names its dataset)
            return Decision("allowed")
        roles = self.catalog.access.roles_of(actor.principals).get(SERVER, ()) if actor.principals else ()
        decision = decide_server(actor, action, roles, auth=self.auth)
        if not decision.allowed:
            self._refuse(actor, action, None, decision)
        return decision

    def _refuse(self, actor: Actor, action: str, dataset: str | None, decision: Decision) -> None:
        self.record(actor, action, dataset, outcome="denied", reason=decision.outcome)
        if decision.outcome == "hidden":
            raise DatasetNotFound(f"no dataset named {dataset!r} in the catalog")
        if decision.outcome == "unauthenticated":
            raise AuthenticationFailed(f"sign in: {decision.reason}")
        raise PermissionDenied(decision.reason)
