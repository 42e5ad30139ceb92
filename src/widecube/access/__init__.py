"""Who is asking and what they may do: identities (API tokens, OIDC, the UI's session),
grants, data classification, and the audit log, decided at one door that every face passes
through.

Every public facade method (:class:`widecube.query.Widecube`, :class:`widecube.pipeline.Jobs`,
:class:`widecube.pipeline.Uploads`) takes the caller as ``actor`` and asks its :class:`Door`
before it does anything; the faces (API, CLI, Python client) only build the :class:`Actor`.
"""

from __future__ import annotations

from ..catalog import NAME_PATTERN
from . import _tokens as tokens
from ._actor import ANONYMOUS, Action, Actor, Scope, Transport, Via
from ._door import SERVER, Act, Door
from ._identity import (
    SESSION_MAX_AGE,
    Identities,
    Session,
    oidc_login,
    oidc_verifier,
    session_key,
    transport_of,
)
from ._manage import AccessReport, Governance, IssuedToken
from ._policy import NEEDS, RANK, Decision, decide, decide_server

__all__ = [
    "ANONYMOUS",
    "NAME_PATTERN",
    "NEEDS",
    "RANK",
    "SERVER",
    "SESSION_MAX_AGE",
    "AccessReport",
    "Act",
    "Action",
    "Actor",
    "Decision",
    "Door",
    "Governance",
    "Identities",
    "IssuedToken",
    "Scope",
    "Session",
    "Transport",
    "Via",
    "decide",
    "decide_server",
    "oidc_login",
    "oidc_verifier",
    "session_key",
    "tokens",
    "transport_of",
]
