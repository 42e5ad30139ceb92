"""``--views``: an ingest builds only the views named (and those they require); the verifier
checks what the manifest lists; the API, the client and the CLI serve what a version has and
answer a read of a view left out with a 422 naming the ``--views`` that builds it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import widecube
from _data import small_adata, write_h5ad
from widecube.api import create_app
from widecube.catalog import Catalog, JobState
from widecube.cli import app as cli_app
from widecube.config import Settings
from widecube.errors import InvalidQuery, VerificationError
from widecube.pipeline import Jobs, Watcher, ingest, verify_snapshot
from widecube.query import Widecube
from widecube.snapshot import Snapshot
from widecube.views import ViewMissing, parse_views, select_views, views

ALL = [v.name for v in views()]


# -- choosing views: no ingest --------------------------------------------------------------


def test_a_view_brings_the_views_it_requires() -> None:
    # summary's and matrix's verifiers read the genes view's per-gene totals
    assert [v.name for v in select_views(["summary"])] == ["genes", "summary"]
    assert [v.name for v in select_views(["matrix"])] == ["genes", "matrix"]
    assert [v.name for v in select_views(["quantiles"])] == ["quantiles"]
    assert [v.name for v in select_views(["summary", "quantiles"])] == ["genes", "quantiles", "summary"]
    assert [v.name for v in select_views(None)] == ALL


def test_view_names_are_parsed_and_checked() -> None:
    assert parse_views(" quantiles ,summary,summary") == ["quantiles", "summary"]
    assert parse_views(["summary", "markers,quantiles"]) == ["markers", "quantiles", "summary"]
    assert parse_views(None) is None and parse_views("") is None and parse_views([]) is None
    with pytest.raises(InvalidQuery) as caught:
        parse_views("summary,medians")
    assert "unknown view 'medians'" in str(caught.value)
    assert all(name in str(caught.value) for name in ALL)  # the valid names are listed


def test_cli_refuses_an_unknown_view_as_a_usage_error(tmp_path: Path) -> None:
    runner = CliRunner()
    for command in (["ingest", str(tmp_path / "x.h5ad"), "-d", "x"], ["watch", str(tmp_path)]):
        result = runner.invoke(cli_app, [*command, "--views", "summary,medians"])
        assert result.exit_code == 2, result.output
        assert "unknown view 'medians'" in result.output and "quantiles" in result.output


# -- a version built with --views summary ---------------------------------------------------


@pytest.fixture(scope="module")
def summary_only(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, ad.AnnData, Snapshot]:
    root = tmp_path_factory.mktemp("views")
    settings = Settings(storage=root / "store")
    adata = small_adata(seed=31)
    record = ingest(
        write_h5ad(adata, root / "in.h5ad"),
        dataset="lean",
        groupbys=["cell_type", "donor"],
        views="summary",
        settings=settings,
    )
    return settings, adata, Snapshot(settings.storage / str(record.path))


@pytest.mark.slow
def test_only_the_views_asked_for_are_built_and_verified(
    summary_only: tuple[Settings, ad.AnnData, Snapshot],
) -> None:
    settings, _, snap = summary_only
    assert list(snap.manifest["views"]) == ["genes", "summary"]
    assert snap.manifest["parameters"]["views"] == ["genes", "summary"]
    stored = {p.relative_to(snap.root).parts[1] for p in (snap.root / "views").iterdir()}
    assert stored == {"genes", "summary"}  # no quantiles/, markers/ nor matrix.zarr
    assert not any(
        f.startswith(("views/quantiles", "views/markers", "views/matrix")) for f in snap.manifest["files"]
    )
    verify_snapshot(snap)
    with Catalog(settings.catalog_url) as catalog:  # a resumed job builds the same views
        assert catalog.get_version("lean", snap.version).params["views"] == ["summary"]


@pytest.mark.slow
def test_the_verifier_misses_a_view_the_manifest_says_was_built(
    summary_only: tuple[Settings, ad.AnnData, Snapshot], tmp_path: Path
) -> None:
    copy = tmp_path / "snap"
    shutil.copytree(summary_only[2].root, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["parameters"]["views"] = ["genes", "quantiles", "summary"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VerificationError, match="view 'quantiles' is missing"):
        verify_snapshot(Snapshot(copy))
    manifest["parameters"]["views"] = ["summary"]  # a view stored but not among those built
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VerificationError, match="view 'genes' is stored but not among the views built"):
        verify_snapshot(Snapshot(copy))


@pytest.mark.slow
def test_summary_answers_match_numpy(summary_only: tuple[Settings, ad.AnnData, Snapshot]) -> None:
    settings, adata, _ = summary_only
    x = np.asarray(adata.X, dtype=np.float64)
    genes = ["Gene0", "Gene7", "Gene59"]
    cols = [adata.var_names.get_loc(g) for g in genes]
    wc = Widecube(settings)
    try:
        for groupby in ("cell_type", "donor"):
            got = wc.summary("lean", genes=genes, groupby=groupby, stats=["sum", "mean"], layer="input")
            labels = adata.obs[groupby].astype(str).to_numpy()
            for i, group in enumerate(got["groups"]):
                rows = x[labels == group][:, cols]
                np.testing.assert_allclose(np.asarray(got["values"]["sum"])[i], rows.sum(axis=0), rtol=1e-12)
                mean = rows.mean(axis=0) if len(rows) else np.full(len(cols), np.nan)
                np.testing.assert_allclose(np.asarray(got["values"]["mean"])[i], mean, rtol=1e-6)
    finally:
        wc.close()


@pytest.fixture
def lean_client(summary_only: tuple[Settings, ad.AnnData, Snapshot]) -> Iterator[TestClient]:
    with TestClient(create_app(summary_only[0], upkeep=False, jobs=False)) as c:
        yield c


@pytest.mark.slow
def test_api_describes_and_serves_only_what_the_version_has(
    lean_client: TestClient, summary_only: tuple[Settings, ad.AnnData, Snapshot]
) -> None:
    version = summary_only[2].version
    detail = lean_client.get("/api/v1/datasets/lean").json()
    assert sorted(detail["views"]) == ["genes", "summary"]
    base = "/api/v1/datasets/lean"
    ok = lean_client.get(f"{base}/summary", params={"genes": "Gene3", "groupby": "donor", "stats": "mean"})
    assert ok.status_code == 200, ok.text
    lacking = {
        "quantiles": lean_client.get(
            f"{base}/summary", params={"genes": "Gene3", "groupby": "donor", "stats": "median"}
        ),
        "markers": lean_client.get(f"{base}/markers", params={"groupby": "donor", "group": "d1"}),
        "matrix": lean_client.post(
            f"{base}/aggregate",
            json={"genes": ["Gene3"], "groupby": "cell_type", "stats": ["mean"], "filter": {"donor": ["d1"]}},
        ),
    }
    for view, r in lacking.items():
        assert r.status_code == 422, (view, r.text)
        detail_text = r.json()["detail"]
        assert f"dataset 'lean' version {version} was ingested without the {view} view" in detail_text
        assert detail_text.endswith(f"re-ingest with --views summary,{view}"), detail_text
    # an aggregate the summary answers (no filter) is served; a median there is the same 422
    whole = {"genes": ["Gene3"], "groupby": "donor", "stats": ["mean"]}
    assert lean_client.post(f"{base}/aggregate", json=whole).json()["source"] == "precomputed"
    median = lean_client.post(f"{base}/aggregate", json={**whole, "stats": ["median"]})
    assert median.status_code == 422 and "--views summary,quantiles" in median.json()["detail"]
    # an unknown statistic is still called unknown
    bad = lean_client.get(f"{base}/summary", params={"genes": "Gene3", "groupby": "donor", "stats": "q99"})
    assert bad.status_code == 422 and "unknown stat 'q99'" in bad.json()["detail"]


@pytest.mark.slow
def test_the_client_gets_what_there_is_and_a_clear_error_for_the_rest(
    summary_only: tuple[Settings, ad.AnnData, Snapshot],
) -> None:
    settings, adata, _ = summary_only
    with widecube.open(settings.storage, catalog_url=settings.catalog_url) as wc:
        pb = wc.summary("lean", ["Gene5"], "donor", stats=["sum"], layer="input")
        x = np.asarray(adata.X)[:, 5]
        for group, value in zip(pb.obs_names, pb.layers["sum"][:, 0], strict=True):
            assert value == pytest.approx(x[(adata.obs["donor"] == group).to_numpy()].sum())
        with pytest.raises(InvalidQuery, match="without the quantiles view") as caught:
            wc.summary("lean", ["Gene5"], "donor", stats=["median"])
        assert isinstance(caught.value, ViewMissing) and caught.value.view == "quantiles"
        with pytest.raises(InvalidQuery, match=r"--views summary,markers"):
            wc.markers("lean", "donor", "d1")


# -- the default, uploads and the watcher ---------------------------------------------------


@pytest.mark.slow
def test_by_default_every_view_is_built(settings: Settings, tmp_path: Path) -> None:
    record = ingest(write_h5ad(small_adata(seed=32), tmp_path / "in.h5ad"), dataset="full", settings=settings)
    snap = Snapshot(settings.storage / str(record.path))
    assert list(snap.manifest["views"]) == ALL and snap.manifest["parameters"]["views"] == ALL
    with Catalog(settings.catalog_url) as catalog:
        assert catalog.get_version("full", record.version).params["views"] is None


@pytest.mark.slow
def test_an_upload_names_its_views(settings: Settings, tmp_path: Path) -> None:
    data = write_h5ad(small_adata(seed=33), tmp_path / "up.h5ad").read_bytes()
    with TestClient(create_app(settings, upkeep=False, jobs=False)) as client:
        bad = client.post(
            "/api/v1/uploads", params={"filename": "up.h5ad", "views": "summary,medians"}, content=data
        )
        assert bad.status_code == 422 and "unknown view 'medians'" in bad.json()["detail"]
        start = client.post(
            "/api/v1/uploads/resumable", json={"filename": "up.h5ad", "size": len(data), "views": ["nope"]}
        )
        assert start.status_code == 422 and "unknown view 'nope'" in start.json()["detail"]
        r = client.post(
            "/api/v1/uploads",
            params={"filename": "up.h5ad", "dataset": "up", "views": ["quantiles", "markers"]},
            content=data,
        )
        assert r.status_code == 201, r.text
    assert len(list((settings.storage / "uploads").glob("*/*.h5ad"))) == 1  # the refused ones kept nothing
    with Jobs.open(settings) as jobs:
        (job,) = jobs.run_pending()
    assert job.state == JobState.PUBLISHED and job.params["views"] == ["markers", "quantiles"]
    with Catalog(settings.catalog_url) as catalog:
        version = catalog.get_version("up", str(job.version))
    assert list(Snapshot(settings.storage / str(version.path)).manifest["views"]) == ["markers", "quantiles"]


@pytest.mark.slow
def test_the_watcher_and_its_sidecars_name_views(settings: Settings, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_h5ad(small_adata(seed=34), inbox / "plain.h5ad")  # the watcher's own views
    write_h5ad(small_adata(seed=35), inbox / "side.h5ad")
    (inbox / "side.json").write_text(json.dumps({"views": ["quantiles"]}))
    write_h5ad(small_adata(seed=36), inbox / "typo.h5ad")
    (inbox / "typo.json").write_text(json.dumps({"views": "summary,medians"}))
    with Catalog(settings.catalog_url) as catalog:
        Watcher(inbox, settings, catalog, quiet=0.0, views="matrix").run_once()
        jobs = {j.dataset: j for j in catalog.jobs.list()}
        built = {
            name: list(
                Snapshot(
                    settings.storage / str(catalog.get_version(name, str(jobs[name].version)).path)
                ).manifest["views"]
            )
            for name in ("plain", "side")
        }
    assert built == {"plain": ["genes", "matrix"], "side": ["quantiles"]}
    assert jobs["typo"].state == JobState.FAILED
    assert "sidecar typo.json: unknown view 'medians'" in str(jobs["typo"].error)
    with Catalog(settings.catalog_url) as catalog, pytest.raises(InvalidQuery, match="unknown view 'x'"):
        Watcher(inbox, settings, catalog, views="x")
