"""Who is asking, and the one place that decides whether they may: the door every face
(API, CLI, Python client) passes through.

Every public facade method (:class:`widecube.query.Widecube`, :class:`widecube.pipeline.Jobs`,
:class:`widecube.pipeline.UploadStore`) takes the caller as ``actor`` and calls
:func:`authorize` before it does anything. Nothing is refused yet: the point is that when
authentication lands (API tokens, OIDC) only :func:`authorize` and the code that builds the
:class:`Actor` change, not every route and command.

    >>> authorize(Actor(user="ana", via="cli"), "publish", "pbmc")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Action", "Actor", "Via", "authorize"]

Via = Literal["anonymous", "token", "oidc", "cli", "local", "server"]
"""How the caller reached the door: an HTTP request without credentials, an API token, an
OIDC login, the command line, the in-process Python client, or the server itself (upkeep)."""

Action = Literal["read", "publish", "rollback", "verify", "upkeep", "submit", "jobs", "upload"]
"""What the caller wants to do (``read``: any query; ``upkeep``: the server's cache upkeep)."""


@dataclass(frozen=True, slots=True)
class Actor:
    """The caller of a facade method: a user name (None when unknown) and how they came in."""

    user: str | None = None
    via: Via = "anonymous"

    @classmethod
    def anonymous(cls) -> Actor:
        """An HTTP caller without credentials (every HTTP caller until authentication lands)."""
        return ANONYMOUS

    @classmethod
    def cli(cls) -> Actor:
        """The command line, run by whoever owns the process."""
        return cls(user=None, via="cli")

    @classmethod
    def server(cls) -> Actor:
        """The server's own background work (cache upkeep, expiring uploads)."""
        return cls(user=None, via="server")


ANONYMOUS = Actor()


def authorize(actor: Actor, action: Action, resource: str) -> None:
    """Allow or refuse ``actor`` doing ``action`` on ``resource`` (a dataset name, or
    ``"catalog"``/``"jobs"``/``"uploads"``/``"cache"`` for the whole of one).

    Authorization and audit go HERE and nowhere else: every facade method calls this first.
    Today everything is allowed (no face authenticates callers yet); a refusal will raise a
    :class:`~widecube.errors.WidecubeError` subclass that the API maps to 403.
    """
    del actor, action, resource  # allowed: nothing checks yet
