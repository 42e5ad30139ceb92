"""A local S3 API for the scale benchmarks: moto's standalone server on 127.0.0.1 (port from
the OS) with one bucket, and the ``AWS_*`` variables that point obstore at it (set in this
process's environment for the block, and returned for child processes)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

__all__ = ["moto_server"]


@contextlib.contextmanager
def moto_server(bucket: str) -> Iterator[dict[str, str]]:
    """Yields the ``AWS_*`` environment of a running moto server holding ``bucket``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    saved: dict[str, str | None] = {}
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
        env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        import boto3

        boto3.client("s3").create_bucket(Bucket=bucket)
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(timeout=30)
