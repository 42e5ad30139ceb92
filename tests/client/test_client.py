"""The Python client (widecube.Client over real HTTP, widecube.open in process) against the
REST answers fetched by hand, scanpy.get.aggregate and numpy on the same AnnData."""

from __future__ import annotations

import doctest
import re
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import uvicorn

import widecube
import widecube.client
from _data import small_adata, write_h5ad
from widecube.api import create_app
from widecube.client import Reader, RemoteError
from widecube.config import Settings
from widecube.errors import InputNotFound, InvalidQuery, NotFound
from widecube.pipeline import ingest

pytestmark = pytest.mark.slow

GENES = ["PPBP", "CD3E", "MS4A1", "NKG7", "LYZ", "CD14", "CD79A", "GNLY", "IL7R", "FCGR3A", "ACTB", "HBB"]
MARKERS = {"T": ["CD3E", "IL7R"], "B": ["MS4A1", "CD79A"], "NK": ["NKG7", "GNLY"], "Mono": ["LYZ", "CD14"]}
README = Path(__file__).resolve().parents[2] / "README.md"
DOC_URL, DOC_STORAGE = "http://127.0.0.1:8000", "./widecube-data"  # what the examples say


@dataclass
class Served:
    adata: ad.AnnData  # counts, as ingested
    lognorm: ad.AnnData  # the normalized layer by scanpy: normalize_total(1e4), log1p (float64)
    storage: Path
    url: str
    http: httpx.Client  # plain HTTP to the API, for the REST answers
    client: widecube.Client
    local: Reader


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pbmc_like() -> ad.AnnData:
    """small_adata's counts and edge cases (PPBP in one cell, HBB in none, a one-cell group),
    with gene names, and each type's markers raised in its cells, so that examples read true."""
    adata = small_adata(n_cells=240, n_genes=len(GENES), seed=11)
    adata.var_names = GENES
    x = np.asarray(adata.X)
    for cell_type, genes in MARKERS.items():
        cells = (adata.obs["cell_type"] == cell_type).to_numpy()
        x[np.ix_(cells, adata.var_names.get_indexer(genes))] += 4
    return adata


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("client")
    adata = pbmc_like()
    settings = Settings(storage=root / "store")
    ingest(
        write_h5ad(adata, root / "pbmc.h5ad"),
        dataset="pbmc",
        groupbys=["cell_type", "cell_type,donor"],
        settings=settings,
    )
    lognorm = adata.copy()
    lognorm.X = np.asarray(lognorm.X, dtype=np.float64)
    with warnings.catch_warnings():  # a few of the 240 cells have no counts in 12 genes
        warnings.filterwarnings("ignore", "Some cells have zero counts", UserWarning)
        sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, upkeep=False, jobs=False),
            host="127.0.0.1",
            port=_free_port(),
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{server.config.port}"
    try:
        with (
            httpx.Client(base_url=f"{url}/api/v1", timeout=30) as http,
            widecube.Client(url) as client,
            widecube.open(settings.storage) as local,
        ):
            yield Served(adata, lognorm, settings.storage, url, http, client, local)
    finally:
        server.should_exit = True
        thread.join()


def _aggregate(adata: ad.AnnData, by: str | list[str]) -> ad.AnnData:
    with np.errstate(divide="ignore", invalid="ignore"):  # var of the one-cell group: scanpy divides by 0
        return sc.get.aggregate(adata, by=by, func=["sum", "mean", "var", "count_nonzero"])


def _rest(values: list[list[float | None]]) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in values], dtype=np.float64)


STATS = ["sum", "mean", "var", "nnz", "frac_expressing"]


@pytest.mark.parametrize(("groupby", "layer"), [("cell_type", "input"), ("cell_type,donor", "normalized")])
def test_summary_equals_rest_and_scanpy_aggregate(served: Served, groupby: str, layer: str) -> None:
    genes = ["CD3E", "MS4A1", "HBB", "LYZ"]
    pb = served.client.summary("pbmc", genes, groupby, stats=STATS, layer=layer)
    body = {"genes": genes, "groupby": groupby, "stats": STATS, "layer": layer}
    rest = served.http.post("/datasets/pbmc/summary", json=body).json()
    assert list(pb.obs_names) == rest["groups"] and list(pb.var_names) == genes and pb.X is None
    assert pb.uns == {"dataset": "pbmc", "version": rest["version"], "groupby": groupby, "layer": layer}
    for stat in STATS:
        assert pb.layers[stat].dtype == np.float64
        np.testing.assert_array_equal(pb.layers[stat], _rest(rest["values"][stat]))
    source = served.adata if layer == "input" else served.lognorm
    columns = groupby.split(",")
    ref = _aggregate(source[:, genes], columns if len(columns) > 1 else groupby)
    assert list(pb.obs_names) == list(ref.obs_names)  # observed groups, in category order
    pd.testing.assert_frame_equal(pb.obs[columns], ref.obs[columns], check_categorical=False)
    for ours, theirs in (("sum", "sum"), ("mean", "mean"), ("var", "var"), ("nnz", "count_nonzero")):
        np.testing.assert_allclose(
            pb.layers[ours], ref.layers[theirs], rtol=1e-12, atol=1e-12, equal_nan=True
        )
    n_cells = source.obs.groupby(columns, observed=True).size().to_numpy()
    np.testing.assert_array_equal(pb.obs["n_cells"], n_cells)
    np.testing.assert_allclose(
        pb.layers["frac_expressing"], ref.layers["count_nonzero"] / n_cells[:, None], rtol=1e-12
    )
    assert np.isnan(pb[pb.obs["n_cells"] == 1].layers["var"]).all()  # ddof=1, as scanpy: NaN for one cell


def test_aggregate_with_a_filter_equals_rest_and_scanpy(served: Served) -> None:
    genes, keep = ["NKG7", "CD14", "CD3E"], {"donor": ["d2", "d1"]}
    pb = served.client.aggregate("pbmc", genes, "cell_type", stats=STATS, filter=keep, layer="normalized")
    rest = served.http.post(
        "/datasets/pbmc/aggregate",
        json={"genes": genes, "groupby": "cell_type", "stats": STATS, "filter": keep, "layer": "normalized"},
    ).json()
    mask = served.adata.obs["donor"].isin(keep["donor"]).to_numpy()
    assert pb.uns["cells"] == rest["cells"] == int(mask.sum())
    assert pb.uns["filter"] == rest["filter"] == {"donor": ["d1", "d2"]} and pb.uns["source"] == "computed"
    for stat in STATS:
        np.testing.assert_array_equal(pb.layers[stat], _rest(rest["values"][stat]))
    # scanpy's mask= divides the mean by the whole group's size (scanpy 1.11.5); a subset does not
    ref = _aggregate(served.lognorm[mask, genes], "cell_type")
    kept = pb.obs["n_cells"].to_numpy() > 0
    assert list(pb.obs_names[kept]) == list(ref.obs_names)
    for ours, theirs in (("sum", "sum"), ("mean", "mean"), ("var", "var"), ("nnz", "count_nonzero")):
        np.testing.assert_allclose(
            pb.layers[ours][kept], ref.layers[theirs], rtol=1e-12, atol=1e-12, equal_nan=True
        )
    expected = served.adata.obs.loc[mask, "cell_type"].value_counts(sort=False).reindex(pb.obs_names)
    np.testing.assert_array_equal(pb.obs["n_cells"], expected.to_numpy())


def test_datasets_genes_markers_and_expression_equal_rest(served: Served) -> None:
    wc, http = served.client, served.http
    listing = wc.datasets()
    rest = http.get("/datasets").json()
    assert list(listing.index) == ["pbmc"]
    assert listing.loc["pbmc", "version"] == rest[0]["version"]
    assert (listing.loc["pbmc", "n_cells"], listing.loc["pbmc", "n_genes"]) == (240, len(GENES))
    assert listing.loc["pbmc", "groupbys"] == rest[0]["groupbys"] == ["cell_type", "cell_type,donor"]
    assert listing.loc["pbmc", "created"] == pd.Timestamp(rest[0]["created"])
    assert wc.genes("pbmc") == sorted(GENES, key=str.lower)
    assert (
        wc.genes("pbmc", "cD", limit=2)
        == http.get("/datasets/pbmc/genes", params={"prefix": "cD", "limit": 2}).json()["genes"]
    )
    markers = wc.markers("pbmc", "cell_type", "NK", limit=5)
    rest_markers = http.get(
        "/datasets/pbmc/markers", params={"groupby": "cell_type", "group": "NK", "limit": 5}
    ).json()
    expected = pd.DataFrame(rest_markers["markers"]).astype({c: float for c in markers.columns[1:]})
    pd.testing.assert_frame_equal(markers, expected)
    assert markers.attrs == {k: rest_markers[k] for k in ("dataset", "version", "groupby", "group", "layer")}
    keep = {"cell_type": ["B"], "donor": ["d3"]}
    x = wc.expression("pbmc", ["LYZ", "CD79A"], filter=keep, layer="input")
    mask = (served.adata.obs["cell_type"] == "B").to_numpy() & (served.adata.obs["donor"] == "d3").to_numpy()
    reference = np.asarray(served.adata[mask, ["LYZ", "CD79A"]].X, dtype=np.float32)
    np.testing.assert_array_equal(x.to_numpy(), reference)
    assert list(x.columns) == ["LYZ", "CD79A"] and x.attrs["cells"] == int(mask.sum())
    assert list(x.index) == list(served.adata.obs_names[mask])  # the cells' ids, from the input's obs
    local = served.local.expression("pbmc", ["LYZ", "CD79A"], filter=keep, layer="input")
    pd.testing.assert_frame_equal(local, x)
    rest_x = http.post(
        "/datasets/pbmc/expression", json={"genes": ["LYZ", "CD79A"], "filter": keep, "layer": "input"}
    ).json()
    np.testing.assert_array_equal(x["LYZ"], np.asarray(rest_x["values"]["LYZ"], np.float32))


def _same(a: Any, b: Any) -> None:
    if isinstance(a, ad.AnnData):
        assert isinstance(b, ad.AnnData) and a.uns == b.uns and a.X is None and b.X is None
        pd.testing.assert_frame_equal(a.obs, b.obs)
        pd.testing.assert_frame_equal(a.var, b.var)
        assert list(a.layers) == list(b.layers)
        for name in a.layers:
            np.testing.assert_array_equal(a.layers[name], b.layers[name])
            assert a.layers[name].dtype == b.layers[name].dtype
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
        assert a.attrs == b.attrs
    else:
        assert a == b


@pytest.mark.parametrize(
    ("method", "args", "kw"),
    [
        ("datasets", (), {}),
        ("genes", ("pbmc", "c"), {"limit": 3}),
        (
            "summary",
            ("pbmc", GENES, "cell_type,donor"),
            {"stats": ["mean", "var", "median", "mean_expressing"]},
        ),
        ("summary", ("pbmc", ["ACTB"], "cell_type"), {}),
        (
            "aggregate",
            ("pbmc", ["GNLY", "IL7R"], "donor"),
            {"stats": ["q25", "frac_expressing"], "filter": {"cell_type": ["T", "ghost"]}},
        ),
        ("aggregate", ("pbmc", ["PPBP"], "cell_type"), {"filter": {"cell_type": ["B"]}, "layer": "input"}),
        ("markers", ("pbmc", "cell_type", "Mono"), {"layer": "input"}),
        ("expression", ("pbmc", ["FCGR3A", "CD3E"]), {"filter": {"donor": ["d1"]}}),
    ],
)
def test_open_answers_what_the_server_answers(
    served: Served, method: str, args: tuple[Any, ...], kw: dict[str, Any]
) -> None:
    remote = getattr(served.client, method)(*args, **kw)
    local = getattr(served.local, method)(*args, **kw)
    _same(remote, local)
    if method in ("summary", "aggregate"):
        assert remote.uns["version"] == served.client.datasets().loc["pbmc", "version"]


def test_a_pinned_version_is_named_in_the_answer(served: Served) -> None:
    version = served.client.datasets().loc["pbmc", "version"]
    pb = served.client.summary("pbmc", ["CD3E"], "cell_type", version=version)
    assert pb.uns["version"] == version
    with pytest.raises(NotFound, match="0" * 32):
        served.client.summary("pbmc", ["CD3E"], "cell_type", version="0" * 32)


@pytest.mark.parametrize("face", ["client", "local"])
def test_errors_map_to_widecube_errors_with_the_servers_message(served: Served, face: str) -> None:
    wc = served.client if face == "client" else served.local
    body = {"genes": ["CD3E"], "groupby": "cell_type"}
    cases: list[tuple[type[Exception], Any, dict[str, Any], str]] = [
        (NotFound, lambda: wc.summary("nope", ["CD3E"], "cell_type"), body, "/datasets/nope/summary"),
        (
            InvalidQuery,
            lambda: wc.summary("pbmc", ["CD3E", "XIST"], "cell_type"),
            {**body, "genes": ["CD3E", "XIST"]},
            "/datasets/pbmc/summary",
        ),
        (
            InvalidQuery,
            lambda: wc.aggregate("pbmc", ["CD3E"], "tissue"),
            {**body, "groupby": "tissue"},
            "/datasets/pbmc/aggregate",
        ),
        (
            InvalidQuery,
            lambda: wc.summary("pbmc", ["CD3E"], "cell_type", stats=["q99"]),
            {**body, "stats": ["q99"]},
            "/datasets/pbmc/summary",
        ),
    ]
    for kind, call, rest_body, path in cases:
        detail = served.http.post(path, json=rest_body).json()["detail"]
        with pytest.raises(kind) as caught:
            call()
        assert str(caught.value) == detail
    with pytest.raises(NotFound, match="'nope'"):
        wc.genes("nope")
    with pytest.raises(InvalidQuery, match="no group 'ghost'"):
        wc.markers("pbmc", "cell_type", "ghost")
    with pytest.raises(TypeError, match="list of names"):
        wc.summary("pbmc", ["CD3E"], "cell_type", stats="mean")


def test_token_is_sent_as_bearer_and_other_failures_are_remote_errors() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503, json={"detail": "catalog unavailable"})

    mock = httpx.MockTransport(answer)
    with (
        widecube.Client("http://wc.example/", token="s3cret", transport=mock) as wc,
        pytest.raises(RemoteError, match="HTTP 503 .*catalog unavailable") as caught,
    ):
        wc.datasets()
    assert caught.value.status == 503
    assert seen[0].headers["authorization"] == "Bearer s3cret"
    assert seen[0].headers["accept"] == "application/vnd.apache.arrow.stream"
    assert str(seen[0].url) == "http://wc.example/api/v1/datasets"
    with (
        widecube.Client(f"http://127.0.0.1:{_free_port()}") as nobody,
        pytest.raises(RemoteError, match="cannot reach") as caught,
    ):
        nobody.datasets()
    assert caught.value.status is None
    with pytest.raises(InputNotFound, match="no widecube storage"):
        widecube.open("/nonexistent/widecube-data")


@pytest.mark.subprocess
def test_import_widecube_is_cheap_and_exposes_the_client() -> None:
    import subprocess
    import sys

    heavy = ("pandas", "httpx2", "anndata", "pyarrow")
    code = f"import sys, widecube; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # the client's stack loads on first use only
    assert set(widecube.__all__) == {"Client", "open", "__version__"}
    assert widecube.Client is widecube.client.Client and widecube.open is widecube.client.open


# -- the documentation's examples run, against a real server and the local store -------------


def _run_examples(text: str, name: str, globs: dict[str, Any], served: Served) -> doctest.TestResults:
    """Run the ``>>>`` examples of ``text`` with the documented address and folder replaced by
    the test server's and store's; every example must pass."""
    text = text.replace(DOC_URL, served.url).replace(DOC_STORAGE, str(served.storage))
    test = doctest.DocTestParser().get_doctest(text, {"widecube": widecube, **globs}, name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.subprocess
def test_docstring_examples_run_against_the_server_and_the_local_store(served: Served) -> None:
    for face in (served.client, served.local):
        for name, method in vars(Reader).items():
            if callable(method) and method.__doc__ and ">>>" in method.__doc__:
                failed, attempted = _run_examples(method.__doc__, f"Reader.{name}", {"wc": face}, served)
                assert (failed, attempted > 0) == (0, True), f"{name} on {face!r}"
    failed, attempted = _run_examples(widecube.client.__doc__ or "", "widecube.client", {}, served)
    assert failed == 0 and attempted >= 5
    for documented in (widecube.Client, widecube.open):
        assert (_run_examples(documented.__doc__ or "", documented.__name__, {}, served)) == (0, 1)


@pytest.mark.subprocess
def test_readme_examples_run(served: Served) -> None:
    section = re.search(r"^## Python client\n(.*?)(?=^## )", README.read_text(), re.S | re.M)
    assert section is not None, "README has no 'Python client' section"
    examples = re.sub(r"^```.*$", "", section.group(1), flags=re.M)  # a fence would read as output
    failed, attempted = _run_examples(examples, "README", {}, served)
    assert failed == 0 and attempted >= 5
