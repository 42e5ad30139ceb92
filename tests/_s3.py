"""moto's standalone S3 server on 127.0.0.1 (port from the OS) with one bucket, and the AWS_*
variables that point obstore and boto3 at it, restored afterwards (a context manager, for
fixtures outside tests/snapshot/, whose test_object_storage.py has its own fixture)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
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
        env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "test-key",
            "AWS_SECRET_ACCESS_KEY": "test-secret-not-to-be-seen",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            import boto3

            client = boto3.client("s3")
            client.create_bucket(Bucket=bucket)
            yield client
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    finally:
        proc.terminate()
        proc.wait(timeout=30)
