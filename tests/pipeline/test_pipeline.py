"""Ingest end to end: bad input fails cleanly, failures never touch the live version."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
from typer.testing import Result

from _cli import invoke, process
from _data import MakeH5ad, small_adata, without_progress
from _pg import postgres_schema
from widecube.catalog import Catalog, VersionStatus
from widecube.config import Settings
from widecube.errors import DatasetNotFound, NotFound, VerificationError
from widecube.pipeline import ingest, verify_snapshot
from widecube.pipeline._ingest import STEPS
from widecube.query import Widecube
from widecube.snapshot import Snapshot

pytestmark = pytest.mark.slow


def _env(settings: Settings) -> dict[str, str | None]:
    return {"WIDECUBE_STORAGE": str(settings.storage), "WIDECUBE_CATALOG_URL": settings.catalog_url}


def cli_process(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``widecube`` command in a process of its own."""
    return process(_env(settings), *args)


def cli(settings: Settings, *args: str) -> Result:
    """The command in this process; real processes refusing bad input are
    tests/io/test_bad_inputs.py's and :func:`test_first_ingest_failing_publishes_nothing`'s."""
    return invoke(_env(settings), *args)


def snapshot_folders(settings: Settings, dataset: str) -> list[str]:
    root = settings.storage / "datasets" / dataset
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def bad_inputs(tmp: Path, make_h5ad: MakeH5ad) -> dict[str, tuple[list[str], str]]:
    """name → (extra CLI args with the input path first, text the error must contain)."""
    (tmp / "notes.h5ad").write_text("cell,gene\nc1,1\n")
    no_x = small_adata()
    no_x.layers["counts"] = no_x.X.copy()
    no_x.X = None
    no_x.write_h5ad(tmp / "nox.h5ad")
    nan = small_adata()
    nan.X[17, 4] = np.nan
    inf = small_adata()
    inf.X[200, 9] = np.inf
    return {
        "missing": ([str(tmp / "absent.h5ad")], "absent.h5ad: no such file"),
        "not hdf5": ([str(tmp / "notes.h5ad")], "notes.h5ad: not a recognised matrix file"),
        "no X": ([str(tmp / "nox.h5ad")], "nox.h5ad: has no X matrix (layers: counts)"),
        "nan": (
            [str(make_h5ad(nan, name="nan.h5ad"))],
            "nan.h5ad: NaN found at row 18 (cell 'cell17'), column 5 (gene 'Gene4')",
        ),
        "inf csc": (
            [str(make_h5ad(inf, name="inf.h5ad", layout="csc"))],
            "inf.h5ad: infinite value found at row 201 (cell 'cell200'), column 10 (gene 'Gene9')",
        ),
        "groupby": (
            [str(make_h5ad(name="ok.h5ad")), "--groupby", "tissue"],
            "groupby column 'tissue' is not in obs (columns: cell_type, donor, score)",
        ),
        "float groupby": (
            [str(make_h5ad(name="ok2.h5ad")), "--groupby", "score"],
            "groupby column 'score' is not categorical",
        ),
    }


def test_bad_input_fails_cleanly_and_keeps_the_live_version(
    tmp_path: Path, make_h5ad: MakeH5ad, settings: Settings
) -> None:
    good = cli(settings, "ingest", str(make_h5ad(name="good.h5ad")), "--dataset", "t")
    assert good.exit_code == 0, good.stderr
    catalog = Catalog(settings.catalog_url)
    live = catalog.current("t")
    for name, (args, message) in bad_inputs(tmp_path, make_h5ad).items():
        run = cli(settings, "ingest", *args, "--dataset", "t")
        assert run.exit_code == 1, name
        lines = without_progress(run.stderr)
        assert len(lines) == 1 and "Traceback" not in run.stderr, (name, run.stderr)
        assert message in lines[0], (name, lines[0])
        assert catalog.current("t").version == live.version
        failed = catalog.versions("t")[0]
        assert failed.status == VersionStatus.FAILED and message in (failed.reason or "")
        assert failed.path is None
    assert snapshot_folders(settings, "t") == [live.version]
    assert not any((settings.storage / "staging").iterdir())
    catalog.close()


@pytest.mark.subprocess
def test_first_ingest_failing_publishes_nothing(make_h5ad: MakeH5ad, settings: Settings) -> None:
    nan = small_adata()
    nan.X[0, 0] = np.nan
    run = cli_process(settings, "ingest", str(make_h5ad(nan)), "--dataset", "fresh")
    assert run.returncode == 1
    catalog = Catalog(settings.catalog_url)
    with pytest.raises(DatasetNotFound, match="fresh"):
        catalog.current("fresh")
    catalog.close()


def test_failure_after_views_are_written_leaves_old_version_served(
    make_h5ad: MakeH5ad, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = ingest(make_h5ad(small_adata(seed=1), name="v1.h5ad"), dataset="t", settings=settings)

    def broken_publish(self: Catalog, dataset: str, version: str, **kw: object) -> None:
        raise OSError("catalog went away")

    monkeypatch.setattr(Catalog, "publish", broken_publish)
    with pytest.raises(OSError, match="catalog went away"):
        ingest(make_h5ad(small_adata(seed=2), name="v2.h5ad"), dataset="t", settings=settings)
    monkeypatch.undo()
    wc = Widecube(settings)
    assert wc.resolve("t")[0].version == old.version
    x1 = np.asarray(small_adata(seed=1).X)
    got = wc.summary("t", genes=["Gene5"], groupby="donor", stats=["sum"], layer="input")["values"]["sum"]
    assert got.sum() == x1[:, 5].sum()
    new = wc.catalog.versions("t")[0]
    assert new.status == VersionStatus.FAILED and "catalog went away" in (new.reason or "")
    assert snapshot_folders(settings, "t") == [old.version]
    wc.close()


def test_builders_beside_the_others_run_on_their_thread_in_order() -> None:
    """``_consume``: a builder marked ``beside`` consumes on the beside thread while the
    others go on in the build's; the slab is handed back only when both are done; a failure
    on either side is raised to the build, after the other side has stopped with the slab."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from widecube.pipeline._ingest import _consume

    calls: list[tuple[str, object, str]] = []

    class Fake:
        def __init__(self, name: str, beside: bool, delay: float = 0.0, fail: bool = False) -> None:
            self.name, self.beside, self.delay, self.fail = name, beside, delay, fail

        def consume(self, stats: object) -> None:
            time.sleep(self.delay)
            calls.append((self.name, stats, threading.current_thread().name))
            if self.fail:
                raise RuntimeError(f"{self.name} failed")

    builders = [
        Fake("genes", False),
        Fake("markers", True, 0.2),
        Fake("matrix", True),
        Fake("quantiles", False),
    ]
    with ThreadPoolExecutor(1, thread_name_prefix="widecube-beside") as beside:
        for slab in ("slab 1", "slab 2"):
            _consume(slab, builders, beside)  # type: ignore[arg-type]
            assert {(n, s) for n, s, _ in calls if s == slab} == {(b.name, slab) for b in builders}
        main = threading.current_thread().name
        assert [(n, t.startswith("widecube-beside")) for n, s, t in calls if s == "slab 1"] == [
            ("genes", False),
            ("quantiles", False),  # went on while the markers took their time beside
            ("markers", True),
            ("matrix", True),
        ]
        assert all(t == main for n, _, t in calls if n in ("genes", "quantiles"))
        calls.clear()
        with pytest.raises(RuntimeError, match="markers failed"):
            _consume("slab 3", [Fake("markers", True, 0.2, fail=True), Fake("summary", False)], beside)  # type: ignore[arg-type]
        assert [n for n, _, _ in calls] == ["summary", "markers"]
        calls.clear()
        with pytest.raises(RuntimeError, match="summary failed"):
            _consume("slab 4", [Fake("matrix", True, 0.2), Fake("summary", False, fail=True)], beside)  # type: ignore[arg-type]
        assert [n for n, _, _ in calls] == ["summary", "matrix"]  # the matrix finished first


def test_a_builder_failing_beside_the_others_fails_the_job_cleanly(
    make_h5ad: MakeH5ad, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from widecube.views.markers import MarkersBuilder

    old = ingest(
        make_h5ad(small_adata(seed=1), name="v1.h5ad"), dataset="t", groupbys=["donor"], settings=settings
    )

    def broken(self: MarkersBuilder, stats: object) -> None:
        raise OSError("disk full while ranking")

    monkeypatch.setattr(MarkersBuilder, "consume", broken)
    with pytest.raises(OSError, match="disk full while ranking"):
        ingest(
            make_h5ad(small_adata(seed=2), name="v2.h5ad"), dataset="t", groupbys=["donor"], settings=settings
        )
    monkeypatch.undo()
    wc = Widecube(settings)
    assert wc.resolve("t")[0].version == old.version
    new = wc.catalog.versions("t")[0]
    assert new.status == VersionStatus.FAILED and "disk full while ranking" in (new.reason or "")
    assert snapshot_folders(settings, "t") == [old.version]
    wc.close()


def test_verifier_rejects_a_corrupted_snapshot(
    make_h5ad: MakeH5ad, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import widecube.pipeline._ingest as pipeline

    def corrupt_then_verify(snap: Snapshot, *, scratch: Path | None = None) -> None:
        chunk = next(p for p in (snap.root / "views/summary").rglob("c/*") if p.is_file())
        chunk.write_bytes(chunk.read_bytes()[:-1] + b"\x00")
        verify_snapshot(snap, scratch=scratch)

    monkeypatch.setattr(pipeline, "verify_snapshot", corrupt_then_verify)
    with pytest.raises(VerificationError, match="does not match its checksum"):
        ingest(make_h5ad(), dataset="t", settings=settings)
    catalog = Catalog(settings.catalog_url)
    assert catalog.versions("t")[0].status == VersionStatus.FAILED
    catalog.close()


def test_invariants_catch_wrong_group_sizes(make_h5ad: MakeH5ad, settings: Settings) -> None:
    record = ingest(make_h5ad(), dataset="t", groupbys=["donor"], settings=settings)
    root = settings.storage / (record.path or "")
    snap = Snapshot(root)
    verify_snapshot(snap)  # a good snapshot passes
    snap.manifest["n_cells"] += 1  # as if a cell had been lost from every grouping
    with pytest.raises(VerificationError, match=r"n_cells over groups is 240, expected 241"):
        snap.view("summary")  # manifest still readable
        from widecube.views import get_view

        get_view("summary").verify(snap)


def test_rollback_and_versions_cli(make_h5ad: MakeH5ad, settings: Settings) -> None:
    first = ingest(make_h5ad(name="a.h5ad"), dataset="t", settings=settings)
    second = ingest(make_h5ad(small_adata(seed=4), name="b.h5ad"), dataset="t", settings=settings)
    run = cli(settings, "rollback", "t")
    assert run.exit_code == 0 and first.version in run.stdout
    catalog = Catalog(settings.catalog_url)
    assert catalog.current("t").version == first.version
    run = cli(settings, "rollback", "t", "--to", second.version)
    assert run.exit_code == 0 and catalog.current("t").version == second.version
    listing = cli(settings, "versions", "t")
    assert first.version[:8] in listing.stdout and "retired" in listing.stdout
    assert "t" in cli(settings, "datasets").stdout
    bad = cli(settings, "rollback", "nope")
    assert bad.exit_code == 1 and "nope" in bad.stderr and "Traceback" not in bad.stderr
    catalog.close()


@pytest.mark.postgres
def test_ingest_and_serve_with_a_postgresql_catalog(make_h5ad: MakeH5ad, tmp_path: Path) -> None:
    adata = small_adata(seed=6)
    with postgres_schema() as (url, _schema):
        settings = Settings(storage=tmp_path / "pg-store", catalog_url=url)
        ingest(make_h5ad(adata), dataset="t", groupbys=["cell_type"], settings=settings)
        wc = Widecube(settings)
        got = wc.summary("t", genes=["Gene2"], groupby="cell_type", stats=["mean"], layer="input")
        wc.close()
    x = np.asarray(adata.X)
    assert sorted(got["groups"]) == sorted(adata.obs["cell_type"].unique().astype(str))
    for i, g in enumerate(got["groups"]):
        cells = (adata.obs["cell_type"] == g).to_numpy()
        assert got["values"]["mean"][i, 0] == pytest.approx(x[cells, 2].mean())


def test_h5ad_written_by_hand_with_h5py_csr(tmp_path: Path, settings: Settings) -> None:
    """A CSR X with int64 indices and unsorted columns, as some tools write it."""
    adata = small_adata(seed=8)
    path = tmp_path / "hand.h5ad"
    adata.write_h5ad(path)
    x = np.asarray(adata.X)
    rows, cols = np.nonzero(x)
    with h5py.File(path, "r+") as f:
        del f["X"]
        g = f.create_group("X")
        g.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": x.shape})
        order = np.lexsort((-cols, rows))  # columns descending inside each row
        g["data"] = x[rows[order], cols[order]].astype(np.float32)
        g["indices"] = cols[order].astype(np.int64)
        g["indptr"] = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=x.shape[0]))])
    ingest(path, dataset="hand", groupbys=["donor"], settings=settings)
    catalog = Catalog(settings.catalog_url)
    view = ad.read_zarr(settings.storage / str(catalog.current("hand").path) / "views/summary/donor.zarr")
    catalog.close()
    assert sorted(view.obs_names) == ["d1", "d2", "d3"] and view.shape == (3, x.shape[1])
    for i, d in enumerate(view.obs_names):
        np.testing.assert_allclose(view.layers["sum"][i], x[(adata.obs["donor"] == d).to_numpy()].sum(0))


def test_obsm_embeddings_are_stored(make_h5ad: MakeH5ad, settings: Settings) -> None:
    adata = small_adata(seed=2)
    adata.obsm["X_umap"] = np.random.default_rng(0).normal(size=(adata.n_obs, 2))
    record = ingest(make_h5ad(adata), dataset="t", settings=settings)
    snap = Snapshot(settings.storage / str(record.path))
    assert snap.manifest["obsm"]["X_umap"]["shape"] == [240, 2]
    np.testing.assert_allclose(snap.array("dataset/obsm.zarr/X_umap"), adata.obsm["X_umap"], rtol=1e-6)


def test_a_spill_through_the_page_cache_builds_the_same_snapshot(
    make_h5ad: MakeH5ad, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``WIDECUBE_SPILL_DIRECT=false`` reaches pass 1's files (written through the page cache)
    and changes nothing in what is published: every file's checksum is the default's."""
    from widecube.compute import _spill

    asked: list[bool] = []
    real = _spill.StagedFiles

    def spy(paths: list[Path], **kw: bool) -> object:
        asked.append(kw.get("direct", True))
        return real(paths, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(_spill, "StagedFiles", spy)
    path = make_h5ad()
    checksums = []
    for name, direct in (("a", True), ("b", False)):
        asked.clear()
        record = ingest(path, dataset=name, settings=settings.model_copy(update={"spill_direct": direct}))
        assert asked and set(asked) == {direct}
        manifest = Snapshot(settings.storage / str(record.path)).manifest
        checksums.append({p: e["sha256"] for p, e in manifest["files"].items() if "/views/" in f"/{p}"})
    assert len(checksums[0]) > 10 and checksums[0] == checksums[1]
    asked.clear()  # unset: a small input's spill fits in memory many times over
    ingest(path, dataset="c", settings=settings.model_copy(update={"spill_direct": None}))
    assert asked and set(asked) == {False}


def test_progress_is_saved_in_the_catalog_while_building(
    make_h5ad: MakeH5ad, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, object]] = []
    original = Catalog.report_progress

    def spy(self: Catalog, dataset: str, version: str, progress: dict[str, object]) -> None:
        original(self, dataset, version, progress)
        try:
            record = self.get_version(dataset, version)
        except NotFound:  # unpack starts before it records the version
            return
        if record.status == VersionStatus.BUILDING:
            seen.append(record.info["progress"])

    monkeypatch.setattr(Catalog, "report_progress", spy)
    ingest(make_h5ad(), dataset="t", settings=settings)
    steps = [p["step"] for p in seen]
    assert {"unpack", "validate", "compute", "verify"} <= set(steps) <= set(STEPS)  # the job's step names
    compute = [float(p["fraction"]) for p in seen if p["step"] == "compute"]  # type: ignore[arg-type]
    assert compute[0] == 0.0 and compute[-1] == 1.0 and compute == sorted(compute)
    assert all(0.0 <= float(p["fraction"]) <= 1.0 for p in seen)  # type: ignore[arg-type]


def test_pass_1_ends_with_an_exact_report_before_any_slab(make_h5ad: MakeH5ad, settings: Settings) -> None:
    """``--timings`` cuts the compute step where its fraction reaches 0.5: pass 1 reports
    exactly that when it ends (its blocks' fractions need not sum to one in floating point),
    so the time to the first slab (obs written, builders made) is not counted as pass 1."""
    reports: list[float] = []
    # 999 rows in blocks of 131 values on one thread: their fractions add up to 0.4999999999999999
    settings = settings.model_copy(update={"block_nnz": 131, "compute_threads": 1})
    ingest(
        make_h5ad(small_adata(n_cells=999, n_genes=50)),
        dataset="t",
        settings=settings,
        progress=lambda step, done: reports.append(done) if step == "compute" else None,
    )
    assert 0.5 in reports
    cut = reports.index(0.5)
    assert cut > 3 and all(r < 0.5 for r in reports[:cut])  # pass 1's blocks, then the cut
    assert all(r >= 0.5 for r in reports[cut:]) and reports[-1] == 1.0
