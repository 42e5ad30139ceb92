"""A local S3 API for the scale benchmarks, on 127.0.0.1 with one bucket, and the ``AWS_*``
variables that point obstore at it (set in this process's environment for the block, and
returned for child processes).

Two servers: moto's standalone server (:func:`moto_server`, the tests' S3), which holds every
object in memory and answers a request in about 5 ms; and LocalBucket (:func:`localbucket_server`,
a one-file standard-library server, PyPI ``localbucket``), which keeps objects as files in a
folder, streams GETs from them, joins multipart uploads on disk and honours ``If-None-Match: *``
(the conditional write Zarr's group creation relies on): 300 small PUTs in 0.23 s, a 200 MB
GET in 0.46 s on this VM; it is started with ``TCP_NODELAY`` and S3's multipart ETags
(:data:`_LOCALBUCKET`).
B1M's 16 GB input fits through it; it does not fit through moto.

    >>> with s3_server("localbucket", "my-bucket", Path("/tmp/objects")) as env:  # doctest: +SKIP
    ...     env["AWS_ENDPOINT_URL"]
    'http://127.0.0.1:40123'
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["S3_SERVERS", "localbucket_server", "moto_server", "s3_server", "server_cpu_s"]

S3_SERVERS = ("localbucket", "moto")
_PIDS: dict[str, int] = {}  # endpoint → the server's process


def server_cpu_s(env: dict[str, str]) -> float:
    """CPU seconds (user + system) the server at ``env``'s endpoint has used so far: what a
    request costs the server, on the cores the client shares with it here."""
    fields = Path(f"/proc/{_PIDS[env['AWS_ENDPOINT_URL']]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@contextlib.contextmanager
def moto_server(bucket: str) -> Iterator[dict[str, str]]:
    """Yields the ``AWS_*`` environment of a running moto server holding ``bucket``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"moto server exited ({proc.poll()})")
            m = re.search(r"Running on http://127\.0\.0\.1:(\d+)", line)
            port = int(m.group(1)) if m else None
        if port is None:
            raise RuntimeError("moto server did not start within 60 s")
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
        with _environment(port, bucket, proc.pid) as env:
            yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def _environment(port: int, bucket: str, pid: int) -> Iterator[dict[str, str]]:
    """The ``AWS_*`` variables of the server on ``port`` (process ``pid``) in this process
    (restored after), with ``bucket`` created there."""
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "widecube-key",
        "AWS_SECRET_ACCESS_KEY": "widecube-secret-not-to-be-seen",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _PIDS[env["AWS_ENDPOINT_URL"]] = pid
    try:
        import boto3

        client = boto3.client("s3")
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):  # a crashed run's --work
            client.create_bucket(Bucket=bucket)
        yield env
    finally:
        _PIDS.pop(env["AWS_ENDPOINT_URL"], None)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_LOCALBUCKET = Path(__file__).with_name("_localbucket.py")
"""LocalBucket's launcher: its sockets with ``TCP_NODELAY`` and S3's ETag for a multipart
upload, as S3 and MinIO answer (see that module)."""


@contextlib.contextmanager
def localbucket_server(bucket: str, root: Path) -> Iterator[dict[str, str]]:
    """Yields the ``AWS_*`` environment of a LocalBucket server keeping ``bucket`` under ``root``."""
    with socket.socket() as probe:  # a free port (LocalBucket takes one; it does not print it)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, str(_LOCALBUCKET), "--host", "127.0.0.1", "--port", str(port), str(root)],
        stdout=subprocess.DEVNULL,  # a line per request
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"localbucket did not start ({proc.poll()})") from None
                time.sleep(0.1)
        with _environment(port, bucket, proc.pid) as env:
            yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def s3_server(kind: str, bucket: str, root: Path) -> Iterator[dict[str, str]]:
    """:func:`localbucket_server` (objects under ``root``) or :func:`moto_server` (in memory)."""
    if kind not in S3_SERVERS:
        raise ValueError(f"unknown S3 server {kind!r} (one of {', '.join(S3_SERVERS)})")
    with localbucket_server(bucket, root) if kind == "localbucket" else moto_server(bucket) as env:
        yield env
