"""``/aggregate`` and ``/expression``: any subset of cells, against numpy on the input matrix.

The dataset has a one-cell group ('solo'), an empty category ('ghost'), a never-expressed
gene, and a cell without a donor (the ``(missing)`` category), so empty and degenerate
groups are exercised. Every figure is recomputed here with numpy from the input matrix.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from _data import small_adata, write_h5ad
from widecube.api import create_app
from widecube.config import Settings
from widecube.pipeline import ingest
from widecube.query import Widecube
from widecube.snapshot import _cache

pytestmark = pytest.mark.slow

ARROW = "application/vnd.apache.arrow.stream"
MOMENTS = ["sum", "sumsq", "nnz", "n_cells", "mean", "var", "frac_expressing", "mean_expressing"]
QUANTILES = {"median": 0.5, "q10": 0.1, "q25": 0.25, "q75": 0.75, "q90": 0.9}
STATS = [*MOMENTS, *QUANTILES]
GENES = ["Gene3", "Gene0", "Gene59", "Gene17"]


def _input(seed: int) -> ad.AnnData:
    adata = small_adata(seed=seed)
    donor = adata.obs["donor"].astype(object)
    donor.iloc[7] = np.nan
    adata.obs["donor"] = donor.astype("category")
    return adata


class Data:
    def __init__(self, settings: Settings, adata: ad.AnnData, version: str, client: TestClient) -> None:
        self.settings, self.adata, self.version, self.client = settings, adata, version, client
        self.x = np.asarray(adata.X, dtype=np.float64)
        self.lognorm = np.log1p(self.x / np.maximum(self.x.sum(axis=1, keepdims=True), 1) * 1e4)

    def layer(self, name: str) -> np.ndarray:
        return self.x if name == "input" else self.lognorm

    def keep(self, filter: dict[str, list[str]]) -> np.ndarray:
        mask = np.ones(self.adata.n_obs, dtype=bool)
        for column, kept in filter.items():
            mask &= self.label(column).isin(kept).to_numpy()
        return mask

    def label(self, groupby: str) -> Any:
        parts = [self.adata.obs[c].astype(object).fillna("(missing)").astype(str) for c in groupby.split(",")]
        out = parts[0]
        for p in parts[1:]:
            out = out + "_" + p
        return out

    def post(self, route: str, body: dict[str, Any], **kw: Any) -> Any:
        return self.client.post(f"/api/v1/datasets/pbmc/{route}", json=body, **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Data]:
    root = tmp_path_factory.mktemp("aggregate")
    settings = Settings(storage=root / "store")
    adata = _input(31)
    version = ingest(
        write_h5ad(adata, root / "in.h5ad"),
        dataset="pbmc",
        groupbys=["cell_type", "cell_type,donor"],
        settings=settings,
    ).version
    with TestClient(create_app(settings, upkeep=False)) as client:
        yield Data(settings, adata, version, client)


def _expected(values: np.ndarray, stat: str) -> float:
    """One statistic of one group's column, with numpy (NaN where undefined)."""
    n = len(values)
    nnz = int(np.count_nonzero(values))
    if stat in QUANTILES:
        return float(np.quantile(values, QUANTILES[stat], method="linear")) if n else np.nan
    return {
        "sum": float(values.sum()),
        "sumsq": float((values**2).sum()),
        "nnz": float(nnz),
        "n_cells": float(n),
        "mean": float(values.mean()) if n else np.nan,
        "var": float(values.var(ddof=1)) if n > 1 else np.nan,
        "frac_expressing": nnz / n if n else np.nan,
        "mean_expressing": float(values.sum() / nnz) if nnz else np.nan,
    }[stat]


def _check(data: Data, got: dict[str, Any], filter: dict[str, list[str]], groupby: str, layer: str) -> None:
    keep = data.keep(filter)
    labels = data.label(groupby).to_numpy()
    assert set(got["groups"]) == set(labels)  # every group of the grouping, kept or not
    assert got["cells"] == int(keep.sum())
    matrix = data.layer(layer)
    cols = [data.adata.var_names.get_loc(g) for g in got["genes"]]
    for stat in got["values"]:
        expected = np.array(
            [[_expected(matrix[keep & (labels == g), j], stat) for j in cols] for g in got["groups"]]
        )
        actual = np.array(got["values"][stat], dtype=np.float64)  # JSON null → NaN
        rtol = 1e-6 if stat in QUANTILES else 1e-9  # quantiles are float32, as stored
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-12, equal_nan=True, err_msg=stat)


@pytest.mark.parametrize("layer", ["input", "normalized"])
@pytest.mark.parametrize("groupby", ["cell_type", "cell_type,donor", "donor"])
def test_aggregate_over_a_filter_equals_numpy(data: Data, groupby: str, layer: str) -> None:
    filter = {"donor": ["d1", "(missing)"], "cell_type": ["T", "B", "solo", "Mono"]}
    r = data.post(
        "aggregate", {"genes": GENES, "groupby": groupby, "filter": filter, "stats": STATS, "layer": layer}
    )
    assert r.status_code == 200, r.text
    got = r.json()
    # by (cell_type, donor) the filter keeps each group whole or drops it: the stored views answer
    source = "precomputed" if groupby == "cell_type,donor" else "computed"
    assert (got["source"], got["layer"], got["genes"], got["version"]) == (source, layer, GENES, data.version)
    assert got["filter"] == {"cell_type": ["B", "Mono", "T", "solo"], "donor": ["(missing)", "d1"]}
    _check(data, got, filter, groupby, layer)
    empty = [i for i, row in enumerate(got["values"]["n_cells"]) if row[0] == 0]
    assert empty, "the filter should empty some groups"
    assert all(got["values"]["mean"][i] == [None] * len(GENES) for i in empty)


def test_filters_keeping_whole_groups_are_answered_from_the_precomputed_views(data: Data) -> None:
    body = {"genes": GENES, "groupby": "cell_type", "stats": STATS, "layer": "normalized"}
    summary = data.post("summary", body).json()
    for filter in ({}, {"donor": ["d1", "d2", "d3", "(missing)"]}):  # no filter; every cell kept
        got = data.post("aggregate", {**body, "filter": filter}).json()
        assert got["source"] == "precomputed" and got["values"] == summary["values"]
        assert got["groups"] == summary["groups"] and got["cells"] == data.adata.n_obs
    got = data.post("aggregate", {**body, "filter": {"cell_type": ["T", "solo"]}}).json()
    assert got["source"] == "precomputed"
    _check(data, got, {"cell_type": ["T", "solo"]}, "cell_type", "normalized")
    # the on-the-fly path gives the very same numbers as the stored views
    wc = Widecube(data.settings)
    for filter in ({}, {"cell_type": ["T", "solo"]}):
        stored = wc.aggregate("pbmc", genes=GENES, groupby="cell_type", stats=STATS, filter=filter)
        computed = wc.aggregate(
            "pbmc", genes=GENES, groupby="cell_type", stats=STATS, filter=filter, precomputed=False
        )
        assert (stored["source"], computed["source"]) == ("precomputed", "computed")
        for stat in STATS:
            np.testing.assert_array_equal(stored["values"][stat], computed["values"][stat], err_msg=stat)
    wc.close()


def test_a_filter_that_keeps_no_cell_gives_empty_groups_not_an_error(data: Data) -> None:
    for filter in ({"donor": []}, {"cell_type": ["ghost"]}, {"cell_type": ["solo"], "donor": []}):
        r = data.post(
            "aggregate", {"genes": GENES, "groupby": "cell_type,donor", "filter": filter, "stats": STATS}
        )
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["cells"] == 0 and got["source"] in ("computed", "precomputed")
        n = len(got["groups"])
        for stat in STATS:
            zero = stat in ("sum", "sumsq", "nnz", "n_cells")
            assert got["values"][stat] == [[0.0 if zero else None] * len(GENES)] * n, stat
    r = data.post("expression", {"genes": ["Gene3"], "filter": {"donor": []}})
    assert r.status_code == 200 and r.json()["cells"] == 0 and r.json()["values"] == {"Gene3": []}


@pytest.mark.parametrize(
    ("route", "body", "message"),
    [
        (
            "aggregate",
            {"filter": {"tissue": ["lung"], "batch": ["b1"]}},
            "no categorical obs column 'batch', 'tissue' to filter on; available: cell_type, donor",
        ),
        (
            "aggregate",
            {"filter": {"donor": ["d1", "d9", "d8"]}},
            "obs column 'donor' of dataset 'pbmc' has no category 'd8', 'd9'",
        ),
        ("aggregate", {"filter": {"score": ["0.5"]}}, "no categorical obs column 'score'"),
        ("aggregate", {"groupby": "tissue"}, "groupby column 'tissue' is not in obs"),
        ("aggregate", {"stats": ["mean", "q99"]}, "unknown stat 'q99'"),
        ("aggregate", {"genes": ["Gene1", "XIST"]}, "no gene 'XIST'"),
        ("aggregate", {"layer": "scaled"}, "no layer 'scaled'"),
        ("expression", {"filter": {"donor": ["d7"]}}, "has no category 'd7'"),
        ("expression", {"genes": ["NOPE"]}, "no gene 'NOPE'"),
    ],
)
def test_unknown_names_are_422_naming_them(
    data: Data, route: str, body: dict[str, Any], message: str
) -> None:
    base: dict[str, Any] = {"genes": ["Gene1"]} | ({"groupby": "cell_type"} if route == "aggregate" else {})
    r = data.post(route, base | body)
    assert r.status_code == 422 and message in r.json()["detail"], r.text


@pytest.mark.parametrize("layer", ["input", "normalized"])
def test_expression_equals_the_matrix_columns_of_the_kept_cells(data: Data, layer: str) -> None:
    genes = ["Gene3", "Gene59", "Gene0"]
    cols = [data.adata.var_names.get_loc(g) for g in genes]
    for filter in ({}, {"cell_type": ["B", "NK"], "donor": ["d2", "(missing)"]}):
        r = data.post("expression", {"genes": genes, "filter": filter, "layer": layer})
        assert r.status_code == 200, r.text
        got = r.json()
        keep = data.keep(filter)
        assert (got["version"], got["layer"], got["cells"]) == (data.version, layer, int(keep.sum()))
        for gene, j in zip(genes, cols, strict=True):
            expected = data.layer(layer)[keep, j].astype(np.float32)
            np.testing.assert_allclose(np.float32(got["values"][gene]), expected, rtol=1e-6)
        table = pa.ipc.open_stream(
            data.post(
                "expression", {"genes": genes, "filter": filter, "layer": layer}, headers={"Accept": ARROW}
            ).content
        ).read_all()
        assert table.column_names == ["cell_id", *genes] and table.num_rows == int(keep.sum())
        assert table["cell_id"].to_pylist() == list(got["cell_ids"])  # the kept cells, first column
        for gene in genes:
            np.testing.assert_array_equal(table[gene].to_numpy(), np.float32(got["values"][gene]))


def test_pinning_etags_304_arrow_and_gzip(tmp_path: Path) -> None:
    settings = Settings(storage=tmp_path / "store")
    inputs = [_input(41), _input(42)]
    v1, v2 = (
        ingest(
            write_h5ad(a, tmp_path / f"v{i}.h5ad"), dataset="pbmc", groupbys=["cell_type"], settings=settings
        ).version
        for i, a in enumerate(inputs)
    )
    body = {
        "genes": ["Gene3", "Gene5"],
        "groupby": "cell_type",
        "filter": {"donor": ["d2", "d1"]},
        "stats": ["sum", "median"],
        "layer": "input",
    }
    with TestClient(create_app(settings, upkeep=False)) as client:
        url = "/api/v1/datasets/pbmc/aggregate"
        live = client.post(url, json=body)
        pinned = client.post(url, json={**body, "version": v1})
        assert live.json()["version"] == v2 and pinned.json()["version"] == v1
        assert live.headers["cache-control"] == "no-cache"
        assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert v1 in pinned.headers["etag"] and live.headers["etag"] != pinned.headers["etag"]
        for response, adata in ((pinned, inputs[0]), (live, inputs[1])):
            x = np.asarray(adata.X, dtype=np.float64)
            keep = adata.obs["donor"].isin(["d1", "d2"]).to_numpy()
            got = response.json()
            t = got["groups"].index("T")
            assert got["values"]["sum"][t][0] == x[keep & (adata.obs["cell_type"] == "T").to_numpy(), 3].sum()
        again = client.post(
            url, json={**body, "version": v1}, headers={"If-None-Match": pinned.headers["etag"]}
        )
        assert again.status_code == 304 and again.content == b""
        reordered = {
            "filter": {"donor": ["d1", "d2", "d1"]},
            **{k: v for k, v in body.items() if k != "filter"},
        }
        same = client.post(url, json={**reordered, "version": v1})
        assert same.headers["etag"] == pinned.headers["etag"]
        other = client.post(url, json={**body, "filter": {"donor": ["d1"]}, "version": v1})
        assert other.headers["etag"] != pinned.headers["etag"]
        arrow = client.post(url, json={**body, "version": v1}, headers={"Accept": ARROW})
        assert arrow.headers["content-type"] == ARROW and arrow.headers["etag"] != pinned.headers["etag"]
        table = pa.ipc.open_stream(arrow.content).read_all()
        meta = table.schema.metadata
        assert meta[b"version"] == v1.encode() and meta[b"source"] == b"computed"
        for stat in ("sum", "median"):
            assert table[stat].to_pylist() == [v for row in pinned.json()["values"][stat] for v in row]
        big = {**body, "genes": [f"Gene{j}" for j in range(60)], "version": v1}
        zipped = client.post(url, json=big, headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip" and zipped.json()["version"] == v1
        expr = client.post(
            "/api/v1/datasets/pbmc/expression", json={"genes": ["Gene3"], "version": v1, "layer": "input"}
        )
        assert expr.headers["cache-control"].endswith("immutable")
        assert expr.json()["values"]["Gene3"] == np.asarray(inputs[0].X, np.float32)[:, 3].tolist()
        assert client.get("/api/v1/features").json() == {"aggregate": True, "expression": True}


def test_the_cache_decodes_big_arrays_in_bands_into_a_memory_map(
    data: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zarr

    monkeypatch.setattr(_cache, "DECODE_BAND_BYTES", 256)  # many bands even on this small matrix
    wc = Widecube(Settings(storage=data.settings.storage, cache=data.settings.storage / "other-cache"))
    _, snap = wc.resolve("pbmc")
    for name in ("data", "indices", "indptr"):
        path = f"views/matrix.zarr/X/{name}"
        got = snap.array(path)
        # a plain ndarray over the file's map (memmap's own indexing is slow), read-only
        assert isinstance(got.base, np.memmap) and not got.flags.writeable
        np.testing.assert_array_equal(got, zarr.open_array(snap.file(path), mode="r")[...])
    folder = data.settings.storage / "other-cache"  # no temporary file is left (lock files stay, empty)
    kept = (".npy", ".lock", ".crc32c")  # each .npy has its checksum sidecar
    leftovers = [p.name for p in folder.rglob("*") if p.is_file() and p.suffix not in kept]
    assert leftovers == []
    wc.close()


def test_bands_of_genes_on_several_threads_give_the_same_answer(
    data: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    from widecube.query import aggregate

    monkeypatch.setattr(aggregate.os, "cpu_count", lambda: 3)
    wc = Widecube(data.settings)
    query = {"genes": GENES, "groupby": "cell_type", "stats": STATS, "filter": {"cell_type": ["T", "solo"]}}
    one = wc.aggregate("pbmc", **query, precomputed=False)
    monkeypatch.setattr(aggregate, "PARALLEL_VALUES", 2)  # every query is "large": 3 bands
    assert len(aggregate._bands(np.array([5, 9, 1, 7]))) == 3
    several = wc.aggregate("pbmc", **query, precomputed=False)
    for stat in STATS:
        np.testing.assert_array_equal(one["values"][stat], several["values"][stat], err_msg=stat)
    _check(data, several, query["filter"], "cell_type", several["layer"])
    wc.close()
