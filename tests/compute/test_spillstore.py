"""Pass 1's buckets on an object store (``WIDECUBE_SPILL``, ``compute._spillstore``): each range of
rows uploaded as one object of moto's S3 server on loopback once spilled, its local files
removed, and pass 2's slabs read back by byte ranges equal to the matrix's own CSC columns
(scipy), oversized buckets split too; a damaged object is an ``EIO``, not wrong numbers; and
``Storage.read_ranges`` on a folder and on S3 against the bytes themselves."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from _data import small_adata, write_h5ad
from _s3 import moto_bucket
from widecube.compute import JoinedSpill, row_bounds, spill_by_gene
from widecube.io import open_input
from widecube.snapshot import Storage, open_storage

pytestmark = pytest.mark.subprocess  # the moto server

BUCKET = "spill-test"


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with moto_bucket(BUCKET) as client:
        yield client


def _keys(s3: Any, prefix: str) -> dict[str, int]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: o["Size"] for o in listed}


def _matrix(tmp_path: Path, n_cells: int, n_genes: int) -> tuple[Path, sp.csc_matrix]:
    """Counts with a few genes in every cell (buckets larger than a slab, split in pass 2)."""
    rng = np.random.default_rng(7)
    x = sp.random(n_cells, n_genes, density=0.08, random_state=rng, format="csr", dtype=np.float64)
    x.data = np.ceil(x.data * 9)
    x = x.tolil()
    x[:, 20:26] = 3.0
    adata = small_adata(n_cells, n_genes)
    adata.X = x.toarray()
    return write_h5ad(adata, tmp_path / "m.h5ad", layout="csr"), sp.csc_matrix(adata.X.astype(np.float32))


def _spill(path: Path, workdir: Path, remote: Storage | None, **kw: Any) -> JoinedSpill:
    with open_input(path) as source:
        names = {"obs_names": source.obs().index, "var_names": source.var().index}
        spill = spill_by_gene(source, workdir=workdir, remote=remote, **names, **kw)
    assert isinstance(spill, JoinedSpill)
    return spill


def _direct_allowed(folder: Path) -> bool:
    """Whether the file system of ``folder`` takes ``O_DIRECT`` (tmpfs does not)."""
    try:
        os.close(os.open(folder / "probe", os.O_WRONLY | os.O_CREAT | getattr(os, "O_DIRECT", 0)))
    except OSError:
        return False
    return hasattr(os, "O_DIRECT")


def _assert_slabs_are_columns(spill: JoinedSpill, x: sp.csc_matrix) -> int:
    """Every slab of every bucket is its genes' CSC columns of ``x``; returns how many slabs."""
    seen, n = 0, 0
    for b in range(spill.n_buckets):
        for slab in spill.buckets().slabs(b, consume=False):
            assert slab.lo == seen and slab.start == x.indptr[slab.lo]
            cols = x[:, slab.lo : slab.hi]
            np.testing.assert_array_equal(slab.indptr, cols.indptr)
            np.testing.assert_array_equal(slab.cells, cols.indices)
            np.testing.assert_array_equal(slab.vals, cols.data)
            seen, n = slab.hi, n + 1
    assert seen == x.shape[1]
    return n


@pytest.mark.parametrize("direct", [True, False], ids=["around-the-cache", "through-the-cache"])
def test_each_range_is_one_object_and_pass_2_reads_the_matrix_back(
    s3: Any, tmp_path: Path, direct: bool
) -> None:
    """Each range's local files, written and read back around the page cache or through it,
    become one object each."""
    path, x = _matrix(tmp_path, 700, 600)
    kw = {"block_nnz": 4_000, "slab_bytes": 400 * 12, "threads": 2, "direct": direct}
    remote = open_storage(f"s3://{BUCKET}/spill/job1/run1")
    spill = _spill(path, tmp_path / "w", remote, **kw)
    assert [p.direct for p in spill.parts] == [direct and _direct_allowed(tmp_path)] * len(spill.parts)
    ranges = len(row_bounds(700, x.nnz, 2, 4_000)) - 1
    assert ranges > 2, "more ranges than threads: local disk holds a few at a time"
    keys = _keys(s3, "spill/job1/run1/")
    assert sorted(keys) == [f"spill/job1/run1/p{i:05d}.spill" for i in range(ranges)]
    assert not [p for p in (tmp_path / "w").rglob("*") if p.is_file()], "local spill files left"
    assert [p.stop - p.start for p in spill.parts] == np.diff(row_bounds(700, x.nnz, 2, 4_000)).tolist()
    np.testing.assert_array_equal(spill.cell_total, np.asarray(x.sum(axis=1)).ravel())
    n_slabs = _assert_slabs_are_columns(spill, x)
    assert n_slabs > spill.n_buckets, "no oversized bucket was split"
    # the same slabs as the spill kept in the work folder
    local = _spill(path, tmp_path / "l", None, **{**kw, "threads": 2})
    assert _assert_slabs_are_columns(local, x) == n_slabs
    spill.cleanup()
    assert _keys(s3, "spill/job1/") == {}


def test_an_input_read_whole_is_uploaded_once_spilled(s3: Any, tmp_path: Path) -> None:
    """A CSC store reads no range of rows alone: one spill, one object."""
    adata = small_adata()
    path = write_h5ad(adata, tmp_path / "c.h5ad", layout="csc")
    remote = open_storage(f"s3://{BUCKET}/spill/job2/run1")
    spill = _spill(path, tmp_path / "w", remote, block_nnz=500, slab_bytes=200 * 12)
    assert list(_keys(s3, "spill/job2/")) == ["spill/job2/run1/p00000.spill"]
    _assert_slabs_are_columns(spill, sp.csc_matrix(np.asarray(adata.X, dtype=np.float32)))
    spill.cleanup()
    assert _keys(s3, "spill/job2/") == {}


def test_a_damaged_object_is_an_io_error_not_wrong_numbers(s3: Any, tmp_path: Path) -> None:
    """One byte flipped in a bucket's compressed bytes (its CRC-32C), or the object cut
    short: an ``EIO`` naming the object, never other slabs."""
    path, _ = _matrix(tmp_path, 300, 100)
    remote = open_storage(f"s3://{BUCKET}/spill/job3/run1")
    spill = _spill(path, tmp_path / "w", remote, block_nnz=4_000, slab_bytes=1 << 20, threads=2)
    key = "spill/job3/run1/p00001.spill"
    body = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    part = spill.parts[1].remote
    assert part is not None and len(body) == part.ends[-1] < sum(part.raw) / 1.5, "not compressed"
    b = int(np.argmax(np.diff([0, *part.ends])))  # the part's largest bucket
    _, start, end = part.ranges(b)
    flipped = body.copy()
    flipped[(start + end) // 2] ^= 0x10
    s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(flipped))
    with pytest.raises(
        OSError, match=f"spill object damaged: s3://{BUCKET}/spill/job3/run1/p00001.spill"
    ) as raised:
        list(spill.buckets().slabs(b, consume=False))
    assert raised.value.errno == errno.EIO
    # every byte of the bucket flipped in turn: LZ4 has no checksum of its own and decodes
    # many such streams to other bytes of the right length; the CRC-32C refuses each one (a
    # flip may also leave the output as it was: a match's offset to equal bytes)
    packed = bytes(body[start:end])
    good = part.unpack(b, packed, np.empty(part.raw[b], dtype=np.uint8)).copy()
    assert good.any()
    refused = other = 0
    for at in range(len(packed)):
        damaged = bytearray(packed)
        damaged[at] ^= 0x10
        try:
            got = part.unpack(b, bytes(damaged), np.empty(part.raw[b], dtype=np.uint8))
            other += not np.array_equal(got, good)
        except OSError as exc:
            assert exc.errno == errno.EIO and "spill object damaged" in str(exc)
            refused += 1
    assert other == 0 and refused > 0.9 * len(packed), (other, refused, len(packed))
    s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(body[: end - 10]))  # cut short
    with pytest.raises(OSError, match="bytes at") as raised:
        list(spill.buckets().slabs(b, consume=False))
    assert raised.value.errno == errno.EIO
    s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(body))  # as it was: the same slabs again
    _assert_slabs_are_columns(spill, sp.csc_matrix(_matrix(tmp_path, 300, 100)[1]))
    spill.cleanup()


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_read_ranges(where: str, s3: Any, tmp_path: Path) -> None:
    blobs = {"a.bin": os.urandom(3000), "d/b.bin": os.urandom(10)}
    store = open_storage(tmp_path / "s" if where == "folder" else f"s3://{BUCKET}/ranges")
    for name, data in blobs.items():
        store.put(name, data)
    asked = [
        ("a.bin", 0, 1000),
        ("d/b.bin", 2, 10),
        ("a.bin", 2999, 3000),
        ("a.bin", 5, 5),
        ("a.bin", 10, 2500),
    ]
    got = store.read_ranges(asked)
    assert [bytes(g) for g in got] == [blobs[name][a:b] for name, a, b in asked]
    with pytest.raises(OSError) as short:
        store.read_ranges([("d/b.bin", 4, 20)])
    assert short.value.errno == errno.EIO
    with pytest.raises(FileNotFoundError):
        store.read_ranges([("missing.bin", 0, 4)])
