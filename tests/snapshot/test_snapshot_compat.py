"""Frozen snapshots stay readable: every folder under ``tests/data/snapshots/`` (written by an
earlier widecube, see ``make.py`` there) is read through the view read registry, which picks
each view's reader by the stored ``(encoding, encoding_version)``, and its values are checked
against numpy on the tiny input the snapshot was built from (``tests/data/snapshots/input``).
A snapshot whose encoding nothing reads is a clear :class:`UnsupportedEncoding`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats as st

from widecube.errors import UnsupportedEncoding, VerificationError
from widecube.pipeline import verify_snapshot
from widecube.snapshot import Snapshot
from widecube.views import (
    GenesReader,
    MarkersReader,
    MatrixReader,
    QuantilesReader,
    SummaryReader,
    get_view,
    reader,
    views,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "snapshots"
FROZEN = sorted(p.parent for p in DATA.glob("*/manifest.json"))
GROUPBYS = ("cell_type", "donor")


def tiny_input() -> tuple[np.ndarray, pd.DataFrame, dict[str, np.ndarray]]:
    """(dense counts, obs, {layer: dense values}) of the input every frozen snapshot holds."""
    x = np.load(DATA / "input" / "x.npy").astype(np.float64)
    obs = pd.read_csv(DATA / "input" / "obs.csv", index_col=0)
    total = x.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalized = np.log1p(np.where(total > 0, x * 1e4 / total, 0.0))
    return x, obs, {"input": x, "normalized": normalized}


def test_there_is_a_frozen_snapshot_of_every_view() -> None:
    assert FROZEN, f"no frozen snapshot under {DATA}"
    for root in FROZEN:
        assert set(json.loads((root / "manifest.json").read_text())["views"]) == {v.name for v in views()}


@pytest.fixture(params=FROZEN, ids=[p.name for p in FROZEN])
def frozen(request: pytest.FixtureRequest, tmp_path: Path) -> Snapshot:
    """A frozen snapshot, opened with a decoded cache (arrays are read as the server reads them)."""
    return Snapshot(request.param, cache=tmp_path / "cache")


def test_files_and_invariants_hold(frozen: Snapshot) -> None:
    assert frozen.check() == []  # every file as written, none added
    for name in frozen.manifest["views"]:
        reader(frozen, name).verify()
    verify_snapshot(frozen)


def test_summary_equals_numpy(frozen: Snapshot) -> None:
    _, obs, layers = tiny_input()
    summary = reader(frozen, "summary", SummaryReader)
    stats = ["sum", "sumsq", "nnz", "mean", "var", "frac_expressing", "mean_expressing", "n_cells"]
    assert summary.served() == stats
    genes = np.arange(frozen.n_genes)
    for layer, values in layers.items():
        for key in GROUPBYS:
            groups, got = summary.query(key, layer, genes, stats)
            assert sorted(groups) == sorted(obs[key].unique())
            for i, g in enumerate(groups):
                v = values[(obs[key] == g).to_numpy()]
                n = len(v)
                expressing = (v != 0).sum(0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    want = {
                        "sum": v.sum(0),
                        "sumsq": (v * v).sum(0),
                        "nnz": expressing,
                        "mean": v.mean(0),
                        "var": v.var(0, ddof=1),
                        "frac_expressing": expressing / n,
                        "mean_expressing": np.where(expressing > 0, v.sum(0) / expressing, np.nan),
                        "n_cells": np.full(v.shape[1], n),
                    }
                for stat in stats:
                    np.testing.assert_allclose(
                        got[stat][i], want[stat], rtol=2e-6, atol=1e-9, err_msg=f"{layer} {key}={g} {stat}"
                    )


def test_quantiles_equal_numpy(frozen: Snapshot) -> None:
    _, obs, layers = tiny_input()
    quantiles = reader(frozen, "quantiles", QuantilesReader)
    levels = quantiles.levels()
    assert levels == {"q10": 0.1, "q25": 0.25, "median": 0.5, "q75": 0.75, "q90": 0.9}
    for layer, values in layers.items():
        for key in GROUPBYS:
            groups, got = quantiles.query(key, layer, np.arange(frozen.n_genes), list(levels))
            for i, g in enumerate(groups):
                v = values[(obs[key] == g).to_numpy()]
                for name, q in levels.items():
                    want = np.quantile(v, q, axis=0, method="linear")
                    np.testing.assert_allclose(
                        got[name][i], want, rtol=1e-6, atol=1e-6, err_msg=f"{layer} {key}={g} {name}"
                    )


def test_gene_stats_equal_numpy(frozen: Snapshot) -> None:
    _, _, layers = tiny_input()
    genes = reader(frozen, "genes", GenesReader)
    for layer, v in layers.items():
        t = genes.table(layer)
        assert list(t.index) == [f"Gene{j}" for j in range(v.shape[1])]
        mean, var = v.mean(0), v.var(0, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            dispersion = np.where(mean > 0, var / mean, np.nan)
        want = {
            "n_cells_expressing": (v != 0).sum(0),
            "sum": v.sum(0),
            "sumsq": (v * v).sum(0),
            "mean": mean,
            "var": var,
            "min": v.min(0),
            "max": v.max(0),
            "dispersion": dispersion,
        }
        for column, values in want.items():
            np.testing.assert_allclose(t[column].to_numpy(), values, rtol=1e-9, err_msg=f"{layer} {column}")


def test_markers_equal_scipy(frozen: Snapshot) -> None:
    _, obs, layers = tiny_input()
    markers = reader(frozen, "markers", MarkersReader)
    for layer, values in layers.items():
        for key in GROUPBYS:
            table = markers.table(key, layer)
            for g in obs[key].unique():
                cells = (obs[key] == g).to_numpy()
                t, p = st.ttest_ind(values[cells], values[~cells], equal_var=False)
                p = np.where(np.isnan(p), 1.0, p)
                order = np.argsort(-np.where(np.isnan(t), -np.inf, t), kind="stable")
                rows = table[table["group"] == g]
                assert list(rows["gene"]) == [f"Gene{j}" for j in order]  # every gene: 12 < top
                assert list(rows["rank"]) == list(range(1, len(order) + 1))
                j = order
                np.testing.assert_allclose(rows["t"].to_numpy(), t[j], rtol=1e-6)
                np.testing.assert_allclose(rows["pval"].to_numpy(), p[j], rtol=1e-6)
                padj = st.false_discovery_control(p, method="bh")
                np.testing.assert_allclose(rows["pval_adj"].to_numpy(), padj[j], rtol=1e-6)
                np.testing.assert_allclose(rows["pct_in"].to_numpy(), (values[cells][:, j] != 0).mean(0))
                np.testing.assert_allclose(rows["pct_out"].to_numpy(), (values[~cells][:, j] != 0).mean(0))
                mi, mo = values[cells][:, j].mean(0), values[~cells][:, j].mean(0)
                if layer == "normalized":
                    mi, mo = np.expm1(mi), np.expm1(mo)
                lfc = np.log2((mi + 1e-9) / (mo + 1e-9))
                np.testing.assert_allclose(rows["logfoldchange"].to_numpy(), lfc, rtol=1e-6)


def test_matrix_and_cells_equal_the_input(frozen: Snapshot) -> None:
    x, obs, _ = tiny_input()
    matrix = reader(frozen, "matrix", MatrixReader)
    indptr, indices, data = matrix.csc()
    np.testing.assert_array_equal(sp.csc_matrix((data, indices, indptr), shape=x.shape).toarray(), x)
    assert matrix.target_sum == 1e4
    stored = frozen.table("dataset/obs.parquet")
    assert list(stored.index) == list(obs.index)
    np.testing.assert_allclose(stored["total_counts"].to_numpy(), x.sum(1))
    np.testing.assert_array_equal(stored["n_genes_by_counts"].to_numpy(), (x != 0).sum(1))


def test_describe_through_the_specs(frozen: Snapshot) -> None:
    """What the API lists per view, through the specs' shorthands (as the service reads it)."""
    described = {v.name: v.describe(frozen) for v in views()}
    assert described["summary"]["groupbys"] == list(GROUPBYS)
    assert described["summary"]["layers"] == ["input", "normalized"]  # 'raw' before format 0.3.0
    assert described["quantiles"]["stats"] == ["q10", "q25", "median", "q75", "q90"]
    assert described["markers"] == {
        "layers": ["input", "normalized"],
        "top": 100,
        "ranking": "welch t, descending",
        "skipped": {},
        "foldchange": {"input": "ratio", "normalized": "expm1"},  # counts: both are fold changes
    }
    assert (
        frozen.manifest["layers"] == ["input", "normalized"]
        and frozen.manifest["default_layer"] == "normalized"
    )
    assert described["matrix"]["nnz"] == int((tiny_input()[0] != 0).sum())


def _copy(tmp_path: Path, edit: dict[str, dict[str, str] | None]) -> Snapshot:
    """The first frozen snapshot copied, its manifest's view entries edited (None: removed)."""
    root = tmp_path / "snap"
    shutil.copytree(FROZEN[0], root)
    manifest = json.loads((root / "manifest.json").read_text())
    for view, change in edit.items():
        if change is None:
            del manifest["views"][view]
        else:
            manifest["views"][view].update(change)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return Snapshot(root)


def test_an_unknown_encoding_version_is_a_clear_error(tmp_path: Path) -> None:
    snap = _copy(tmp_path, {"summary": {"encoding_version": "9.0.0"}})
    message = (
        rf"version {snap.version} of dataset 'tiny': view 'summary' is stored as "
        r"widecube-summary 9\.0\.0, which this widecube cannot read \(it reads: widecube-summary 0\.2\.0\)"
    )
    with pytest.raises(UnsupportedEncoding, match=message) as caught:
        reader(snap, "summary")
    assert (caught.value.dataset, caught.value.version, caught.value.view) == (
        "tiny",
        snap.version,
        "summary",
    )
    assert (caught.value.encoding, caught.value.encoding_version) == ("widecube-summary", "9.0.0")
    with pytest.raises(UnsupportedEncoding, match=message):  # the service's path to the same read
        get_view("summary").query(snap, "cell_type", "input", np.arange(2), ["mean"])
    with pytest.raises(VerificationError, match=message):
        verify_snapshot(snap)
    # the other views of the snapshot still read
    assert reader(snap, "genes", GenesReader).table("input").shape[0] == snap.n_genes


def test_an_unknown_encoding_name_and_a_missing_view_are_clear_errors(tmp_path: Path) -> None:
    snap = _copy(tmp_path, {"quantiles": {"encoding": "someone-elses-quantiles"}, "markers": None})
    with pytest.raises(
        UnsupportedEncoding, match=r"view 'quantiles' is stored as someone-elses-quantiles 0\.1\.0"
    ):
        reader(snap, "quantiles", QuantilesReader)
    with pytest.raises(
        UnsupportedEncoding, match=rf"version {snap.version} of dataset 'tiny' has no view 'markers'"
    ):
        reader(snap, "markers", MarkersReader).table("cell_type", "input")
    assert get_view("markers").served(snap) == []  # a view it lacks serves no statistic


def test_a_reader_of_another_view_is_refused(frozen: Snapshot) -> None:
    with pytest.raises(UnsupportedEncoding, match="view 'genes'"):
        reader(frozen, "genes", SummaryReader)


def test_old_markers_of_non_count_input_have_no_fold_change(tmp_path: Path) -> None:
    """markers 0.1.0 took a ratio of the input layer's means whatever the input held: right for
    counts, wrong for log1p input (a ratio of logs), so for non-count input it is withheld."""
    old = next(p for p in FROZEN if json.loads((p / "manifest.json").read_text())["format_version"] < "0.3.0")
    root = tmp_path / "snap"
    shutil.copytree(old, root)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["layers"] == ["raw", "normalized"] and "kind" not in manifest["input"]
    markers = reader(Snapshot(root), "markers", MarkersReader)
    assert (markers.fold_change("input"), markers.fold_change("normalized")) == ("ratio", "expm1")
    manifest["input"]["counts"] = False
    (root / "manifest.json").write_text(json.dumps(manifest))
    markers = reader(Snapshot(root), "markers", MarkersReader)
    assert (markers.fold_change("input"), markers.fold_change("normalized")) == (None, "expm1")
