"""HTTP uploads over a real server: streamed in one request or resumed in chunks, size limit,
sha256 check, and the job each upload becomes (run by the server's worker thread)."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx2 as httpx
import numpy as np
import pytest
import uvicorn

from _data import MakeH5ad, small_adata
from widecube.api import create_app
from widecube.config import Settings

pytestmark = pytest.mark.slow

LIMIT = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(settings: Settings) -> Iterator[tuple[httpx.Client, Settings]]:
    settings = settings.model_copy(update={"upload_max_bytes": LIMIT, "job_poll": 0.1})
    app = create_app(settings, upkeep=False, jobs=True)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.config.port}", timeout=60) as client:
        yield client, settings
    server.should_exit = True
    thread.join(timeout=30)


def finished(client: httpx.Client, job: str, seconds: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while True:
        found = client.get(f"/api/v1/jobs/{job}").json()
        if found["state"] in ("published", "failed") or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def assert_served(client: httpx.Client, dataset: str, adata: object, gene: int = 4) -> None:
    body = {"genes": [f"Gene{gene}"], "groupby": "donor", "stats": ["sum"], "layer": "input"}
    got = client.post(f"/api/v1/datasets/{dataset}/summary", json=body).json()
    x = np.asarray(adata.X)  # type: ignore[attr-defined]
    for g, row in zip(got["groups"], got["values"]["sum"], strict=True):
        assert row[0] == pytest.approx(x[(adata.obs["donor"] == g).to_numpy(), gene].sum())  # type: ignore[attr-defined]


def pieces(data: bytes, size: int = 8192) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_streamed_upload_becomes_a_published_dataset(
    server: tuple[httpx.Client, Settings], make_h5ad: MakeH5ad
) -> None:
    client, settings = server
    adata = small_adata(seed=21)
    data = make_h5ad(adata).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    params = {"filename": "pbmc.h5ad", "dataset": "up", "groupby": ["donor"], "sha256": digest}
    r = client.post("/api/v1/uploads", params=params, content=pieces(data))  # chunked: no Content-Length
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["sha256"] == digest and got["dataset"] == "up" and r.headers["location"] == got["url"]
    job = finished(client, got["job"])
    assert (job["state"], job["source"], job["input"], job["error"]) == (
        "published",
        "upload",
        "pbmc.h5ad",
        None,
    )
    assert_served(client, "up", adata)
    assert not any((settings.storage / "uploads").iterdir())  # the upload went with its job


def test_size_limit_and_sha256_are_enforced(server: tuple[httpx.Client, Settings]) -> None:
    client, settings = server
    big = b"x" * (LIMIT + 1)
    declared = client.post("/api/v1/uploads", params={"filename": "big.h5ad"}, content=big)
    assert declared.status_code == 413 and "more than the limit of 1,048,576" in declared.json()["detail"]
    streamed = client.post("/api/v1/uploads", params={"filename": "big.h5ad"}, content=pieces(big, 65536))
    assert streamed.status_code == 413 and "larger than 1,048,576 bytes" in streamed.json()["detail"]
    wrong = client.post("/api/v1/uploads", params={"filename": "a.h5ad", "sha256": "0" * 64}, content=b"abc")
    assert wrong.status_code == 400
    got = hashlib.sha256(b"abc").hexdigest()
    assert wrong.json()["detail"] == (
        f"a.h5ad: sha256 of the bytes received is {got}, not {'0' * 64} as declared; the upload is discarded"
    )
    start = client.post("/api/v1/uploads/resumable", json={"filename": "big.h5ad", "size": LIMIT + 1})
    assert start.status_code == 413
    assert client.post("/api/v1/uploads", params={"filename": "../x.h5ad"}, content=b"a").status_code == 201
    assert client.get("/api/v1/jobs").json()[0]["input"] == "x.h5ad"  # path parts are dropped
    assert client.post("/api/v1/uploads", params={"filename": ".."}, content=b"a").status_code == 400
    assert client.get("/api/v1/uploads/" + "f" * 32).status_code == 404
    assert len(client.get("/api/v1/jobs").json()) == 1


def test_resumable_upload_survives_a_broken_connection(
    server: tuple[httpx.Client, Settings], make_h5ad: MakeH5ad
) -> None:
    client, _ = server
    adata = small_adata(seed=22)
    data = make_h5ad(adata).read_bytes()
    size = len(data)
    digest = hashlib.sha256(data).hexdigest()
    body = {"filename": "cells.h5ad", "size": size, "sha256": digest, "groupbys": ["donor"]}
    start = client.post("/api/v1/uploads/resumable", json=body)
    assert start.status_code == 201, start.text
    upload = start.json()["upload"]
    assert start.json()["offset"] == 0 and start.headers["location"] == f"/api/v1/uploads/{upload}"
    url = f"/api/v1/uploads/{upload}"
    first = size // 3
    r = client.put(url, content=data[:first], headers={"Content-Range": f"bytes 0-{first - 1}/{size}"})
    assert r.status_code == 200 and r.json()["offset"] == first and not r.json()["complete"]

    def dies_halfway() -> Iterator[bytes]:
        yield data[first : first + 4096]
        raise ConnectionError("the link went down")

    with pytest.raises(Exception, match="the link went down"):
        client.put(url, content=dies_halfway(), headers={"Content-Range": f"bytes {first}-{size - 1}/{size}"})
    skipped = client.put(
        url, content=data[-10:], headers={"Content-Range": f"bytes {size - 10}-{size - 1}/{size}"}
    )
    assert skipped.status_code == 409 and first <= skipped.json()["offset"] <= first + 4096

    deadline = time.monotonic() + 30
    while True:  # resume where the server says the upload stands
        offset = client.get(url).json()["offset"]
        rest = client.put(
            url, content=data[offset:], headers={"Content-Range": f"bytes {offset}-{size - 1}/{size}"}
        )
        if rest.status_code != 409 or time.monotonic() > deadline:  # 409: the broken request still holds it
            break
        time.sleep(0.1)
    assert rest.status_code == 201, rest.text
    job = rest.json()["job"]
    again = client.put(
        url, content=data[-10:], headers={"Content-Range": f"bytes {size - 10}-{size - 1}/{size}"}
    )
    assert again.status_code == 201 and again.json()["job"] == job  # a retried last chunk: same job
    done = finished(client, job)
    assert done["state"] == "published" and done["dataset"] == "cells", done
    assert_served(client, "cells", adata)
    bad_range = client.post("/api/v1/uploads/resumable", json={"filename": "b.h5ad", "size": 10}).headers[
        "location"
    ]
    r = client.put(bad_range, content=b"x", headers={"Content-Range": "bytes 0-0/11"})
    assert r.status_code == 400 and "does not fit an upload of 10 bytes" in r.json()["detail"]


def test_an_upload_carries_dataset_metadata_found_by_search_once_published(
    server: tuple[httpx.Client, Settings], make_h5ad: MakeH5ad
) -> None:
    client, settings = server
    data = make_h5ad(small_adata(n_cells=80, n_genes=10, seed=23)).read_bytes()
    meta = {"title": "Zebrafish fin regeneration", "organism": "Danio rerio", "tags": ["fin", "regen"]}
    params = {"filename": "fin.h5ad", "dataset": "fin", "groupby": ["donor"], "meta": json.dumps(meta)}
    one = client.post("/api/v1/uploads", params=params, content=data)
    assert one.status_code == 201, one.text
    # resumable: the metadata in the JSON body
    body = {
        "filename": "gill.h5ad",
        "size": len(data),
        "dataset": "gill",
        "groupbys": ["donor"],
        "meta": {"title": "Zebrafish gill", "organism": "Danio rerio", "tissue": "gill"},
    }
    start = client.post("/api/v1/uploads/resumable", json=body)
    assert start.status_code == 201, start.text
    last = client.put(
        f"/api/v1/uploads/{start.json()['upload']}",
        content=data,
        headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
    )
    assert last.status_code == 201, last.text
    assert client.get("/api/v1/search", params={"q": "zebrafish"}).json()["total"] == 0  # not yet live
    for job in (one.json()["job"], last.json()["job"]):
        assert finished(client, job)["state"] == "published"
    found = client.get("/api/v1/search", params={"q": "zebrafish"}).json()
    assert [d["name"] for d in found["datasets"]] == ["fin", "gill"]
    assert found["datasets"][0]["metadata"]["tags"] == ["fin", "regen"]
    assert found["datasets"][1]["metadata"]["tissue"] == ["gill"]
    faceted = client.get("/api/v1/datasets", params={"organism": "Danio rerio", "tag": "regen"}).json()
    assert [d["name"] for d in faceted] == ["fin"]


def test_bad_upload_metadata_is_a_422_naming_the_field_and_nothing_is_kept(
    server: tuple[httpx.Client, Settings],
) -> None:
    client, settings = server
    bad = {"filename": "x.h5ad", "dataset": "bad", "meta": json.dumps({"organism": "human", "colour": "red"})}
    one = client.post("/api/v1/uploads", params=bad, content=b"0123")
    assert one.status_code == 422 and "'colour'" in one.json()["detail"], one.text
    assert "'bad'" in one.json()["detail"]  # the dataset it was for
    not_json = client.post("/api/v1/uploads", params={**bad, "meta": "{title"}, content=b"0123")
    assert not_json.status_code == 422 and "meta is not valid JSON" in not_json.json()["detail"]
    start = client.post(
        "/api/v1/uploads/resumable",
        json={"filename": "x.h5ad", "size": 4, "dataset": "bad", "meta": {"tags": [{"nested": 1}]}},
    )
    assert start.status_code == 422 and "tags" in start.json()["detail"], start.text
    uploads = settings.storage / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())
    assert client.get("/api/v1/jobs").json() == []
    assert client.get("/api/v1/datasets/bad/metadata").json()["metadata"] == {}
    assert "bad" not in {d["name"] for d in client.get("/api/v1/datasets").json()}
