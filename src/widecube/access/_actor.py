"""Who is asking: the caller every facade method receives as ``actor``.

An :class:`Actor` is built once per request (the API, from a bearer token, an OIDC JWT or the
UI's session cookie) or once per process (the CLI, the in-process Python client, the server's
own upkeep) and carries what the door needs to decide: the user and their groups, what the
credential was narrowed to (scope, datasets), and where the request came from.

    >>> Actor(user="ana", via="token", scope="read", token="3f2a").key
    'token:3f2a'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

__all__ = ["ANONYMOUS", "Action", "Actor", "Scope", "Transport", "Via"]

Via = Literal["anonymous", "token", "oidc", "session", "cli", "local", "server"]
"""How the caller reached the door: an HTTP request without credentials, an API token, an
OIDC bearer JWT, the web UI's session cookie, the command line, the in-process Python client,
or the server itself (upkeep)."""

Scope = Literal["read", "write", "admin"]
"""What a credential is narrowed to: ``read`` caps the user's roles at reader, ``write`` at
writer; ``admin`` leaves them as granted."""

Transport = Literal["tls", "loopback", "plain"]
"""How an HTTP request arrived: over TLS, over plain HTTP on loopback, or plain on a network."""

Action = Literal[
    "read",
    "submit",
    "upload",
    "publish",
    "rollback",
    "verify",
    "grant",
    "classify",
    "describe",
    "delete",
    "gc",
    "archive",
    "restore",
    "release",
    "retention",
    "scrub",
    "inventory",
    "jobs",
    "upkeep",
    "tokens",
    "audit",
]
"""What the caller wants to do. On a dataset: ``read`` (any query), ``submit``/``upload``
(ingest: writer), ``publish``/``rollback``/``verify``/``grant``/``classify``/``describe``
(owner; ``describe`` sets the dataset's metadata), ``delete`` (owner: the whole dataset) and the lifecycle
``gc``/``archive``/``restore``/``release``/``retention``/``scrub``/``inventory`` (owner); the
lifecycle actions on resource ``*`` (every dataset) are admin only. Server-wide
(resource ``*``): ``jobs`` (run or list every job), ``upkeep`` (the decoded cache, expiring
uploads), ``tokens`` (others' tokens), ``audit`` (read the log): admin."""

_TRUSTED = frozenset({"cli", "local", "server"})


@dataclass(frozen=True, slots=True)
class Actor:
    """The caller of a facade method.

    ``user`` None is anonymous. ``scope`` None means no cap; ``datasets`` None means not
    narrowed. ``client`` and ``request_id`` only go into the audit log.
    """

    user: str | None = None
    via: Via = "anonymous"
    groups: frozenset[str] = frozenset()
    scope: Scope | None = None
    datasets: frozenset[str] | None = None
    token: str | None = None
    client: str | None = None
    request_id: str | None = None
    transport: Transport | None = None

    @classmethod
    def anonymous(cls) -> Actor:
        """A caller without credentials."""
        return ANONYMOUS

    @classmethod
    def cli(cls, user: str | None = None) -> Actor:
        """The command line, run by whoever owns the process (and so the catalog's files)."""
        return cls(user=user or _os_user(), via="cli")

    @classmethod
    def local(cls, user: str | None = None) -> Actor:
        """The in-process Python client on a storage folder this process can read anyway."""
        return cls(user=user or _os_user(), via="local")

    @classmethod
    def server(cls) -> Actor:
        """The server's own background work (cache upkeep, expiring uploads)."""
        return cls(user="widecube-server", via="server")

    @property
    def trusted(self) -> bool:
        """The process owner (CLI, in-process client, the server itself): holds the catalog's
        files already, so the door lets it through (and still records what it changes)."""
        return self.via in _TRUSTED

    @property
    def principals(self) -> tuple[str, ...]:
        """``user:NAME`` and ``group:NAME`` for every group: what grants are given to."""
        if self.user is None:
            return ()
        return (f"user:{self.user}", *sorted(f"group:{g}" for g in self.groups))

    @property
    def key(self) -> str:
        """Who to count for rate limiting: the token, else the user, else the address."""
        if self.token is not None:
            return f"token:{self.token}"
        if self.user is not None:
            return f"user:{self.user}"
        return f"addr:{self.client}"

    def came_from(
        self, client: str | None, request_id: str | None, transport: Transport | None = None
    ) -> Actor:
        """This actor, stamped with the request it made."""
        return dataclasses.replace(self, client=client, request_id=request_id, transport=transport)


ANONYMOUS = Actor()


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        import os

        return f"uid-{os.getuid()}"
