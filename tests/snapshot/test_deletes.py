"""Deletes on an S3 server without ``DeleteObjects`` (LocalBucket on loopback: it answers
``501 NotImplemented``, as Google Cloud Storage's XML API does), which obstore sends for every
delete: ``snapshot._signed.delete_objects`` falls back to one signed ``DELETE`` per object,
for ``ObjectStorage.remove`` and for the Zarr stores a snapshot writer uses (anndata clears the
group it writes into). boto3 lists the bucket independently."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anndata
import numpy as np
import pandas as pd
import pytest
import zarr

from _s3 import localbucket
from widecube.snapshot import ObjectStorage, SnapshotWriter
from widecube.snapshot import _writer as writer_module

pytestmark = [pytest.mark.subprocess]

BUCKET = "widecube-deletes"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with localbucket(BUCKET, tmp_path_factory.mktemp("objects")) as client:
        yield client


def _keys(client: Any, prefix: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_the_server_refuses_delete_objects(s3: Any) -> None:
    """The premise: a batch delete is refused, so a test passing below used the fallback."""
    s3.put_object(Bucket=BUCKET, Key="premise/a", Body=b"a")
    with pytest.raises(Exception, match="NotImplemented"):
        s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "premise/a"}]})


def test_remove_deletes_a_prefix_and_a_single_object(s3: Any) -> None:
    files = ObjectStorage(f"s3://{BUCKET}/rm")
    for rel in ("v1/a.bin", "v1/b/c.bin", "v2/d.bin", "e.bin"):
        files.put(rel, rel.encode())
    assert _keys(s3, "rm/") == {"rm/v1/a.bin", "rm/v1/b/c.bin", "rm/v2/d.bin", "rm/e.bin"}
    files.remove("v1")
    assert _keys(s3, "rm/") == {"rm/v2/d.bin", "rm/e.bin"}
    files.remove("e.bin")
    files.remove("missing.bin")  # nothing there: no error
    assert _keys(s3, "rm/") == {"rm/v2/d.bin"}


def test_a_large_anndata_is_written_in_place_and_a_chunk_of_fill_values_deleted(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "_STAGED_ROWS", 10)  # written through the store, not memory
    n = 50
    obs = pd.DataFrame(
        {"cluster": pd.Categorical(["a", "b"] * (n // 2)), "score": np.arange(n, dtype=np.float64)},
        index=[f"c{i}" for i in range(n)],
    )
    adata = anndata.AnnData(obs=obs, var=pd.DataFrame(index=["g0", "g1", "g2"]))
    writer = SnapshotWriter(ObjectStorage(f"s3://{BUCKET}/snap"), dataset="d", version="v1")
    writer.write_anndata("views/matrix.zarr", adata.copy())  # anndata clears its target first
    arr = zarr.open_group(writer.store("views/x.zarr"), mode="w", zarr_format=3).create_array(
        "x", shape=(4,), chunks=(2,), dtype="i4", fill_value=0, config={"write_empty_chunks": False}
    )
    arr[:] = np.array([1, 2, 3, 4], dtype="i4")
    arr[:2] = 0  # a chunk of fill values: Zarr deletes it
    manifest = writer.finish()
    keys = _keys(s3, "snap/")
    assert "snap/views/x.zarr/x/c/1" in keys and "snap/views/x.zarr/x/c/0" not in keys
    assert {f"snap/{rel}" for rel in manifest["files"]} | {"snap/manifest.json"} == keys
    back = anndata.read_zarr(writer.store("views/matrix.zarr"))
    pd.testing.assert_frame_equal(back.obs, obs)


def test_the_writer_leaves_no_object_of_a_failed_version_behind(s3: Any) -> None:
    files = ObjectStorage(f"s3://{BUCKET}/failed")
    writer = SnapshotWriter(files, dataset="d", version="v1")
    writer.put_file("dataset/obs.parquet", b"x" * 100)
    writer.close()
    assert _keys(s3, "failed/") == {"failed/dataset/obs.parquet"}
    files.remove()
    assert _keys(s3, "failed/") == set()
