"""The rules: from a caller, an action and what the catalog says about a dataset, allow or
refuse. Pure functions over plain data, so the whole table of cases is tested without a
server.

Roles rank ``reader`` < ``writer`` < ``owner`` < ``admin`` (server-wide). A dataset's
visibility lends ``reader`` to everyone (``public``) or to every signed-in user
(``internal``); ``restricted`` lends nothing. A credential's scope caps the rank
(``read``: reader, ``write``: writer). A credential narrowed to some datasets sees no others.
A dataset that does not exist yet may be created (ingest, upload) by any signed-in caller
whose scope allows writing; they become its owner.

    >>> decide(Actor(user="ana", via="token", scope="read"), "publish", Lookup(
    ...     Policy("pbmc", "internal", "open"), ("owner",)), auth=True).outcome
    'forbidden'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..catalog import Lookup
from ._actor import Action, Actor

__all__ = ["NEEDS", "RANK", "SERVER_ACTIONS", "Decision", "decide", "decide_server"]

RANK = {"reader": 1, "writer": 2, "owner": 3, "admin": 4}
_CAP = {"read": 1, "write": 2, "admin": 4}
NEEDS: dict[str, str] = {
    "read": "reader",
    "submit": "writer",
    "upload": "writer",
    "publish": "owner",
    "rollback": "owner",
    "verify": "owner",
    "grant": "owner",
    "classify": "owner",
    "describe": "owner",
    "delete": "owner",
    "gc": "owner",
    "archive": "owner",
    "restore": "owner",
    "release": "owner",
    "retention": "owner",
    "scrub": "owner",
    "inventory": "owner",
}
"""The role each action on a dataset needs."""
SERVER_ACTIONS = frozenset({"jobs", "upkeep", "tokens", "audit"})
"""Actions on the whole server: admin only."""
AUDITED_READS = frozenset({"controlled", "phi"})
"""Classifications whose every read is recorded in the audit log."""

Outcome = Literal["allowed", "created", "unauthenticated", "hidden", "forbidden"]


@dataclass(frozen=True, slots=True)
class Decision:
    """``allowed``; ``created`` (allowed: a new dataset, the caller becomes its owner);
    ``unauthenticated`` (anonymous, and signing in might help: 401); ``hidden`` (the caller
    may not know the dataset exists: 404); ``forbidden`` (visible, but not this: 403)."""

    outcome: Outcome
    reason: str = ""
    role: str | None = None  # the caller's effective role on the dataset

    @property
    def allowed(self) -> bool:
        return self.outcome in ("allowed", "created")


def effective_rank(actor: Actor, lookup: Lookup) -> int:
    """The caller's rank on the dataset: the best of its grants and what visibility lends,
    capped by the credential's scope."""
    rank = max((RANK[r] for r in lookup.roles), default=0)
    visibility = lookup.policy.visibility
    if lookup.policy.exists and (
        visibility == "public" or (visibility == "internal" and actor.user is not None)
    ):
        rank = max(rank, RANK["reader"])
    if actor.scope is not None:
        rank = min(rank, _CAP[actor.scope])
    return rank


def decide(actor: Actor, action: Action, lookup: Lookup, *, auth: bool) -> Decision:
    """May ``actor`` do ``action`` on ``lookup``'s dataset?"""
    if not auth or actor.trusted:
        return Decision("allowed", role="admin")
    dataset = lookup.policy.dataset
    need = NEEDS[action]
    if actor.datasets is not None and dataset not in actor.datasets:
        return Decision("hidden", f"this credential is limited to other datasets than {dataset!r}")
    if not lookup.policy.exists:
        if action in ("submit", "upload") and actor.user is not None:
            if actor.scope is None or _CAP[actor.scope] >= RANK["writer"]:
                return Decision("created", role="owner")
            return Decision(
                "forbidden", f"a {actor.scope}-scoped credential cannot create dataset {dataset!r}"
            )
        if actor.user is None and action in ("submit", "upload"):
            return Decision("unauthenticated", "sign in to create a dataset")
        return Decision("hidden", f"no dataset named {dataset!r}")
    rank = effective_rank(actor, lookup)
    role = next((r for r, n in RANK.items() if n == rank), None)
    if rank == 0:
        if actor.user is None:
            return Decision("hidden", f"no dataset named {dataset!r} (or sign in)")
        return Decision("hidden", f"no dataset named {dataset!r}")
    # after the visibility check: a caller who may not see the dataset must not learn it is phi
    if lookup.policy.classification == "phi" and actor.transport == "plain":
        return Decision(
            "forbidden", f"dataset {dataset!r} is classified phi: it is served only over TLS or loopback"
        )
    if rank >= RANK[need]:
        return Decision("allowed", role=role)
    if actor.user is None:
        return Decision("unauthenticated", f"{action} on dataset {dataset!r} needs a signed-in {need}")
    return Decision("forbidden", f"{action} on dataset {dataset!r} needs role {need}; you have {role}")


def decide_server(actor: Actor, action: Action, roles: tuple[str, ...], *, auth: bool) -> Decision:
    """May ``actor`` do the server-wide ``action`` (jobs, upkeep, tokens, audit)? ``roles``:
    the caller's server-wide roles (``admin`` or none)."""
    if not auth or actor.trusted:
        return Decision("allowed", role="admin")
    if actor.user is None:
        return Decision("unauthenticated", f"{action} needs a signed-in admin")
    if "admin" in roles and (actor.scope is None or actor.scope == "admin"):
        return Decision("allowed", role="admin")
    return Decision(
        "forbidden", f"{action} needs the server-wide admin role (and an admin-scoped credential)"
    )
