"""The manifest's checksums come from what the writer sent (``snapshot._writer.Ledger``), not
from reading every file back: a real ingest's manifest equals hashlib over the files on disk,
and building it reads none of the files the writer (or a Zarr store it handed out, in this
process or pickled to another) recorded; what the ledger does not know, or knows with another
size, is read back."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from _data import small_adata, write_h5ad
from widecube.config import Settings
from widecube.pipeline import ingest
from widecube.snapshot import MANIFEST, LocalStorage, SnapshotWriter, absorb_recorded, take_recorded
from widecube.snapshot import _manifest as manifest_module


class _CountingStorage(LocalStorage):
    """A local folder that counts the files hashed by reading them back."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.hashed: list[str] = []

    def sub(self, relpath: str) -> _CountingStorage:
        return _CountingStorage(self.root / relpath)

    def sha256(self, relpath: str) -> str:
        self.hashed.append(relpath)
        return super().sha256(relpath)


def _on_disk(root: Path) -> dict[str, dict[str, Any]]:
    return {
        str(p.relative_to(root)): {
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            "size": p.stat().st_size,
        }
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def test_an_ingest_manifest_equals_the_files_hashed_independently_and_reads_none_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_back: list[list[str]] = []
    real = manifest_module.checksum_files

    def counted(root: Any, **kwargs: Any) -> dict[str, dict[str, Any]]:
        files = _CountingStorage(manifest_module.as_storage(root).local)  # type: ignore[arg-type]
        out = real(files, **kwargs)
        read_back.append(files.hashed)
        return out

    monkeypatch.setattr("widecube.snapshot._writer.checksum_files", counted)
    settings = Settings(storage=tmp_path / "store")
    path = write_h5ad(small_adata(), tmp_path / "small.h5ad")
    job = ingest(path, dataset="t", groupbys=["cell_type", "donor"], settings=settings)
    root = tmp_path / "store" / "datasets" / "t" / str(job.version)
    expected = _on_disk(root)
    assert len(expected) > 40  # tables, Zarr metadata and chunks of every view
    assert json.loads((root / MANIFEST).read_text())["files"] == expected
    assert read_back == [[]], "the writer read back files it had sent"


def test_files_the_ledger_did_not_see_or_saw_with_another_size_are_read_back(tmp_path: Path) -> None:
    files = _CountingStorage(tmp_path / "snap")
    writer = SnapshotWriter(files, dataset="d", version="v1")
    writer.put_file("a.bin", b"sent as is")
    writer.put_file("b.bin", b"sent, then replaced behind the writer's back")
    files.put("b.bin", b"shorter")  # not through the writer: the ledger's size is wrong
    files.put("c.bin", b"never through the writer")
    arr = zarr.open_group(writer.store("m.zarr"), mode="w", zarr_format=3).create_array(
        "x", shape=(6,), chunks=(3,), dtype="i4"
    )
    arr[:] = np.arange(6, dtype="i4")
    manifest = writer.finish()
    assert manifest["files"] == _on_disk(tmp_path / "snap")
    assert sorted(files.hashed) == ["b.bin", "c.bin"]
    assert {"m.zarr/x/c/0", "m.zarr/x/c/1", "m.zarr/zarr.json", "m.zarr/x/zarr.json"} <= set(
        manifest["files"]
    )


def test_a_deleted_chunk_is_forgotten(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path / "snap", dataset="d", version="v1")
    arr = zarr.open_group(writer.store("m.zarr"), mode="w", zarr_format=3).create_array(
        "x", shape=(4,), chunks=(2,), dtype="i4", fill_value=0, config={"write_empty_chunks": False}
    )
    arr[:] = np.array([1, 2, 3, 4], dtype="i4")
    assert "m.zarr/x/c/0" in writer.ledger.sent()
    arr[:2] = 0  # all fill value: zarr deletes the chunk
    assert "m.zarr/x/c/0" not in writer.ledger.sent()
    assert writer.finish()["files"] == _on_disk(tmp_path / "snap")


def _write_in_another_process(payload: bytes) -> dict[str, Any]:
    """As a pass-2 task on a Dask worker: an array pickled there, written, entries sent back."""
    arr = pickle.loads(payload)
    arr[2:4] = np.array([7, 8], dtype="i4")
    return take_recorded()


def test_chunks_written_in_another_process_come_back_to_the_writers_ledger(tmp_path: Path) -> None:
    files = _CountingStorage(tmp_path / "snap")
    writer = SnapshotWriter(files, dataset="d", version="v1")
    arr = zarr.open_group(writer.store("m.zarr"), mode="w", zarr_format=3).create_array(
        "x", shape=(4,), chunks=(2,), dtype="i4"
    )
    arr[:2] = np.array([5, 6], dtype="i4")
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        recorded = pool.apply(_write_in_another_process, (pickle.dumps(arr),))
    assert list(recorded) == [writer.ledger.key]
    assert set(recorded[writer.ledger.key]) == {"m.zarr/x/c/1"}
    absorb_recorded(recorded)
    manifest = writer.finish()
    assert manifest["files"] == _on_disk(tmp_path / "snap")
    assert files.hashed == [], "a chunk the other process recorded was read back"
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "snap" / "m.zarr" / "x")[:], [5, 6, 7, 8])
    absorb_recorded(recorded)  # after finish: the writer's ledger is closed, nothing happens
    assert writer.ledger.key not in take_recorded()
