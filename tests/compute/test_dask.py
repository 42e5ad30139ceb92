"""An ingest on a real Dask deployment (a ``dask scheduler`` process and two ``dask worker``
processes over TCP) builds the same snapshot, byte for byte, as the single-process engine:
the manifests' checksums agree file by file, for CSR, CSC and dense h5ad inputs and a 10x h5,
through the library, the CLI (``--cluster``, ``--workers``), an object store, and a worker
killed mid pass 2 and another mid pass 1."""

from __future__ import annotations

import functools
import json
import math
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import zarr

from _cli import process
from _dask import Deployment, KillOnTask, deployment
from _data import small_adata, write_h5ad
from _io_writers import write_10x_h5
from _s3 import moto_bucket
from widecube.config import Settings
from widecube.errors import InvalidValue
from widecube.io import open_input
from widecube.pipeline import ingest
from widecube.pipeline._cluster import dask_client, spill_on_cluster
from widecube.snapshot import open_storage

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]

distributed = pytest.importorskip("distributed")

MEMORY = 200 * 16 * 12  # slabs of ~200 values: ~20 buckets, so pass 2 is ~5 tasks of 4
LAYOUTS = ["csr", "csc", "dense", "10x", "csr-float"]


def _input(folder: Path, layout: str) -> Path:
    adata = small_adata()
    if layout == "csr-float":  # not counts: the raw layer alone, library sizes of fractions
        adata.X = adata.X * np.float64(0.3701)
        return write_h5ad(adata, folder / "in-float.h5ad", layout="csr")
    if layout == "10x":
        x = np.asarray(adata.X)
        return write_10x_h5(folder / "in.h5", x, list(adata.obs_names), list(adata.var_names))
    return write_h5ad(adata, folder / f"in-{layout}.h5ad", layout=layout)


def _files(settings: Settings, dataset: str) -> dict[str, str]:
    """Every snapshot file's sha256, as the published version's manifest records it."""
    (version,) = [p for p in (settings.storage / "datasets" / dataset).iterdir()]
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["views"]
    return {path: entry["sha256"] for path, entry in manifest["files"].items()}


def _by_view(files: dict[str, str]) -> dict[str, dict[str, str]]:
    views: dict[str, dict[str, str]] = {}
    for path, digest in files.items():
        parts = path.split("/")
        views.setdefault(parts[1].split(".")[0] if parts[0] == "views" else parts[0], {})[path] = digest
    return views


def _assert_same(local: dict[str, str], cluster: dict[str, str], *, markers: bool = True) -> None:
    """Both snapshots hold the same files with the same checksums, view by view (the 10x h5
    has no grouping, so no markers: its one all-cells group has no rest to compare with)."""
    ours, theirs = _by_view(local), _by_view(cluster)
    assert set(ours) == set(theirs) >= {"genes", "summary", "quantiles", "matrix", "dataset"}
    assert ("markers" in ours) == markers
    for view in ours:
        assert ours[view] == theirs[view], f"view {view} differs"


BUCKET = "widecube-dask"


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """boto3's client of a moto server on loopback, and the AWS_* variables that point at it
    (set before the deployment starts, so its workers inherit them, as a real one's would)."""
    with moto_bucket(BUCKET) as client:
        yield client


@pytest.fixture(scope="module")
def cluster(s3: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(tmp_path_factory.mktemp("dask")) as d:
        with distributed.Client(d.address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield d


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, str]]]:
    """Each input and the checksums of its snapshot built by the single-process engine."""
    folder = tmp_path_factory.mktemp("inputs")
    out = {}
    for layout in LAYOUTS:
        path = _input(folder, layout)
        settings = Settings(storage=folder / f"local-{layout}", memory=MEMORY)
        ingest(path, dataset="d", settings=settings)
        out[layout] = (path, _files(settings, "d"))
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
def test_cluster_builds_identical_views(
    layout: str,
    cluster: Deployment,
    inputs: dict[str, tuple[Path, dict[str, str]]],
    tmp_path: Path,
) -> None:
    path, local = inputs[layout]
    settings = Settings(storage=tmp_path / "s", memory=MEMORY, cluster=cluster.address)
    with distributed.Client(cluster.address) as watcher, distributed.get_task_stream(watcher) as stream:
        ingest(path, dataset="d", settings=settings)
    pass1 = [t for t in stream.data if str(t["key"]).startswith("widecube-pass1-")]
    pass2 = [t for t in stream.data if str(t["key"]).startswith("widecube-pass2-")]
    # a task per column chunk of the per-group arrays (whole buckets: 60 genes, ~20 buckets)
    (version,) = (settings.storage / "datasets" / "d").iterdir()
    sums = sorted(version.glob("views/summary/*.zarr/layers/sum"))
    chunk_cols = zarr.open_array(sums[0], mode="r").chunks[1]
    assert len({t["key"] for t in pass2}) == math.ceil(60 / chunk_cols) >= 4, (
        "pass 2 not split in gene ranges"
    )
    assert len({t["worker"] for t in pass2}) == 2, "pass 2 did not run on both workers"
    if layout == "csc":  # a CSC store cannot read a range of rows alone: pass 1 stays here
        assert not pass1
    else:  # 2 row ranges per worker thread
        assert len({t["key"] for t in pass1}) == 4, "pass 1 was not split into row ranges"
        assert len({t["worker"] for t in pass1}) == 2, "pass 1 did not run on both workers"
    _assert_same(local, _files(settings, "d"), markers=layout != "10x")
    left = [p for p in (settings.storage / "work").rglob("*") if p.is_file() and "scratch" in p.parts]
    assert not left, "spill files left behind"


def test_a_bad_value_fails_the_job_as_without_a_cluster(cluster: Deployment, tmp_path: Path) -> None:
    """A NaN in the rows of the last pass-1 task: the same error, naming the same cell, and
    no retry (the task hands the error back instead of raising it)."""
    adata = small_adata()
    adata.X[200, 7] = np.nan
    path = write_h5ad(adata, tmp_path / "bad.h5ad", layout="csr")
    with pytest.raises(InvalidValue) as here:
        ingest(path, dataset="d", settings=Settings(storage=tmp_path / "a", memory=MEMORY))
    settings = Settings(storage=tmp_path / "b", memory=MEMORY, cluster=cluster.address)
    with (
        distributed.Client(cluster.address) as watcher,
        distributed.get_task_stream(watcher) as stream,
        pytest.raises(InvalidValue) as there,
    ):
        ingest(path, dataset="d", settings=settings)
    assert str(there.value) == str(here.value)
    assert "NaN found at row 201 (cell 'cell200'), column 8 (gene 'Gene7')" in str(here.value)
    pass1 = [str(t["key"]) for t in stream.data if str(t["key"]).startswith("widecube-pass1-")]
    assert len(pass1) == len(set(pass1)) == 4, "a task ran more than once"
    assert not (settings.storage / "datasets" / "d").exists()


def test_snapshots_on_an_object_store_from_the_cluster(
    cluster: Deployment, s3: Any, inputs: dict[str, tuple[Path, dict[str, str]]], tmp_path: Path
) -> None:
    """``WIDECUBE_STORAGE=s3://…`` (moto on loopback) with the cluster: the tasks write the
    snapshot's chunks straight to the store, and its manifest (read back from the store)
    lists the checksums of the single-process snapshot in a local folder."""
    path, local = inputs["csr"]
    settings = Settings(
        storage=f"s3://{BUCKET}/wc",
        catalog_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
        cache=tmp_path / "cache",
        work=tmp_path / "work",
        memory=MEMORY,
        cluster=cluster.address,
    )
    with distributed.Client(cluster.address) as watcher, distributed.get_task_stream(watcher) as stream:
        version = ingest(path, dataset="d", settings=settings).version
    pass2 = {t["worker"] for t in stream.data if str(t["key"]).startswith("widecube-pass2-")}
    assert len(pass2) == 2, "pass 2 did not run on both workers"
    body = s3.get_object(Bucket=BUCKET, Key=f"wc/datasets/d/{version}/manifest.json")["Body"]
    manifest = json.loads(body.read())
    _assert_same(local, {p: e["sha256"] for p, e in manifest["files"].items()})


def _spilled(s3: Any) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="spill/").get("Contents", [])]


@pytest.mark.parametrize("where", ["cluster", "one process"])
def test_the_spill_on_the_object_store_builds_identical_views(
    where: str, cluster: Deployment, s3: Any, inputs: dict[str, tuple[Path, dict[str, str]]], tmp_path: Path
) -> None:
    """``WIDECUBE_SPILL=s3://…``, with the snapshot on the store too: each range of rows
    travels as an object (pass 1 on the workers, or in this process), pass 2 reads it back
    by byte ranges, and the snapshot is the single-process one in a local folder; nothing is
    left under the spill prefix."""
    path, local = inputs["csr"]
    settings = Settings(
        storage=f"s3://{BUCKET}/spilled-{where.replace(' ', '-')}",
        catalog_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
        cache=tmp_path / "cache",
        work=tmp_path / "work",
        memory=MEMORY,
        cluster=cluster.address if where == "cluster" else None,
        spill=f"s3://{BUCKET}/spill",
    )
    seen: set[str] = set()
    with distributed.Client(cluster.address) as watcher, distributed.get_task_stream(watcher) as stream:
        done = threading.Event()

        def watch() -> None:  # the spill's objects while the ingest runs (removed once it ends)
            while not done.is_set():
                seen.update(_spilled(s3))
                time.sleep(0.02)

        looking = threading.Thread(target=watch)
        looking.start()
        try:
            version = ingest(path, dataset="d", settings=settings).version
        finally:
            done.set()
            looking.join()
    pass2 = {t["worker"] for t in stream.data if str(t["key"]).startswith("widecube-pass2-")}
    assert len(pass2) == (2 if where == "cluster" else 0)
    ranges = {key.rsplit("/", 1)[1] for key in seen}
    assert ranges == {f"p{i:05d}.spill" for i in range(4)}, seen  # 2 ranges per thread, 2 threads
    assert _spilled(s3) == []
    body = s3.get_object(
        Bucket=BUCKET, Key=f"{settings.storage}/datasets/d/{version}/manifest.json"[len(f"s3://{BUCKET}/") :]
    )
    manifest = json.loads(body["Body"].read())
    _assert_same(local, {p: e["sha256"] for p, e in manifest["files"].items()})


def test_an_input_staged_from_the_store_is_read_here_when_no_folder_is_shared(
    cluster: Deployment, s3: Any, inputs: dict[str, tuple[Path, dict[str, str]]], tmp_path: Path
) -> None:
    """``widecube ingest s3://…`` with the spill on the store: the staged copy is in this
    process's work folder, which the workers need not see, so pass 1 runs here and pass 2 on
    the workers; the snapshot is the single-process one."""
    path, local = inputs["csr"]
    s3.put_object(Bucket=BUCKET, Key="in/m.h5ad", Body=path.read_bytes())
    settings = Settings(
        storage=tmp_path / "s",
        work=tmp_path / "work",
        memory=MEMORY,
        cluster=cluster.address,
        spill=f"s3://{BUCKET}/spill",
    )
    with distributed.Client(cluster.address) as watcher, distributed.get_task_stream(watcher) as stream:
        ingest(f"s3://{BUCKET}/in/m.h5ad", dataset="d", settings=settings)
    keys = [str(t["key"]) for t in stream.data]
    assert not [k for k in keys if k.startswith("widecube-pass1-")], "pass 1 ran on the workers"
    assert len({t["worker"] for t in stream.data if str(t["key"]).startswith("widecube-pass2-")}) == 2
    _assert_same(local, _files(settings, "d"))
    assert _spilled(s3) == []


def test_pass_1_with_the_spill_on_the_object_store_needs_no_shared_folder(
    cluster: Deployment, s3: Any, tmp_path: Path
) -> None:
    """The tasks are given a work folder no process can create (under /proc): each spills in
    its worker's own folder and uploads its rows; the slabs read back are scipy's CSC columns."""
    adata = small_adata()
    path = write_h5ad(adata, tmp_path / "m.h5ad", layout="csr")
    remote = open_storage(f"s3://{BUCKET}/spill/unshared")
    opener = functools.partial(open_input, path)
    with distributed.Client(cluster.address) as client, open_input(path) as source:
        spill = spill_on_cluster(
            client,
            opener,
            source,
            workdir=Path("/proc/widecube-no-such-folder"),
            block_nnz=1000,
            slab_bytes=MEMORY // 16,
            version="v",
            progress=lambda _: None,
            remote=remote,
        )
    assert len(_spilled(s3)) == len(spill.parts) == 4
    x = sp.csc_matrix(np.asarray(adata.X, dtype=np.float32))
    seen = 0
    for b in range(spill.n_buckets):
        for slab in spill.buckets().slabs(b, consume=False):
            cols = x[:, slab.lo : slab.hi]
            for ours, theirs in (
                (slab.indptr, cols.indptr),
                (slab.cells, cols.indices),
                (slab.vals, cols.data),
            ):
                np.testing.assert_array_equal(ours, theirs)
            seen = slab.hi
    assert seen == x.shape[1]
    spill.cleanup()
    assert _spilled(s3) == []


def _cli(storage: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"WIDECUBE_STORAGE": str(storage), "WIDECUBE_MEMORY": str(MEMORY)}
    return process({**env, "WIDECUBE_CLUSTER": None, "WIDECUBE_WORKERS": None}, "ingest", *args)


def test_cli_cluster_option(
    cluster: Deployment, inputs: dict[str, tuple[Path, dict[str, str]]], tmp_path: Path
) -> None:
    path, local = inputs["csr"]
    done = _cli(tmp_path / "s", str(path), "-d", "d", "--cluster", cluster.address)
    assert done.returncode == 0, done.stderr
    _assert_same(local, _files(Settings(storage=tmp_path / "s"), "d"))


def test_cli_local_cluster_of_workers(inputs: dict[str, tuple[Path, dict[str, str]]], tmp_path: Path) -> None:
    path, local = inputs["dense"]
    done = _cli(tmp_path / "s", str(path), "-d", "d", "--workers", "2")
    assert done.returncode == 0, done.stderr
    _assert_same(local, _files(Settings(storage=tmp_path / "s"), "d"))


def test_a_local_cluster_gathers_from_its_workers_and_runs_no_profiler(tmp_path: Path) -> None:
    """``--workers N``: the client takes results straight from the workers (each result
    crossed loopback twice through the scheduler, Dask's default for a client outside the
    cluster; measured on B1M) and the spawned workers' statistical profiler is off."""
    import dask

    before = dask.config.get("distributed.worker.profile.enabled")
    with dask_client(Settings(storage=tmp_path / "s", workers=2)) as client:
        assert client.direct_to_workers is True
        enabled = client.run(lambda: dask.config.get("distributed.worker.profile.enabled"))
        assert len(enabled) == 2
        assert set(enabled.values()) == {False}
        assert client.submit(sum, [1, 2, 3], pure=False).result() == 6
    assert dask.config.get("distributed.worker.profile.enabled") == before  # only for that cluster


def test_workers_killed_mid_pass_still_publish_identical_views(
    inputs: dict[str, tuple[Path, dict[str, str]]], tmp_path: Path
) -> None:
    """A worker SIGKILLed as it starts its 2nd pass-2 task (5 tasks on 3 workers: one runs two),
    then, in a second ingest on the workers left, one SIGKILLed as it starts its 2nd pass-1
    task: Dask runs their tasks again on the others, and both snapshots are the single-process
    one."""
    path, local = inputs["csr"]
    with (
        deployment(tmp_path / "dask", n_workers=3) as d,
        distributed.Client(d.address, timeout="30s") as client,
    ):
        client.wait_for_workers(3, timeout=60)
        for dead, (prefix, nth) in enumerate((("widecube-pass2-", 2), ("widecube-pass1-", 2)), start=1):
            marker = tmp_path / f"killed-{prefix}"
            client.register_plugin(KillOnTask(prefix, nth, str(marker)), name="kill")  # replaces
            settings = Settings(storage=tmp_path / prefix, memory=MEMORY, cluster=d.address)
            ingest(path, dataset="d", settings=settings)
            assert marker.exists(), f"no worker was killed in {prefix}"
            killed = [w for w in d.workers if w.poll() is not None]
            assert [w.returncode for w in killed] == [-9] * dead, "one more worker must have died, by SIGKILL"
            _assert_same(local, _files(settings, "d"))
