"""The tests' S3 servers on 127.0.0.1, each holding one bucket and yielding boto3's S3 client
of it, with the ``AWS_*`` variables that point obstore and boto3 at it set meanwhile (restored
afterwards): moto's standalone server (:func:`moto_bucket`, objects in memory) and LocalBucket
(:func:`localbucket`, objects as files under a folder; no ``DeleteObjects``).

Both are started by ``benchmarks/_s3server.py``, the one place that knows how to run them (the
benchmarks run the same servers); it is loaded from its file, so benchmarks/ never joins
``sys.path``.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_spec = importlib.util.spec_from_file_location(
    "widecube_bench_s3server", Path(__file__).resolve().parent.parent / "benchmarks" / "_s3server.py"
)
assert _spec is not None and _spec.loader is not None
_servers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_servers)


@contextlib.contextmanager
def moto_bucket(bucket: str) -> Iterator[Any]:
    """Yields boto3's S3 client of a running moto server holding ``bucket``."""
    with _servers.moto_server(bucket) as env:
        yield _client(env)


@contextlib.contextmanager
def localbucket(bucket: str, root: Path) -> Iterator[Any]:
    """Yields boto3's S3 client of a running LocalBucket server keeping ``bucket`` under ``root``."""
    with _servers.localbucket_server(bucket, root) as env:
        yield _client(env)


def _client(env: dict[str, str]) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
