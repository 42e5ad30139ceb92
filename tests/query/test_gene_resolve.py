"""``POST /datasets/{name}/genes/resolve`` over real HTTP: a pasted, mixed list of names.

A 12-gene dataset with hand-picked symbols and Ensembl IDs (one pair of symbols differs
only in case, as human ``MT-CO1`` and mouse ``mt-Co1`` would in a mixed-species input); each
answer is compared with expectations written out by hand.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import anndata as ad
import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn

from _data import write_h5ad
from widecube.api import create_app
from widecube.config import Settings
from widecube.genenames import GeneNames
from widecube.pipeline import ingest

pytestmark = pytest.mark.slow

GENES = {
    "CD3E": "ENSG00000198851",
    "CD3D": "ENSG00000167286",
    "CD3G": "ENSG00000160654",
    "MS4A1": "ENSG00000156738",
    "LYZ": "ENSG00000090382",
    "NKG7": "ENSG00000105374",
    "GNLY": "ENSG00000115523",
    "CST3": "ENSG00000101439",
    "MT-CO1": "ENSG00000198804",
    "mt-Co1": "ENSMUSG00000064351",
    "FCGR3A": "ENSG00000203747",
    "PPBP": "ENSG00000163736",
}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("resolve")
    rng = np.random.default_rng(5)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(rng.choice(["T", "B"], 40))}, index=[f"c{i}" for i in range(40)]
    )
    var = pd.DataFrame({"gene_ids": list(GENES.values())}, index=list(GENES))
    adata = ad.AnnData(rng.poisson(1.0, (40, len(GENES))).astype(np.float64), obs=obs, var=var)
    settings = Settings(storage=root / "store")
    ingest(write_h5ad(adata, root / "in.h5ad"), dataset="tiny", settings=settings)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/api/v1/datasets"
    finally:
        server.should_exit = True
        thread.join()


def _post(url: str, body: object, name: str = "tiny") -> httpx.Response:
    return httpx.post(f"{url}/{name}/genes/resolve", json=body, timeout=30)


def test_a_pasted_mixed_list(url: str) -> None:
    query = [
        "CD3E",
        "ms4a1",
        "ensg00000105374",
        "ENSG00000115523.12",
        "GNLYY",
        "XQZWVJK",
        "lyz",
        "CD3E",
        " ",
        "mt-co1",
        "CD3",
        "ENSMUSG00000064351",
    ]
    r = _post(url, {"query": query})
    assert r.status_code == 200, r.text
    body = r.json()
    # known: canonical names, input order, each once; an ID (any case, with a version suffix)
    # stands for its symbol; the exact mouse ID is not ambiguous
    assert body["genes"] == ["CD3E", "MS4A1", "NKG7", "GNLY", "LYZ", "mt-Co1"]
    assert body["unknown"] == [
        {"query": "GNLYY", "suggestions": ["GNLY"]},  # one typo: the one close symbol
        {"query": "XQZWVJK", "suggestions": []},  # nothing close
        {"query": "mt-co1", "suggestions": ["MT-CO1", "mt-Co1"]},  # ambiguous case: both spellings
        {"query": "CD3", "suggestions": ["CD3E", "CD3D", "CD3G"]},  # equal scores: var order
    ]
    assert len(body["version"]) == 32


def test_exact_case_wins_and_a_pinned_version_is_cached(url: str) -> None:
    first = _post(url, {"query": ["MT-CO1", "mt-Co1"]}).json()
    assert first["genes"] == ["MT-CO1", "mt-Co1"] and first["unknown"] == []
    pinned = _post(url, {"query": ["cd3e"], "version": first["version"]})
    assert pinned.json()["genes"] == ["CD3E"]
    assert "immutable" in pinned.headers["cache-control"]


def test_bounds_and_unknown_dataset(url: str) -> None:
    assert _post(url, {"query": ["CD3E"] * 5_000}).json()["genes"] == ["CD3E"]
    too_many = _post(url, {"query": ["CD3E"] * 5_001})
    assert too_many.status_code == 422 and "query" in too_many.json()["detail"]
    too_long = _post(url, {"query": ["A" * 201]})
    assert too_long.status_code == 422 and "200" in too_long.json()["detail"]
    assert _post(url, {"query": ["CD3E"]}, name="nope").status_code == 404
    assert _post(url, {"genes": ["CD3E"]}).status_code == 422  # the field is `query`


def test_a_dataset_without_gene_ids_resolves_symbols_only() -> None:
    names = GeneNames(["Gene1", "Gene2", "Gene10"])
    assert names.resolve(["gene10", "GENE2", "ENSG00000198851", "Gene3"]) == (
        ["Gene10", "Gene2"],
        [
            {"query": "ENSG00000198851", "suggestions": []},
            # ratio 2·4/10 = 80 for Gene1 and Gene2, 2·4/11 ≈ 72.7 for Gene10 (cut-off 70)
            {"query": "Gene3", "suggestions": ["Gene1", "Gene2", "Gene10"]},
        ],
    )
