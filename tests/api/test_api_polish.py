"""What an operator or a notebook meets first over HTTP (issue 15): counts as JSON integers,
``stats=mean,median``, every group's markers in one call, cell ids with per-cell values (JSON
and Arrow), the layer's kind and unit in every answer, and ``raw`` refused with the layer's new
name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from _data import small_adata, write_h5ad
from widecube.api import create_app
from widecube.config import Settings
from widecube.errors import InputError
from widecube.pipeline import ingest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, ad.AnnData]]:
    root = tmp_path_factory.mktemp("polish")
    adata = small_adata()
    settings = Settings(storage=root / "store")
    ingest(write_h5ad(adata, root / "in.h5ad"), dataset="pbmc", groupbys=["cell_type"], settings=settings)
    with TestClient(create_app(settings, upkeep=False, jobs=False)) as client:
        yield client, adata


def test_counts_are_integers_and_stats_may_be_comma_separated(served: tuple[TestClient, ad.AnnData]) -> None:
    client, adata = served
    r = client.get(
        "/api/v1/datasets/pbmc/summary",
        params={"genes": ["Gene3"], "groupby": "cell_type", "stats": "mean,n_cells,nnz", "layer": "input"},
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert list(got["values"]) == ["mean", "n_cells", "nnz"]
    assert ".0" not in r.text.split('"n_cells"')[1].split("]]")[0]  # 96, not 96.0
    x = np.asarray(adata.X)
    for i, group in enumerate(got["groups"]):
        rows = (adata.obs["cell_type"] == group).to_numpy()
        assert got["values"]["n_cells"][i] == [int(rows.sum())] and isinstance(
            got["values"]["n_cells"][i][0], int
        )
        assert got["values"]["nnz"][i] == [int((x[rows, 3] != 0).sum())]
    assert got["unit"] == "counts" and got["notes"] == {}
    body = {"genes": ["Gene3"], "groupby": "cell_type", "stats": ["n_cells"], "filter": {"donor": ["d1"]}}
    agg = client.post("/api/v1/datasets/pbmc/aggregate", json=body).json()
    d1 = (adata.obs["donor"] == "d1").to_numpy()
    want = [[int((d1 & (adata.obs["cell_type"] == g).to_numpy()).sum())] for g in agg["groups"]]
    assert agg["values"]["n_cells"] == want and all(isinstance(v[0], int) for v in agg["values"]["n_cells"])


def test_markers_of_every_group_at_once(served: tuple[TestClient, ad.AnnData]) -> None:
    client, _ = served
    every = client.get("/api/v1/datasets/pbmc/markers", params={"groupby": "cell_type", "limit": 5}).json()
    assert every["group"] is None and every["unit"] == "log1p CP10k"
    groups = list(dict.fromkeys(m["group"] for m in every["markers"]))
    assert groups == ["T", "B", "NK", "Mono"]  # grouping order ('solo', one cell, has no t: no rows)
    for group in groups:
        one = client.get(
            "/api/v1/datasets/pbmc/markers", params={"groupby": "cell_type", "group": group, "limit": 5}
        ).json()
        mine = [{k: v for k, v in m.items() if k != "group"} for m in every["markers"] if m["group"] == group]
        assert (
            mine == [{k: v for k, v in m.items() if k != "group"} for m in one["markers"]] and len(mine) == 5
        )


def test_expression_answers_the_cell_ids(served: tuple[TestClient, ad.AnnData]) -> None:
    client, adata = served
    body = {"genes": ["Gene3"], "filter": {"cell_type": ["B"]}, "layer": "input"}
    got = client.post("/api/v1/datasets/pbmc/expression", json=body).json()
    kept = (adata.obs["cell_type"] == "B").to_numpy()
    assert got["cell_ids"] == list(adata.obs_names[kept]) and got["cells"] == int(kept.sum())
    np.testing.assert_array_equal(got["values"]["Gene3"], np.asarray(adata.X)[kept, 3])
    assert got["unit"] == "counts"
    lean = client.post("/api/v1/datasets/pbmc/expression", json={**body, "cell_ids": False}).json()
    assert lean["cell_ids"] is None and lean["values"] == got["values"]


ARROW = "application/vnd.apache.arrow.stream"


def test_expression_in_arrow_carries_the_cell_ids_in_a_first_column(
    served: tuple[TestClient, ad.AnnData], tmp_path: Path
) -> None:
    client, adata = served
    body = {"genes": ["Gene3", "Gene7"], "filter": {"donor": ["d2"]}, "layer": "input"}
    r = client.post("/api/v1/datasets/pbmc/expression", json=body, headers={"Accept": ARROW})
    assert r.status_code == 200 and r.headers["content-type"].startswith(ARROW)
    table = pa.ipc.open_stream(r.content).read_all()
    kept = (adata.obs["donor"] == "d2").to_numpy()
    assert table.column_names == ["cell_id", "Gene3", "Gene7"]
    assert table.schema.metadata[b"cell_ids"] == b"cell_id"
    assert table.schema.field("cell_id").type == pa.string()
    assert table.column("cell_id").to_pylist() == list(adata.obs_names[kept])
    np.testing.assert_array_equal(table.column("Gene7").to_numpy(), np.asarray(adata.X)[kept, 7])
    lean = client.post(
        "/api/v1/datasets/pbmc/expression", json={**body, "cell_ids": False}, headers={"Accept": ARROW}
    )
    lean_table = pa.ipc.open_stream(lean.content).read_all()
    assert lean_table.column_names == ["Gene3", "Gene7"] and b"cell_ids" not in lean_table.schema.metadata
    # a gene called cell_id keeps its name; the ids' column gives way and the metadata says where
    odd = small_adata(40, 4, seed=2)
    odd.var_names = ["cell_id", "cell_id_", "G2", "G3"]
    settings = Settings(storage=tmp_path / "store")
    ingest(write_h5ad(odd, tmp_path / "odd.h5ad"), dataset="odd", views="matrix", settings=settings)
    with TestClient(create_app(settings, upkeep=False, jobs=False)) as other:
        body = {"genes": ["cell_id", "cell_id_", "G3"], "layer": "input"}
        table = pa.ipc.open_stream(
            other.post("/api/v1/datasets/odd/expression", json=body, headers={"Accept": ARROW}).content
        ).read_all()
    assert table.column_names == ["cell_id__", "cell_id", "cell_id_", "G3"]
    assert table.schema.metadata[b"cell_ids"] == b"cell_id__"
    assert table.column("cell_id__").to_pylist() == list(odd.obs_names)
    np.testing.assert_array_equal(table.column("cell_id").to_numpy(), np.asarray(odd.X)[:, 0])


def test_layers_are_named_with_kind_and_unit_and_raw_is_not_a_layer(
    served: tuple[TestClient, ad.AnnData],
) -> None:
    client, _ = served
    detail = client.get("/api/v1/datasets/pbmc").json()
    assert detail["input_kind"] == "counts" and detail["default_layer"] == "normalized"
    assert detail["layers"] == [
        {"name": "input", "kind": "counts", "unit": "counts"},
        {"name": "normalized", "kind": "log1p", "unit": "log1p CP10k"},
    ]
    body = {"genes": ["Gene3"], "groupby": "cell_type", "layer": "raw"}
    r = client.post("/api/v1/datasets/pbmc/summary", json=body)
    assert r.status_code == 422 and "the values as given are layer 'input'" in r.json()["detail"]


def test_http_errors_name_no_server_path(tmp_path: Path) -> None:
    """An error carrying a server path (an input file under the storage) reaches an HTTP client
    with the file's name only; relative paths (snapshot files) stay as they are."""
    app = create_app(Settings(storage=tmp_path / "store"), upkeep=False, jobs=False)

    @app.get("/boom")
    def boom() -> None:
        raise InputError(
            f"{tmp_path}/store/uploads/4f1c/pbmc.h5ad: NaN found at row 3, column 2 (views/x.zarr)"
        )

    with TestClient(app) as client:
        r = client.get("/boom")
    assert r.status_code == 400
    assert r.json()["detail"] == "pbmc.h5ad: NaN found at row 3, column 2 (views/x.zarr)"
