"""moto's standalone S3 server on 127.0.0.1 (port from the OS) with one bucket, and the AWS_*
variables that point obstore and boto3 at it, restored afterwards (a context manager, for
fixtures outside tests/snapshot/, whose test_object_storage.py has its own fixture); and
LocalBucket (objects as files, no DeleteObjects) the same way."""

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
from typing import Any


@contextlib.contextmanager
def moto_bucket(bucket: str) -> Iterator[Any]:
    """Yields boto3's S3 client of a running moto server holding ``bucket``."""
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
        assert port is not None, "moto server did not start"
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
        with _aws_environment(f"http://127.0.0.1:{port}"):
            import boto3

            client = boto3.client("s3")
            client.create_bucket(Bucket=bucket)
            yield client
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def _aws_environment(endpoint: str) -> Iterator[dict[str, str]]:
    """The ``AWS_*`` variables that point obstore and boto3 at ``endpoint``, restored after."""
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret-not-to-be-seen",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def localbucket(bucket: str, root: Path) -> Iterator[Any]:
    """Yields boto3's S3 client of a running LocalBucket server (PyPI ``localbucket``: objects
    kept as files under ``root``; no ``DeleteObjects``) holding ``bucket``."""
    with socket.socket() as probe:  # a free port (LocalBucket takes one; it does not print it)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exe = Path(sys.executable).with_name("localbucket")
    proc = subprocess.Popen(
        [str(exe), "--host", "127.0.0.1", "--port", str(port), str(root)],
        stdout=subprocess.DEVNULL,
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
        with _aws_environment(f"http://127.0.0.1:{port}") as env:
            import boto3

            client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
            client.create_bucket(Bucket=bucket)
            yield client
    finally:
        proc.terminate()
        proc.wait(timeout=30)
