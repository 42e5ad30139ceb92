"""Honest layers: ingest detects counts, log-normalized and scaled input from the values it
streams (or takes ``input_kind``), records the kind, names each layer's unit, and computes or
withholds fractions expressing and fold changes as the kind allows.

The two pbmc68k-style cases of issue 15: a log1p CP10k input (sparse, as scanpy's
``normalize_total`` + ``log1p`` leave it) whose marker fold changes equal scanpy's
``rank_genes_groups(method="t-test")``, and the same data scaled (dense, with negatives, as
``sc.pp.scale`` leaves pbmc68k's X) with no fraction expressing and no fold changes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from widecube.config import Settings
from widecube.errors import InvalidQuery, InvalidValue
from widecube.pipeline import ingest
from widecube.query import Widecube

pytestmark = pytest.mark.slow

TYPES = ["B", "CD14 Mono", "NK", "T"]


def pbmc_counts(n_cells: int = 400, n_genes: int = 50, seed: int = 3) -> ad.AnnData:
    """Counts with four cell types, each with its own up-regulated genes (as in PBMCs)."""
    rng = np.random.default_rng(seed)
    types = rng.choice(TYPES, n_cells, p=[0.2, 0.3, 0.15, 0.35])
    base = rng.gamma(0.6, 1.0, n_genes)
    rate = np.tile(base, (n_cells, 1))
    for k, t in enumerate(TYPES):
        rate[types == t, k * 6 : k * 6 + 6] *= 12.0  # markers of type t
    depth = rng.lognormal(0.0, 0.3, n_cells)[:, None]
    x = rng.poisson(rate * depth).astype(np.float32)
    obs = pd.DataFrame(
        {"louvain": pd.Categorical(types, categories=TYPES)}, index=[f"AAAC{i:04d}-1" for i in range(n_cells)]
    )
    var = pd.DataFrame(index=[f"G{j}" for j in range(n_genes)])
    return ad.AnnData(x, obs=obs, var=var)


def log_normalized(counts: ad.AnnData) -> ad.AnnData:
    """log1p CP10k, sparse float32: scanpy's normalize_total + log1p."""
    out = counts.copy()
    out.X = sp.csr_matrix(out.X)
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    out.X = sp.csr_matrix(out.X, dtype=np.float32)
    out.uns.pop("log1p", None)
    return out


def scaled(counts: ad.AnnData) -> ad.AnnData:
    """pbmc68k's X: log1p CP10k, then ``sc.pp.scale`` (dense, zero-centred: negatives)."""
    out = log_normalized(counts)
    out.X = out.X.toarray()
    sc.pp.scale(out)
    out.X = np.asarray(out.X, dtype=np.float32)
    return out


def _ingest(adata: ad.AnnData, tmp_path: Path, settings: Settings, name: str, **kw: object) -> Widecube:
    path = tmp_path / f"{name}.h5ad"
    adata.write_h5ad(path)
    ingest(path, dataset=name, groupbys=["louvain"], settings=settings, **kw)  # type: ignore[arg-type]
    return Widecube(settings)


def scanpy_markers(adata: ad.AnnData) -> pd.DataFrame:
    """scanpy's t-test markers of every group against the rest, one row per (group, gene)."""
    work = adata.copy()
    with warnings.catch_warnings():  # on scaled values scanpy's own fold changes are log2 of negatives
        warnings.simplefilter("ignore", RuntimeWarning)
        sc.tl.rank_genes_groups(work, "louvain", method="t-test", n_genes=adata.n_vars)
    return sc.get.rank_genes_groups_df(work, group=None)


def test_log_normalized_input_is_log1p_and_its_fold_changes_are_scanpys(
    tmp_path: Path, settings: Settings
) -> None:
    adata = log_normalized(pbmc_counts())
    assert sp.issparse(adata.X) and adata.X.min() >= 0  # the input really is log1p CP10k
    wc = _ingest(adata, tmp_path, settings, "logged")
    detail = wc.dataset("logged")
    assert detail["input_kind"] == "log1p"
    assert detail["default_layer"] == "input"
    assert detail["layers"] == [{"name": "input", "kind": "log1p", "unit": "log1p (as given)"}]

    summary = wc.summary("logged", genes=["G0"], groupby="louvain", stats=["mean", "frac_expressing"])
    assert summary["unit"] == "log1p (as given)" and summary["notes"] == {}
    x = adata.X.toarray().astype(np.float64)
    b = (adata.obs["louvain"] == "B").to_numpy()
    assert summary["values"]["frac_expressing"][0, 0] == pytest.approx((x[b, 0] > 0).mean())

    expected = scanpy_markers(adata)
    checked = 0
    for group in TYPES:
        got = pd.DataFrame(wc.markers("logged", groupby="louvain", group=group, limit=100)["markers"])
        want = expected[expected["group"] == group].set_index("names")
        assert len(got) == (x != 0).any(0).sum() > 40  # every gene with a t statistic (one never expressed)
        lfc = want.loc[got["gene"], "logfoldchanges"].to_numpy(np.float64)
        np.testing.assert_allclose(got["logfoldchange"].to_numpy(), lfc, rtol=0, atol=1e-6)
        np.testing.assert_allclose(got["t"].to_numpy(), want.loc[got["gene"], "scores"], rtol=1e-5)
        checked += len(got)
        # the type's own markers lead, with a large fold change (of expm1, not a ratio of logs)
        own = {f"G{TYPES.index(group) * 6 + k}" for k in range(6)}
        assert len(own & set(got["gene"].head(6))) >= 5
        assert got.set_index("gene").loc[sorted(own), "logfoldchange"].min() > 2.5
    assert checked > len(TYPES) * 40
    markers = wc.markers("logged", groupby="louvain", group="B", limit=1)
    assert markers["unit"] == "log1p (as given)" and markers["notes"] == {}
    wc.close()


def test_scaled_dense_input_withholds_fraction_expressing_and_fold_changes(
    tmp_path: Path, settings: Settings
) -> None:
    adata = scaled(pbmc_counts())
    assert isinstance(adata.X, np.ndarray) and adata.X.min() < 0
    wc = _ingest(adata, tmp_path, settings, "scaled")
    detail = wc.dataset("scaled")
    assert detail["input_kind"] == "scaled"
    assert detail["layers"] == [{"name": "input", "kind": "scaled", "unit": "scaled (as given)"}]

    stats = ["mean", "frac_expressing", "mean_expressing", "n_cells"]
    summary = wc.summary("scaled", genes=["G0", "G7"], groupby="louvain", stats=stats)
    assert summary["unit"] == "scaled (as given)"
    assert set(summary["notes"]) == {"frac_expressing", "mean_expressing"}
    assert "zero does not" in summary["notes"]["frac_expressing"]
    assert np.isnan(summary["values"]["frac_expressing"]).all()
    assert np.isnan(summary["values"]["mean_expressing"]).all()
    x = np.asarray(adata.X, dtype=np.float64)
    b = (adata.obs["louvain"] == "B").to_numpy()
    np.testing.assert_allclose(summary["values"]["mean"][0], x[b][:, [0, 7]].mean(0), rtol=1e-6, atol=1e-7)
    aggregate = wc.aggregate(
        "scaled", genes=["G0"], groupby="louvain", stats=["frac_expressing"], filter={"louvain": ["B", "NK"]}
    )
    assert aggregate["source"] == "precomputed" and np.isnan(aggregate["values"]["frac_expressing"]).all()
    computed = wc.aggregate(
        "scaled", genes=["G0"], groupby="louvain", stats=["frac_expressing"], precomputed=False
    )
    assert computed["notes"] == {"frac_expressing": summary["notes"]["frac_expressing"]}
    assert np.isnan(computed["values"]["frac_expressing"]).all()

    expected = scanpy_markers(adata)
    for group in TYPES:
        answer = wc.markers("scaled", groupby="louvain", group=group, limit=100)
        got = pd.DataFrame(answer["markers"])
        assert len(got) > 40
        assert (
            got["logfoldchange"].isna().all() and got["pct_in"].isna().all() and got["pct_out"].isna().all()
        )
        assert set(answer["notes"]) == {"logfoldchange", "pct_in", "pct_out"}
        assert "no fold change" in answer["notes"]["logfoldchange"]
        want = expected[expected["group"] == group].set_index("names").loc[got["gene"], "scores"].to_numpy()
        real = want != 0  # scanpy writes 0 for a NaN t (a group whose float32 values are all one value)
        assert real.sum() > 40
        np.testing.assert_allclose(got["t"].to_numpy()[real], want[real], rtol=1e-4)
    wc.close()


def test_count_input_gets_a_normalized_layer_with_its_unit(tmp_path: Path, settings: Settings) -> None:
    wc = _ingest(pbmc_counts(), tmp_path, settings, "counts")
    detail = wc.dataset("counts")
    assert detail["input_kind"] == "counts" and detail["default_layer"] == "normalized"
    assert detail["layers"] == [
        {"name": "input", "kind": "counts", "unit": "counts"},
        {"name": "normalized", "kind": "log1p", "unit": "log1p CP10k"},
    ]
    assert (
        wc.summary("counts", genes=["G0"], groupby="louvain", stats=["mean"], layer="input")["unit"]
        == "counts"
    )
    with pytest.raises(InvalidQuery, match=r"no layer 'raw' \(the values as given are layer 'input'"):
        wc.summary("counts", genes=["G0"], groupby="louvain", stats=["mean"], layer="raw")
    wc.close()


def test_input_kind_overrides_detection(tmp_path: Path, settings: Settings) -> None:
    counts = pbmc_counts()
    em = counts.copy()
    em.X = em.X * 1.5  # non-integer estimates (as an EM quantifier writes): still counts when declared
    wc = _ingest(em, tmp_path, settings, "em", input_kind="counts")
    detail = wc.dataset("em")
    assert detail["input_kind"] == "counts" and [la["name"] for la in detail["layers"]] == [
        "input",
        "normalized",
    ]
    snap = wc.resolve("em")[1]
    assert snap.manifest["input"]["kind"] == "counts" and snap.manifest["input"]["kind_declared"] is True
    wc.close()

    wc = _ingest(log_normalized(counts), tmp_path, settings, "declared", input_kind="scaled")
    assert wc.dataset("declared")["input_kind"] == "scaled"
    wc.close()

    bad = scaled(counts)
    with pytest.raises(
        InvalidValue, match=r"negative value .* at row \d+ \(cell 'AAAC.*column \d+ .*log1p matrix"
    ):
        _ingest(bad, tmp_path, settings, "bad", input_kind="log1p")
