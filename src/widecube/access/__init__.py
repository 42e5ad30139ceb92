"""Who is asking and what they may do: identities (API tokens, OIDC), grants, data
classification, and the audit log, decided at one door that every face passes through.

Every public facade method (:class:`widecube.query.Widecube`, :class:`widecube.pipeline.Jobs`,
:class:`widecube.pipeline.Uploads`) takes the caller as ``actor`` and asks the door before it
does anything.
"""

from __future__ import annotations

from ._actor import ANONYMOUS, Action, Actor, Via, authorize

__all__ = ["ANONYMOUS", "Action", "Actor", "Via", "authorize"]
