"""Sharing a snapshot: time-limited links to every file of a version.

A reader of a dataset may ask for links to a version's files (its manifest and every file it
lists, each with size and sha256, so the copy can be checked). On an object store each link is
a presigned GET URL (obstore's ``sign``); on a local store the facade signs one token naming the
dataset, version and expiry with the server's session key (itsdangerous, salted apart from the
UI's cookies), and the API's download route serves the files of that version to whoever holds
it until it expires. A link is the credential: it opens nothing else, not after it expires,
and not once the version is no longer servable.

    >>> links = wc.download("pbmc", expires_in=600)                          # doctest: +SKIP
    >>> wc.download_file(links["token"], "manifest.json")                    # doctest: +SKIP
    PosixPath('.../datasets/pbmc/3f2a.../manifest.json')
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from itsdangerous import BadSignature, URLSafeSerializer

from ..access import ANONYMOUS, Actor, session_key
from ..errors import InvalidQuery, NotFound, PermissionDenied
from ..snapshot import MANIFEST
from ._resolve import Resolver
from .results import DownloadLinks

__all__ = ["MAX_LINK_SECONDS", "Links"]

MAX_LINK_SECONDS = 7 * 24 * 3600
"""The longest a link may live (S3's own limit for presigned URLs)."""
_SALT = "widecube.download"


class LinkNotFound(NotFound):
    """A download token that this server did not sign, or a file its version does not have."""


class Links(Resolver):
    """Time-limited links to the files of a snapshot."""

    def download(
        self,
        dataset: str,
        version: str | None = None,
        *,
        expires_in: int = 3600,
        actor: Actor = ANONYMOUS,
    ) -> DownloadLinks:
        """Links to every file of a version (default: the live one), valid ``expires_in``
        seconds (1 to 7 days' worth)."""
        if not 1 <= expires_in <= MAX_LINK_SECONDS:
            raise InvalidQuery(f"expires_in must be 1 to {MAX_LINK_SECONDS:,} seconds, not {expires_in:,}")
        self.door.authorize(actor, "read", dataset)
        record, snap = self.resolve(dataset, version)
        expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=expires_in)
        listed = {MANIFEST: {"size": None, "sha256": None}, **snap.manifest["files"]}
        files = [
            {"path": p, "size": f.get("size"), "sha256": f.get("sha256"), "url": None}
            for p, f in listed.items()
        ]
        token = None
        if snap.files.local is None:  # an object store: presigned URLs
            for f in files:
                f["url"] = snap.files.signed_url(f["path"], expires_in)
        else:
            payload = {"d": dataset, "v": record.version, "e": int(expires.timestamp())}
            token = self._signer().dumps(payload)
        return DownloadLinks(
            dataset=dataset, version=record.version, expires=expires, files=files, token=token
        )

    def download_file(self, token: str, path: str, *, actor: Actor = ANONYMOUS) -> Path:
        """The local file ``path`` of the version ``token`` names, if the token is this
        server's, has not expired, its version is still servable and lists ``path``."""
        try:
            payload = self._signer().loads(token)
            dataset, version, expires = str(payload["d"]), str(payload["v"]), int(payload["e"])
        except (BadSignature, KeyError, TypeError, ValueError) as exc:
            raise LinkNotFound("this download link is not valid (not signed by this server)") from exc
        if datetime.now(UTC).timestamp() > expires:
            when = datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds")
            raise PermissionDenied(
                f"this download link of dataset {dataset!r} expired at {when}; ask for a new one"
            )
        _, snap = self.resolve(dataset, version)
        if path != MANIFEST and path not in snap.manifest["files"]:
            raise LinkNotFound(f"version {version} of dataset {dataset!r} has no file {path[:80]!r}")
        root = snap.files.local
        if root is None:
            raise LinkNotFound(
                f"version {version} of dataset {dataset!r} is on an object store: use its presigned URLs"
            )
        return root / path

    def _signer(self) -> URLSafeSerializer:
        return URLSafeSerializer(session_key(self.settings), salt=_SALT)
