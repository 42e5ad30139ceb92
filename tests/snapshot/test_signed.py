"""``snapshot._signed.delete_objects`` asks a server its first batch without obstore's retries
(a refusal, 501, would otherwise cost seconds of backoff); a first batch that fails for any
other reason is sent again with the store's own retries. On moto's S3 server (loopback),
whose DeleteObjects works; boto3 lists the bucket independently."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from _s3 import moto_bucket
from widecube.snapshot import _signed, open_storage

pytestmark = [pytest.mark.subprocess]

BUCKET = "widecube-signed"


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with moto_bucket(BUCKET) as client:
        yield client


def _keys(client: Any, prefix: str) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])}


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """No server known yet: the next batch is a first one."""
    monkeypatch.setattr(_signed, "_BATCH_REFUSED", set())
    monkeypatch.setattr(_signed, "_BATCH_ACCEPTED", set())


def test_a_first_batch_that_works_is_remembered(s3: Any, fresh: None) -> None:
    for key in ("a/1", "a/2"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    open_storage(f"s3://{BUCKET}").remove("a")
    assert _keys(s3, "a/") == set()
    assert len(_signed._BATCH_ACCEPTED) == 1 and not _signed._BATCH_REFUSED


def test_a_first_batch_that_fails_otherwise_is_sent_again_with_retries(
    s3: Any, fresh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store asked without retries cannot be reached (a closed port): not a refusal, so
    the batch goes again through the store itself, and the objects are gone."""
    from obstore.store import S3Store

    tried: list[str] = []

    def unreachable(store: Any) -> Any:
        tried.append(store.config["bucket"])
        config = {**store.config, "endpoint": "http://127.0.0.1:9", "allow_http": True}
        return S3Store(prefix=store.prefix, config=config, retry_config={"max_retries": 0})

    import obstore

    sent, real = [], obstore.delete

    def delete(store: Any, paths: Any) -> None:  # what each batch came to
        try:
            real(store, paths)
        except Exception as exc:
            sent.append(type(exc).__name__)
            raise
        sent.append("deleted")

    monkeypatch.setattr(_signed, "_without_retries", unreachable)
    monkeypatch.setattr(obstore, "delete", delete)
    for key in ("b/1", "b/2", "b/3"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    open_storage(f"s3://{BUCKET}").remove("b")
    assert tried == [BUCKET] and sent == ["GenericError", "deleted"]
    assert _keys(s3, "b/") == set()
    assert len(_signed._BATCH_ACCEPTED) == 1 and not _signed._BATCH_REFUSED
    for key in ("c/1", "c/2"):  # known now: asked with the retries at once
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    open_storage(f"s3://{BUCKET}").remove("c")
    assert tried == [BUCKET] and sent[2:] == ["deleted"] and _keys(s3, "c/") == set()
