"""The benchmarks' LocalBucket (``benchmarks/_localbucket.py``) answers as S3 does where widecube
looks: a multipart upload's ETag is the MD5 of its parts' MD5s and ``-N`` (hashlib computes the
expected one from the bytes sent), a single PUT's and a copied object's the MD5 of the bytes,
and the object's bytes are those sent; so a staged copy of a multipart input is not checked
against an MD5 (``Storage.fetch``), as against S3."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _s3 import localbucket
from widecube.snapshot import open_storage

pytestmark = [pytest.mark.subprocess]

BUCKET = "widecube-etags"
MIB = 1 << 20


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with localbucket(BUCKET, tmp_path_factory.mktemp("objects")) as client:
        yield client


def _multipart(s3: Any, key: str, parts: list[bytes]) -> str:
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    done = [
        {
            "PartNumber": i,
            "ETag": s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=i, Body=b)["ETag"],
        }
        for i, b in enumerate(parts, start=1)
    ]
    s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": done})
    return str(s3.head_object(Bucket=BUCKET, Key=key)["ETag"]).strip('"')


def test_a_multipart_upload_has_s3s_etag_and_its_bytes(s3: Any) -> None:
    parts = [bytes([1]) * (5 * MIB), bytes(range(256)) * (5 * 4096), b"tail"]
    etag = _multipart(s3, "in/m.bin", parts)
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
    assert etag == expected
    assert s3.get_object(Bucket=BUCKET, Key="in/m.bin")["Body"].read() == b"".join(parts)
    # listed with the same ETag
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="in/m.bin")["Contents"]
    assert [o["ETag"].strip('"') for o in listed] == [expected]


def test_a_single_put_and_a_copy_keep_the_md5(s3: Any) -> None:
    body = b"widecube " * 1000
    s3.put_object(Bucket=BUCKET, Key="one/a", Body=body)
    assert s3.head_object(Bucket=BUCKET, Key="one/a")["ETag"].strip('"') == hashlib.md5(body).hexdigest()
    s3.copy_object(Bucket=BUCKET, Key="one/b", CopySource={"Bucket": BUCKET, "Key": "one/a"})
    assert s3.head_object(Bucket=BUCKET, Key="one/b")["ETag"].strip('"') == hashlib.md5(body).hexdigest()


def test_a_staged_copy_checks_the_md5_of_a_single_put_only(s3: Any, tmp_path: Path) -> None:
    body = b"x" * 1000
    s3.put_object(Bucket=BUCKET, Key="stage/single", Body=body)
    parts = [b"p" * (5 * MIB), b"q"]
    _multipart(s3, "stage/multi", parts)
    store = open_storage(f"s3://{BUCKET}/stage")
    single = store.fetch("single", tmp_path / "single", hashed=False)
    multi = store.fetch("multi", tmp_path / "multi", hashed=False)
    assert single.md5 == hashlib.md5(body).hexdigest()
    assert multi.md5 is None
    assert (tmp_path / "multi").read_bytes() == b"".join(parts)
