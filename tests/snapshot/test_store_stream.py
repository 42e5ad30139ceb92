"""``Storage.stream`` and ``Storage.put_stream`` (the chunked copy archive and restore use) on a
folder and on S3 (moto on loopback): the bytes, the storage class boto3 reports, objects S3
must thaw first, and memory that does not grow with the file (a separate process's peak RSS).

References are independent of widecube: hashlib over bytes read from disk or by boto3, and
boto3's ``head_object`` for the storage class and the ETag of a multipart upload.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from _s3 import moto_bucket
from widecube.snapshot import NotThawed, open_storage

MiB = 1 << 20
BUCKET = "stream-test"


def _pieces(seed: int, n: int, size: int = MiB) -> Iterator[bytes]:
    """``n`` pseudo-random pieces of ``size`` bytes (the same for the same seed)."""
    for i in range(n):
        yield hashlib.sha256(f"{seed}-{i}".encode()).digest() * (size // 32)


def _sha(pieces: Iterator[bytes]) -> str:
    h = hashlib.sha256()
    for p in pieces:
        h.update(p)
    return h.hexdigest()


def test_a_folder_streams_in_chunks_and_writes_a_file_only_once_whole(tmp_path: Path) -> None:
    store = open_storage(tmp_path / "s")
    target = tmp_path / "s" / "a" / "big.bin"
    seen_while_writing = []

    def watched() -> Iterator[bytes]:
        for piece in _pieces(1, 5):
            seen_while_writing.append(target.exists())
            yield piece

    store.put_stream("a/big.bin", watched())
    assert seen_while_writing == [False] * 5 and not list(target.parent.glob(".*"))
    assert hashlib.sha256(target.read_bytes()).hexdigest() == _sha(_pieces(1, 5))
    chunks = list(store.stream("a/big.bin", 2 * MiB))
    assert [len(c) for c in chunks] == [2 * MiB, 2 * MiB, MiB]
    with pytest.raises(ValueError, match="local folder has no storage classes"):
        store.put_stream("a/x", iter([b"x"]), storage_class="GLACIER_IR")
    with pytest.raises(FileNotFoundError):
        list(store.stream("a/missing"))


@pytest.mark.slow
@pytest.mark.subprocess
def test_s3_writes_in_the_storage_class_and_names_objects_that_must_be_thawed() -> None:
    with moto_bucket(BUCKET) as s3:
        store = open_storage(f"s3://{BUCKET}/p")
        assert store.storage_classes and not open_storage("/tmp").storage_classes
        store.put_stream("small", iter([b"abc", b"def"]), storage_class="STANDARD_IA")
        store.put_stream("big", _pieces(2, 20), storage_class="GLACIER_IR")  # 20 MiB > one part
        store.put_stream("plain", iter([b"xyz"]))
        heads = {k: s3.head_object(Bucket=BUCKET, Key=f"p/{k}") for k in ("small", "big", "plain")}
        assert heads["small"]["StorageClass"] == "STANDARD_IA" and "-" not in heads["small"]["ETag"]
        assert heads["big"]["StorageClass"] == "GLACIER_IR" and heads["big"]["ETag"].endswith('-3"')
        assert heads["plain"].get("StorageClass", "STANDARD") == "STANDARD"
        body = s3.get_object(Bucket=BUCKET, Key="p/big")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == _sha(_pieces(2, 20))
        chunks = list(store.stream("big", 4 * MiB))
        assert all(len(c) >= 4 * MiB for c in chunks[:-1]) and sum(map(len, chunks)) == 20 * MiB
        assert _sha(iter(chunks)) == _sha(_pieces(2, 20))

        store.put_stream("frozen", iter([b"cold bytes"]), storage_class="DEEP_ARCHIVE")
        for read in (lambda: list(store.stream("frozen")), lambda: store.get("frozen")):
            with pytest.raises(NotThawed) as caught:
                read()
            assert caught.value.storage_class == "DEEP_ARCHIVE" and caught.value.path == "frozen"
            text = str(caught.value)
            assert f"s3://{BUCKET}/p/frozen is in DEEP_ARCHIVE" in text
            assert "127.0.0.1" not in text and os.environ["AWS_SECRET_ACCESS_KEY"] not in text
        s3.restore_object(Bucket=BUCKET, Key="p/frozen", RestoreRequest={"Days": 1})  # moto: at once
        assert store.get("frozen") == b"cold bytes"


_COPY = textwrap.dedent(
    """
    import resource, sys
    from widecube.snapshot import open_storage
    src, dst = open_storage(sys.argv[1]), open_storage(sys.argv[2])
    list(src.stream("warm-up")); dst.put_stream("warm-up", iter([b"x"]))  # load obstore, start its runtime
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    dst.put_stream("big", src.stream("big", 8 << 20), storage_class="STANDARD_IA")
    print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


@pytest.mark.slow
@pytest.mark.subprocess
def test_copying_a_large_object_between_stores_keeps_memory_bounded() -> None:
    """A 192 MiB object copied in 8 MiB chunks: the copying process's peak RSS grows by far
    less than the object (a whole-file copy would grow by at least its size)."""
    n = 192
    with moto_bucket(BUCKET) as s3:
        src = open_storage(f"s3://{BUCKET}/hot")
        src.put("warm-up", b"x")
        src.put_stream("big", _pieces(3, n))
        done = subprocess.run(
            [sys.executable, "-c", _COPY, f"s3://{BUCKET}/hot", f"s3://{BUCKET}/cold"],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        before, after = (int(x) for x in done.stdout.split())  # KiB on Linux
        grown = (after - before) * 1024
        assert grown < n * MiB / 3, f"peak RSS grew {grown / MiB:.0f} MiB copying {n} MiB"
        head = s3.head_object(Bucket=BUCKET, Key="cold/big")
        assert head["StorageClass"] == "STANDARD_IA" and head["ContentLength"] == n * MiB
        h = hashlib.sha256()
        for piece in s3.get_object(Bucket=BUCKET, Key="cold/big")["Body"].iter_chunks(MiB):
            h.update(piece)
        assert h.hexdigest() == _sha(_pieces(3, n))


def test_a_fetch_hashes_in_threads_every_chunk_in_order_and_raises_what_a_hash_raises(tmp_path: Path) -> None:
    """The object fetch's copy (``_copy_hashed``): the file and each hash equal hashlib's over
    the same bytes, however many chunks queue behind a hash; a hash that fails fails the copy."""
    from widecube.snapshot._store import _HASH_AHEAD, _copy_hashed

    chunks = [bytes([i % 251]) * (1000 + 37 * i) for i in range(4 * _HASH_AHEAD + 3)]
    joined = b"".join(chunks)
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(tmp_path / "copy", "wb") as out:
        assert _copy_hashed(iter(chunks), out, [sha, md5]) == len(joined)
    assert (tmp_path / "copy").read_bytes() == joined
    assert sha.hexdigest() == hashlib.sha256(joined).hexdigest()
    assert md5.hexdigest() == hashlib.md5(joined, usedforsecurity=False).hexdigest()

    class Broken:
        def update(self, data: bytes) -> None:
            raise OSError("the hash broke")

    with open(tmp_path / "copy2", "wb") as out, pytest.raises(OSError, match="the hash broke"):
        _copy_hashed(iter(chunks), out, [hashlib.sha256(), Broken()])
