"""LocalBucket (PyPI ``localbucket``) as the scale benchmarks and the tests run it: its own
``main()``, with two changes that make it answer as S3 (and MinIO) do, so that widecube does
against it what it would do against them. Started by ``_s3server.localbucket_server``
(``python _localbucket.py --host … --port … ROOT``).

* Sockets with ``TCP_NODELAY``, as a production S3 server has them (Go sets it on every TCP
  connection, so MinIO has it). As shipped LocalBucket keeps Python's ``http.server`` default,
  Nagle's algorithm on: the end of a response waits for the client's ACK of its headers, which
  Linux's delayed ACK holds up to 40 ms. Measured here, 2,000 GETs of 40 KB, 16 at a time:
  5.32 s (2.66 ms a request, 0.7 ms of CPU) as shipped, 1.37 s with ``TCP_NODELAY``; of 400 KB:
  2.79 s and 1.59 s; 20 of 50 MB: 1.21 s and 1.00 s. A snapshot's view chunks are such small
  objects: the stall, not widecube's work, was most of an S3 run's verify step (B1M: 49-54 s
  against 9-11 s on local disk).
* A multipart upload's ETag is the MD5 of its parts' MD5s followed by ``-`` and the number of
  parts, as S3 gives it (``"…-N"``), where LocalBucket gives the MD5 of the whole object, which
  it computes when the upload completes, over every byte once more. An S3 client cannot tell
  that ETag from a single-part upload's, whose MD5 it may check (widecube checks a staged
  input's copy against it: :mod:`widecube.pipeline._fetch`), so against LocalBucket a 16 GB
  input cost an MD5 of 16 GB twice (the server's, then widecube's: 20-23 s of one core each
  at B1M) that S3 never asks for. The parts are still copied into one file, as LocalBucket
  stores an object.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import BinaryIO

import localbucket


def _copy_ranges(destination: BinaryIO, ranges: list[tuple[Path, int, int]]) -> str:
    """LocalBucket's ``copy_ranges`` (the body of CopyObject, UploadPartCopy and
    CompleteMultipartUpload), giving a completed multipart upload S3's ETag."""
    parts = [
        path
        for path, start, length in ranges
        if start == 0 and path.parent.parent.name == localbucket.UPLOADS_DIR
    ]
    if not parts or len(parts) != len(ranges):  # a copy of an object or of a range of one
        return _shipped_copy_ranges(destination, ranges)
    for path in parts:  # whole part files (CompleteMultipartUpload), in order, unhashed
        with path.open("rb") as file:
            shutil.copyfileobj(file, destination, localbucket.BLOCK_SIZE)
    # each part's MD5 was kept when it was stored (remember_etag): no byte is hashed again
    joined = b"".join(bytes.fromhex(localbucket.object_etag(path)) for path in parts)
    return f"{hashlib.md5(joined).hexdigest()}-{len(parts)}"


_shipped_copy_ranges = localbucket.copy_ranges

if __name__ == "__main__":
    localbucket.S3Handler.disable_nagle_algorithm = True
    localbucket.copy_ranges = _copy_ranges
    localbucket.main()
