"""A view's skeleton written through memory, with elements seen before copied instead of
written again (``snapshot._writer``), is byte for byte what ``anndata.io.write_zarr`` writes
into a folder, and reads back with ``anndata.read_zarr`` as the AnnData it was given."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
from zarr.codecs import ZstdCodec

from widecube.snapshot import SnapshotWriter, checked

GENES = pd.DataFrame(index=pd.Index([f"Gene{j}" for j in range(300)]))


def _groups(column: str, names: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {"n_cells": np.arange(1, len(names) + 1, dtype=np.int64), column: pd.Categorical(names)},
        index=pd.Index([str(i) for i in range(len(names))]),
    )


def _skeletons() -> list[tuple[str, anndata.AnnData]]:
    """What one ingest writes: per grouping and layer a summary and a quantiles skeleton
    (the same groups and genes, a different uns), then a different grouping, then the
    matrix view's cells with no uns: each a mix of elements seen before and new ones."""
    by_type = _groups("cell_type", ["B", "NK", "T"])
    by_donor = _groups("donor", ["d1", "d2"])
    out = []
    for key, groups in (("cell_type", by_type), ("donor", by_donor)):
        for layer in ("input", "normalized"):
            out.append((f"summary/{key}.{layer}.zarr", {"groupby": key, "layer": layer}, groups))
            q = {"groupby": key, "layer": layer, "quantiles": [0.25, 0.5, 0.75]}
            out.append((f"quantiles/{key}.{layer}.zarr", q, groups))
    cells = pd.DataFrame({"cell_type": pd.Categorical(["T", "B"] * 20)}, index=[f"c{i}" for i in range(40)])
    out.append(("matrix.zarr", {}, cells))
    return [(path, anndata.AnnData(obs=obs.copy(), var=GENES.copy(), uns=uns)) for path, uns, obs in out]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_staged_skeletons_are_what_anndata_writes(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path / "ours", dataset="d", version="v1")
    skeletons = _skeletons()
    assert len(skeletons) == 9
    for path, adata in skeletons:
        writer.write_anndata(path, adata.copy())
    writer.close()
    assert len(writer._elements) > 10, "nothing was remembered: every element was written again"
    for path, adata in skeletons:
        theirs = tmp_path / "theirs" / path
        with warnings.catch_warnings(), anndata.settings.override(zarr_write_format=3):
            warnings.simplefilter("ignore")
            anndata.io.write_zarr(theirs, adata.copy(), compressor=checked(ZstdCodec()))
        expected, got = _tree(theirs), _tree(tmp_path / "ours" / path)
        assert "zarr.json" in expected and "obs/zarr.json" in expected and "var/_index/zarr.json" in expected
        assert sorted(got) == sorted(expected), path
        for name in expected:
            assert got[name] == expected[name], f"{path}/{name}"
        back = anndata.read_zarr(tmp_path / "ours" / path)
        pd.testing.assert_frame_equal(back.obs, adata.obs)
        assert list(back.var_names) == list(GENES.index)
        for key, value in adata.uns.items():
            assert np.array_equal(np.asarray(back.uns[key]), np.asarray(value)), key


def test_layers_are_created_and_consolidated_with_the_skeleton(tmp_path: Path) -> None:
    layers = {"mean": np.float32, "nnz": np.int32}
    writer = SnapshotWriter(tmp_path / "s", dataset="d", version="v1")
    adata = anndata.AnnData(obs=_groups("cell_type", ["a", "b", "c"]), var=GENES.copy())
    arrays = writer.write_anndata("v.zarr", adata, layers=layers, chunk_cols=128)
    assert sorted(arrays) == ["mean", "nnz"]
    assert arrays["mean"].shape == (3, 300) and arrays["mean"].chunks == (3, 128)
    values = np.arange(900, dtype=np.float32).reshape(3, 300)
    writer.put(arrays["mean"], (slice(None), slice(0, 300)), values)
    writer.put(arrays["nnz"], (slice(None), slice(0, 300)), values.astype(np.int32))
    writer.drain()
    writer.close()
    back = anndata.read_zarr(tmp_path / "s" / "v.zarr")  # reads the consolidated metadata
    assert set(back.layers) == {"mean", "nnz"}
    np.testing.assert_array_equal(back.layers["mean"], values)
    np.testing.assert_array_equal(back.layers["nnz"], values.astype(np.int32))
