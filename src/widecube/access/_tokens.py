"""API tokens: how one is minted, written and recognised.

A token reads ``wc_<id>_<secret>``: ``id`` (12 hex digits) names the row in the catalog,
``secret`` (43 url-safe characters, 256 random bits) is shown once and only its SHA-256 is
stored. Checking a presented token costs one lookup by id and one constant-time comparison
of hashes, so neither timing nor the stored rows reveal a secret.

    >>> token = mint()
    >>> parse(token.text) == (token.id, token.secret)
    True
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

__all__ = ["Minted", "digest", "matches", "mint", "parse"]

_FORM = re.compile(r"wc_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True, slots=True)
class Minted:
    """A new token: its id, its secret, and the text handed to the user."""

    id: str
    secret: str

    @property
    def text(self) -> str:
        return f"wc_{self.id}_{self.secret}"

    @property
    def sha256(self) -> str:
        return digest(self.secret)


def mint() -> Minted:
    """A fresh token (256 random bits from the OS's generator)."""
    return Minted(secrets.token_hex(6), secrets.token_urlsafe(32))


def parse(text: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a token's text, or None if it is not one."""
    found = _FORM.fullmatch(text.strip())
    return None if found is None else (found.group(1), found.group(2))


def digest(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_sha256: str) -> bool:
    """Whether ``secret`` hashes to ``stored_sha256``, compared in constant time."""
    return hmac.compare_digest(digest(secret), stored_sha256)
