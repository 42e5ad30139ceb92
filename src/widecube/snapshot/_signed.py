"""S3 requests obstore does not make for widecube, each signed by obstore with the store's own
credentials (none passes through widecube) and sent by httpx: single-object deletes for a
server without ``DeleteObjects`` (:func:`delete_objects`), and the headers of an object that
obstore's ``head`` leaves out (:func:`encrypted_by_key`)."""

from __future__ import annotations

import contextlib
import errno
import os
from datetime import timedelta
from typing import Any, Literal

__all__ = ["delete_objects", "encrypted_by_key"]

_BATCH_REFUSED: set[tuple[str, str]] = set()  # (endpoint, bucket) that answered DeleteObjects 501
_BATCH_ACCEPTED: set[tuple[str, str]] = set()  # (endpoint, bucket) that answered it
_SIGNED_FOR = timedelta(minutes=5)


def delete_objects(store: Any, paths: list[str]) -> None:
    """Delete ``paths`` (at most 1,000) of an obstore S3 store; a missing one is no error.

    obstore sends every delete, one path too, as S3's ``DeleteObjects`` (``POST ?delete``).
    A server that does not implement it (``501 NotImplemented``: LocalBucket; Google Cloud
    Storage's XML API) gets one ``DELETE`` per object instead, each a URL obstore signs with
    the store's own credentials (none passes through widecube), sent by httpx. The first batch
    to a server goes without retries (obstore retries a 5xx answer, 501 too: 3.4 s of backoff
    against LocalBucket); its answer is remembered, so a server that refuses is never asked
    again, and one that failed otherwise is asked again with the store's retries.
    """
    import obstore
    from obstore.exceptions import GenericError

    where = (os.environ.get("AWS_ENDPOINT_URL", ""), str(store.config.get("bucket", "")))
    if where not in _BATCH_REFUSED:
        tries = [store] if where in _BATCH_ACCEPTED else [_without_retries(store), store]
        for asked in tries:
            try:
                with contextlib.suppress(FileNotFoundError):
                    obstore.delete(asked, paths)
                _BATCH_ACCEPTED.add(where)
                return
            except GenericError as exc:
                if "<Code>NotImplemented</Code>" in str(exc):
                    _BATCH_REFUSED.add(where)
                    break
                if asked is store:  # not a refusal, and the store's own retries did not help
                    raise
    import httpx2 as httpx

    with httpx.Client(timeout=60) as client:
        for path in paths:
            answer = _send(client, "DELETE", store, path)
            if answer.status_code not in (200, 204, 404):
                raise OSError(errno.EIO, f"deleting {path}: the store answered {answer.status_code}")


def _without_retries(store: Any) -> Any:
    """The same S3 store (configuration, prefix, client options), asking once."""
    from obstore.store import S3Store

    return S3Store(
        prefix=store.prefix,
        config=store.config,
        client_options=store.client_options,
        retry_config={"max_retries": 0},
    )


_KEY_ENCRYPTION = ("aws:kms", "aws:kms:dsse")


def encrypted_by_key(store: Any, path: str) -> bool:
    """Whether the object is encrypted with a KMS key (SSE-KMS, DSSE-KMS) or a customer's key
    (SSE-C): S3 then gives it an ETag that is not the MD5 of its bytes, even for a single-part
    upload, so an ETag cannot check a copy of it. One signed ``HEAD``: obstore's ``head``
    does not return the encryption headers. False when no such request can be made (a store
    read without credentials cannot sign one, and its objects cannot be KMS-encrypted: S3
    serves those to signed requests only) or is refused."""
    import httpx2 as httpx

    try:
        with httpx.Client(timeout=60) as client:
            answer = _send(client, "HEAD", store, path)
    except Exception:  # noqa: BLE001 - cannot sign, or cannot send: the ETag stays a checksum
        return False
    if answer.status_code != 200:
        return False
    headers = answer.headers
    return (
        headers.get("x-amz-server-side-encryption", "") in _KEY_ENCRYPTION
        or "x-amz-server-side-encryption-customer-algorithm" in headers
    )


def _send(client: Any, method: Literal["DELETE", "HEAD"], store: Any, path: str) -> Any:
    """``method`` on ``path``, by a URL obstore signs; a failure to send names the method and
    the path, never the URL (its query is a credential for a few minutes)."""
    import httpx2 as httpx
    import obstore

    url = str(obstore.sign(store, method, path, _SIGNED_FOR))
    try:
        return client.request(method, url)
    except httpx.HTTPError as exc:
        raise OSError(errno.EIO, f"{method} {path}: {type(exc).__name__}") from None
