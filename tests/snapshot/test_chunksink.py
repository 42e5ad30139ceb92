"""Writes of whole chunks only (``snapshot._chunksink``, no cluster needed): a pass-2 task writes
the chunks it covers whole and hands back pieces of the others, joined elsewhere; the snapshot
writer keeps a chunk's pieces until they cover it, and writes it once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from widecube.snapshot import ChunkSink


def _array(path: Path, shape: tuple[int, ...], chunks: tuple[int, ...]) -> zarr.Array:
    return zarr.create_array(path, shape=shape, chunks=chunks, dtype="f8", fill_value=np.nan)


def _stored_chunks(path: Path) -> set[str]:
    return {str(p.relative_to(path / "c")) for p in (path / "c").rglob("*") if p.is_file()}


def test_whole_chunks_are_written_and_pieces_kept_until_complete(tmp_path: Path) -> None:
    a = _array(tmp_path / "a", (10,), (4,))
    sink = ChunkSink()
    sink(a, (slice(0, 6),), np.arange(6.0))
    assert _stored_chunks(tmp_path / "a") == {"0"}  # chunk 1 (values 4..7) only half covered
    sink(a, (slice(6, 10),), np.arange(6.0, 10.0))
    assert _stored_chunks(tmp_path / "a") == {"0", "1", "2"}
    assert sink.leftovers() == []
    np.testing.assert_array_equal(a[:], np.arange(10.0))


def test_pieces_of_shared_chunks_come_back_and_join_elsewhere(tmp_path: Path) -> None:
    """Two tasks write columns 0..4 and 5..9 of a 2-D array chunked by 4 columns: chunk
    column 1 (columns 4..7) is shared, so neither writes it; a third sink joins the pieces."""
    ref = np.arange(60.0).reshape(6, 10)
    a = _array(tmp_path / "a", (6, 10), (4, 4))
    left, right = ChunkSink(), ChunkSink()
    left(a, (slice(None), slice(0, 5)), ref[:, 0:5])
    right(a, (slice(None), slice(5, 10)), ref[:, 5:10])
    assert _stored_chunks(tmp_path / "a") == {"0/0", "1/0", "0/2", "1/2"}
    pieces = left.leftovers() + right.leftovers()
    assert {p[1] for p in pieces} == {((0, 4), (4, 5)), ((4, 6), (4, 5)), ((0, 4), (5, 8)), ((4, 6), (5, 8))}
    client = ChunkSink()
    for array, inter, values in pieces:
        client(array, tuple(slice(lo, hi) for lo, hi in inter), values)
    assert client.leftovers() == []
    np.testing.assert_array_equal(a[:], ref)


def test_the_snapshot_writer_writes_a_chunk_once_when_its_slabs_cover_it(tmp_path: Path) -> None:
    """Slabs of 2 columns into chunks of 6 (a chunk spans buckets): nothing reaches the folder
    until a chunk's last slab, then the chunk is written once, with every slab's values; a
    chunk left incomplete is written as far as it went when the writer drains."""
    from widecube.snapshot import SnapshotWriter

    out = SnapshotWriter(tmp_path / "snap", dataset="d", version="v1")
    try:
        a = out.create_columns("views/x/a", (3, 14), np.dtype("f8"), chunk_cols=6)
        ref = np.arange(42.0).reshape(3, 14)
        for lo in (0, 2):
            out.put(a, (slice(None), slice(lo, lo + 2)), ref[:, lo : lo + 2].copy())
        out._reap()
        for f in out._pending:
            f.result()
        assert _stored_chunks(tmp_path / "snap" / "views/x/a") == set()
        out.put(a, (slice(None), slice(4, 8)), ref[:, 4:8].copy())  # ends chunk 0, starts chunk 1
        out.put(a, (slice(None), slice(12, 14)), ref[:, 12:14].copy())  # chunk 2, whole (the edge)
        for f in out._pending:
            f.result()
        assert _stored_chunks(tmp_path / "snap" / "views/x/a") == {"0/0", "0/2"}
        out.drain()  # chunk 1 has columns 6..7 only
        assert _stored_chunks(tmp_path / "snap" / "views/x/a") == {"0/0", "0/1", "0/2"}
        got = zarr.open_array(tmp_path / "snap" / "views/x/a", mode="r")[:]
        np.testing.assert_array_equal(got[:, :8], ref[:, :8])
        np.testing.assert_array_equal(got[:, 12:], ref[:, 12:])
        assert np.isnan(got[:, 8:12]).all()
    finally:
        out.close()
