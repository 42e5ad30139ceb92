"""Quantiles, normalized layer, gene and cell stats, markers and the gene-major matrix,
against numpy, scipy and scanpy on small matrices."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from scipy import stats as st

from _data import MakeH5ad, small_adata
from widecube.catalog import VersionRecord
from widecube.config import Settings
from widecube.pipeline import Progress, ingest
from widecube.query import Widecube
from widecube.snapshot import Snapshot
from widecube.views import get_view

pytestmark = pytest.mark.slow

QS = {"q10": 0.1, "q25": 0.25, "median": 0.5, "q75": 0.75, "q90": 0.9}


def tie_heavy(seed: int = 0) -> ad.AnnData:
    """Small integer counts (many ties), an all-zero gene in a group, one-cell group."""
    adata = small_adata(n_cells=180, n_genes=25, seed=seed)
    x = np.asarray(adata.X)
    x[:, 4] = np.where(x[:, 4] > 0, 2, 0)  # only ties
    x[(adata.obs["cell_type"] == "B").to_numpy(), 6] = 0  # a group with only zeros
    adata.X = x
    return adata


def normalized(x: np.ndarray) -> np.ndarray:
    total = x.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log1p(np.where(total > 0, x * 1e4 / total, 0.0))


def groups_of(adata: ad.AnnData, key: str) -> dict[str, np.ndarray]:
    labels = adata.obs[key].astype(str).to_numpy()
    return {g: labels == g for g in pd.unique(labels)}


def query(
    settings: Settings,
    dataset: str,
    stats: list[str],
    layer: str,
    groupby: str = "cell_type",
    genes: list[str] | None = None,
) -> dict[str, object]:
    wc = Widecube(settings)
    genes = genes or [f"Gene{j}" for j in range(wc.resolve(dataset)[1].n_genes)]
    result = wc.summary(dataset, genes=genes, groupby=groupby, stats=stats, layer=layer)
    wc.close()
    return result


@pytest.mark.parametrize(("layout", "dtype"), [("csr", "float32"), ("csc", "int32"), ("dense", "float64")])
def test_quantiles_equal_numpy_on_both_layers(
    make_h5ad: MakeH5ad, settings: Settings, layout: str, dtype: str
) -> None:
    adata = tie_heavy()
    ingest(
        make_h5ad(adata, layout=layout, dtype=dtype), dataset="q", groupbys=["cell_type"], settings=settings
    )
    x = np.asarray(adata.X, dtype=np.float64)
    for layer, values in (("input", x), ("normalized", normalized(x))):
        got = query(settings, "q", list(QS), layer)
        for i, g in enumerate(got["groups"]):
            cells = groups_of(adata, "cell_type")[g]
            for name, q in QS.items():
                want = np.quantile(values[cells], q, axis=0, method="linear")
                np.testing.assert_allclose(
                    got["values"][name][i], want, rtol=1e-6, atol=1e-7, err_msg=f"{layer} {g} {name}"
                )


def test_median_equals_scanpy(make_h5ad: MakeH5ad, settings: Settings) -> None:
    adata = tie_heavy(seed=2)
    path = make_h5ad(adata)
    ingest(path, dataset="q", groupbys=["cell_type", "cell_type,donor"], settings=settings)
    for key, by in (("cell_type", "cell_type"), ("cell_type,donor", ["cell_type", "donor"])):
        ref = sc.get.aggregate(ad.read_h5ad(path), by=by, func="median")
        got = query(settings, "q", ["median"], "input", groupby=key)
        assert got["groups"] == list(ref.obs_names)
        np.testing.assert_allclose(got["values"]["median"], np.asarray(ref.layers["median"]), rtol=1e-6)


def test_normalized_summary_equals_scanpy_pipeline(make_h5ad: MakeH5ad, settings: Settings) -> None:
    adata = small_adata(seed=4)
    path = make_h5ad(adata)
    ingest(path, dataset="n", groupbys=["cell_type"], settings=settings)
    ref = ad.read_h5ad(path)
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        agg = sc.get.aggregate(ref, by="cell_type", func=["mean", "var", "count_nonzero"])
    got = query(settings, "n", ["mean", "var", "nnz"], "normalized")
    assert got["layer"] == "normalized" and got["groups"] == list(agg.obs_names)
    np.testing.assert_allclose(got["values"]["mean"], agg.layers["mean"], rtol=1e-5)
    np.testing.assert_allclose(got["values"]["nnz"], agg.layers["count_nonzero"])
    solo = got["groups"].index("solo")
    keep = np.arange(len(got["groups"])) != solo
    np.testing.assert_allclose(got["values"]["var"][keep], agg.layers["var"][keep], rtol=1e-4, atol=1e-6)
    default = query(settings, "n", ["mean"], layer=None)  # type: ignore[arg-type]
    assert default["layer"] == "normalized"


def test_non_count_input_has_only_the_raw_layer(make_h5ad: MakeH5ad, settings: Settings) -> None:
    adata = small_adata(seed=5)
    scaled = np.asarray(adata.X, dtype=np.float64)
    scaled = (scaled - scaled.mean(0)) / (scaled.std(0) + 1)  # negative, non-integer
    adata.X = scaled
    record = ingest(make_h5ad(adata, dtype="float64"), dataset="s", groupbys=["cell_type"], settings=settings)
    wc = Widecube(settings)
    snap = wc.resolve("s")[1]
    assert snap.manifest["layers"] == ["input"] and record.info["groupbys"] == ["cell_type"]
    got = wc.summary("s", genes=["Gene3"], groupby="cell_type", stats=["mean", "median"])
    assert got["layer"] == "input"
    for i, g in enumerate(got["groups"]):
        cells = groups_of(adata, "cell_type")[g]
        assert got["values"]["mean"][i, 0] == pytest.approx(scaled[cells, 3].mean())
        assert got["values"]["median"][i, 0] == pytest.approx(np.median(scaled[cells, 3]), rel=1e-6)
    wc.close()


def test_gene_and_cell_stats(make_h5ad: MakeH5ad, settings: Settings) -> None:
    adata = small_adata(seed=6)
    ingest(make_h5ad(adata), dataset="g", groupbys=["donor"], settings=settings)
    x = np.asarray(adata.X, dtype=np.float64)
    wc = Widecube(settings)
    genes = ["Gene0", "Gene5", "Gene59"]
    for layer, values in (("input", x), ("normalized", normalized(x))):
        got = wc.gene_stats("g", genes=genes, layer=layer)["stats"]
        v = values[:, [0, 5, 59]]
        np.testing.assert_allclose(got["mean"], v.mean(0), rtol=1e-9)
        np.testing.assert_allclose(got["var"], v.var(0, ddof=1), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got["min"], v.min(0))
        np.testing.assert_allclose(got["max"], v.max(0), rtol=1e-12)
        np.testing.assert_array_equal(got["n_cells_expressing"], (v != 0).sum(0))
        with np.errstate(divide="ignore", invalid="ignore"):
            np.testing.assert_allclose(got["dispersion"], v.var(0, ddof=1) / v.mean(0), rtol=1e-9)
    cells = wc.cell_stats("g")
    np.testing.assert_allclose(cells["total_counts"], x.sum(1))
    np.testing.assert_array_equal(cells["n_genes_by_counts"], (x != 0).sum(1))
    wc.close()


def test_markers_equal_scipy_welch_and_bh(make_h5ad: MakeH5ad, settings: Settings) -> None:
    adata = small_adata(n_cells=300, n_genes=40, seed=7)
    x = np.asarray(adata.X, dtype=np.float64)
    x[(adata.obs["cell_type"] == "NK").to_numpy(), 10] += 20  # a clear NK marker
    adata.X = x
    ingest(make_h5ad(adata), dataset="m", groupbys=["cell_type"], settings=settings)
    wc = Widecube(settings)
    for layer, values in (("input", x), ("normalized", normalized(x))):
        for group in ("NK", "T"):
            cells = groups_of(adata, "cell_type")[group]
            t, p = st.ttest_ind(values[cells], values[~cells], equal_var=False)
            p = np.where(np.isnan(p), 1.0, p)
            padj = st.false_discovery_control(p, method="bh")
            got = wc.markers("m", groupby="cell_type", group=group, layer=layer)["markers"]
            order = np.argsort(-np.where(np.isnan(t), -np.inf, t), kind="stable")
            # every gene of 40 (< TOP) that has a t (NaN: no variance), ranked by it
            assert np.isnan(t).any() and not np.isnan(t).all()
            expected = [f"Gene{j}" for j in order if not np.isnan(t[j])]
            assert [m["gene"] for m in got] == expected
            for m in got:
                j = int(m["gene"][4:])
                assert m["t"] == pytest.approx(t[j], rel=1e-6)
                assert m["pval"] == pytest.approx(p[j], rel=1e-6, abs=1e-300)
                assert m["pval_adj"] == pytest.approx(padj[j], rel=1e-6, abs=1e-300)
                assert m["pct_in"] == pytest.approx((values[cells, j] != 0).mean())
                assert m["pct_out"] == pytest.approx((values[~cells, j] != 0).mean())
                mi, mo = values[cells, j].mean(), values[~cells, j].mean()
                if layer == "normalized":
                    mi, mo = np.expm1(mi), np.expm1(mo)
                assert m["logfoldchange"] == pytest.approx(np.log2((mi + 1e-9) / (mo + 1e-9)), rel=1e-6)
        top = wc.markers("m", groupby="cell_type", group="NK", layer=layer, limit=3)["markers"]
        assert top[0]["gene"] == "Gene10" and len(top) == 3
    wc.close()


def test_gene_major_matrix_opens_with_anndata(make_h5ad: MakeH5ad, settings: Settings) -> None:
    adata = small_adata(seed=8)
    record = ingest(make_h5ad(adata, layout="csc"), dataset="x", groupbys=["donor"], settings=settings)
    gm = ad.read_zarr(settings.storage / str(record.path) / "views" / "matrix.zarr")
    assert isinstance(gm.X, sp.csc_matrix)
    np.testing.assert_array_equal(gm.X.toarray(), np.asarray(adata.X, dtype=np.float32))
    assert list(gm.obs_names) == list(adata.obs_names) and list(gm.var_names) == list(adata.var_names)
    np.testing.assert_allclose(gm.obs["total_counts"], np.asarray(adata.X).sum(1))


def test_tiny_memory_budget_forces_many_buckets_and_splits(
    make_h5ad: MakeH5ad, settings: Settings, tmp_path: Path
) -> None:
    """A budget of a few hundred values per slab: many buckets, oversized ones split on disk."""
    adata = tie_heavy(seed=9)
    x = np.asarray(adata.X, dtype=np.float64)
    x[:, 0] = np.arange(1, x.shape[0] + 1)  # one dense gene: its bucket must be split
    adata.X = x
    tight = settings.model_copy(update={"memory": 8 * 12 * 300, "block_nnz": 200})
    record = ingest(make_h5ad(adata), dataset="t", groupbys=["cell_type", "donor"], settings=tight)
    assert not (tight.storage / "work" / record.version).exists()  # temporary files removed
    got = query(tight, "t", ["sum", "median", "q90"], "input", groupby="donor")
    for i, g in enumerate(got["groups"]):
        cells = groups_of(adata, "donor")[g]
        np.testing.assert_allclose(got["values"]["sum"][i], x[cells].sum(0))
        np.testing.assert_allclose(got["values"]["median"][i], np.median(x[cells], axis=0), rtol=1e-6)
        np.testing.assert_allclose(got["values"]["q90"][i], np.quantile(x[cells], 0.9, axis=0), rtol=1e-6)
    gm = ad.read_zarr(tight.storage / str(record.path) / "views" / "matrix.zarr")
    np.testing.assert_array_equal(gm.X.toarray(), x.astype(np.float32))


@pytest.mark.parametrize("chunk", [1, 37, 10_000])
def test_gene_major_matrix_written_in_whole_chunks(
    make_h5ad: MakeH5ad, settings: Settings, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Slabs end anywhere in a chunk: the values of a chunk two slabs share wait and the
    chunk is written once, whole; the matrix is the input's, to the bit."""
    from widecube.snapshot import SnapshotWriter
    from widecube.views import matrix

    monkeypatch.setattr(matrix, "_CHUNK", chunk)
    regions: list[tuple[int, int]] = []
    put = SnapshotWriter.put

    def recording(self: SnapshotWriter, array: object, region: tuple[slice, ...], values: np.ndarray) -> None:
        if str(getattr(array, "path", "")).endswith("X/data"):
            regions.append((int(region[0].start), int(region[0].stop)))
        put(self, array, region, values)  # type: ignore[arg-type]

    monkeypatch.setattr(SnapshotWriter, "put", recording)
    adata = tie_heavy(seed=11)
    x = np.asarray(adata.X, dtype=np.float64)
    tight = settings.model_copy(update={"memory": 8 * 12 * 300, "block_nnz": 200})  # many slabs
    record = ingest(make_h5ad(adata), dataset="c", groupbys=["cell_type"], settings=tight)
    nnz = int(np.count_nonzero(x))
    assert sorted(regions) == regions and regions[0][0] == 0 and regions[-1][1] == nnz
    assert all(a % chunk == 0 and (b % chunk == 0 or b == nnz) for a, b in regions)
    assert all(b == a2 for (_, b), (a2, _) in zip(regions[:-1], regions[1:], strict=True))  # once each
    gm = ad.read_zarr(tight.storage / str(record.path) / "views" / "matrix.zarr")
    np.testing.assert_array_equal(gm.X.toarray(), x.astype(np.float32))


def test_gene_values_from_the_gene_major_view(make_h5ad: MakeH5ad, settings: Settings) -> None:
    adata = small_adata(seed=10)
    ingest(make_h5ad(adata, layout="dense"), dataset="v", groupbys=["donor"], settings=settings)
    x = np.asarray(adata.X, dtype=np.float64)
    wc = Widecube(settings)
    for gene in ("Gene0", "Gene7", "Gene59"):
        j = int(gene[4:])
        _, raw = wc.gene_values("v", gene, layer="input")
        np.testing.assert_array_equal(raw, x[:, j].astype(np.float32))
        _, norm = wc.gene_values("v", gene)
        np.testing.assert_allclose(norm, normalized(x)[:, j], rtol=1e-6, atol=1e-7)
    wc.close()


def _built(settings: Settings, record: VersionRecord) -> tuple[dict[str, str], dict[str, object]]:
    """({file: sha256}, view entries) of a published version's manifest."""
    manifest = json.loads((settings.storage / str(record.path) / "manifest.json").read_text())
    return {f: e["sha256"] for f, e in manifest["files"].items()}, manifest["views"]


def test_two_builds_run_concurrently_in_one_process(make_h5ad: MakeH5ad, tmp_path: Path) -> None:
    """Builders hold all build state: two ingests in two threads, both inside their slab
    loops at once (a barrier), write byte-identical snapshots to sequential ones."""
    adatas = {"a": small_adata(n_cells=90, n_genes=30, seed=21), "b": tie_heavy(seed=22)}
    paths = {name: make_h5ad(adata, name=f"{name}.h5ad") for name, adata in adatas.items()}

    def settings_for(tag: str) -> Settings:  # small slabs: many consume calls per build
        return Settings(storage=tmp_path / tag, memory=8 * 12 * 300, block_nnz=200)

    def build(name: str, tag: str, progress: Progress | None = None) -> tuple[Settings, VersionRecord]:
        settings = settings_for(f"{tag}-{name}")
        record = ingest(
            paths[name], dataset=name, groupbys=["cell_type", "donor"], settings=settings, progress=progress
        )
        return settings, record

    sequential = {name: build(name, "seq") for name in adatas}
    barrier = threading.Barrier(2, timeout=300)
    met: list[str] = []

    def concurrently(name: str) -> tuple[Settings, VersionRecord]:
        def progress(step: str, fraction: float) -> None:
            if step == "compute" and name not in met:
                met.append(name)
                barrier.wait()  # both builds have their builders and are between two slabs

        return build(name, "par", progress)

    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(concurrently, name) for name in adatas}
        parallel = {name: f.result() for name, f in futures.items()}
    assert sorted(met) == ["a", "b"]
    for name in adatas:
        files, entries = _built(*parallel[name])
        assert (files, entries) == _built(*sequential[name]), name
        assert any(f.startswith("views/summary/") for f in files)
        settings, record = parallel[name]
        snap = Snapshot(settings.storage / str(record.path))
        x, obs = np.asarray(adatas[name].X, dtype=np.float64), adatas[name].obs
        groups, got = get_view("summary").query(snap, "donor", "input", np.arange(x.shape[1]), ["sum"])
        for i, g in enumerate(groups):
            np.testing.assert_allclose(got["sum"][i], x[(obs["donor"] == g).to_numpy()].sum(0))
