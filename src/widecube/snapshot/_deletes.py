"""Deleting objects of an S3 store, also on a server without S3's ``DeleteObjects``."""

from __future__ import annotations

import contextlib
import errno
import os
from datetime import timedelta
from typing import Any

__all__ = ["delete_objects"]

_BATCH_REFUSED: set[tuple[str, str]] = set()  # (endpoint, bucket) that answered DeleteObjects 501
_SIGNED_FOR = timedelta(minutes=5)


def delete_objects(store: Any, paths: list[str]) -> None:
    """Delete ``paths`` (at most 1,000) of an obstore S3 store; a missing one is no error.

    obstore sends every delete, one path too, as S3's ``DeleteObjects`` (``POST ?delete``).
    A server that does not implement it (``501 NotImplemented``: LocalBucket; Google Cloud
    Storage's XML API) gets one ``DELETE`` per object instead, each a URL obstore signs with
    the store's own credentials (none passes through widecube), sent by httpx; the server is
    remembered, so only its first delete pays obstore's retries of the refused request.
    """
    import obstore
    from obstore.exceptions import GenericError

    where = (os.environ.get("AWS_ENDPOINT_URL", ""), str(store.config.get("bucket", "")))
    if where not in _BATCH_REFUSED:
        try:
            with contextlib.suppress(FileNotFoundError):
                obstore.delete(store, paths)
            return
        except GenericError as exc:
            if "<Code>NotImplemented</Code>" not in str(exc):
                raise
            _BATCH_REFUSED.add(where)
    import httpx2 as httpx

    with httpx.Client(timeout=60) as client:
        for path in paths:
            answer = client.delete(str(obstore.sign(store, "DELETE", path, _SIGNED_FOR)))
            if answer.status_code not in (200, 204, 404):
                raise OSError(errno.EIO, f"deleting {path}: the store answered {answer.status_code}")
