"""Bounded requests over real HTTP: limits and short echoes, heavy queries off the event loop,
POST forms of the long GET queries, upload name checks, expiry and per-client limit, and
client disconnects that are not logged as server errors."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI

from _data import small_adata, write_h5ad
from widecube.api import create_app
from widecube.catalog import JobState
from widecube.config import Settings
from widecube.pipeline import ingest

pytestmark = pytest.mark.slow

GENES = [f"Gene{j}" for j in range(60)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(r.getMessage() + (f" {r.exc_info[1]!r}" if r.exc_info else "") for r in self.records)


@dataclass
class Server:
    client: httpx.Client
    app: FastAPI
    settings: Settings
    port: int
    log: _Records


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A storage root with "pbmc" published, ingested once for the whole module."""
    root = tmp_path_factory.mktemp("bounds")
    ingest(
        write_h5ad(small_adata(seed=5), root / "in.h5ad"),
        dataset="pbmc",
        groupbys=["cell_type", "cell_type,donor"],
        settings=Settings(storage=root / "store"),
    )
    return root / "store"


@pytest.fixture
def server(ingested: Path, settings: Settings) -> Iterator[Server]:
    """A server of its own per test (uploads, limits and logs are per server) on a copy of
    the module's storage root: a copy costs far less than an ingest."""
    settings = settings.model_copy(update={"upload_max_open": 3})
    shutil.copytree(ingested, settings.storage)
    app = create_app(settings, upkeep=False, jobs=False)
    records = _Records()
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "uvicorn.access", "widecube")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(records)
        logger.setLevel(logging.INFO)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="info")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        yield Server(client, app, settings, port, records)
    server.should_exit = True
    thread.join(timeout=30)
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(records)
        logger.setLevel(level)


SUMMARY = "/api/v1/datasets/pbmc/summary"


# -- limits, and errors that echo a short prefix of what was sent ---------------------------


@pytest.mark.parametrize(
    ("body", "field", "limit"),
    [
        ({"genes": ["Gene1"] * 5001, "groupby": "cell_type"}, "genes", "5000 items"),
        ({"genes": ["G" * 257], "groupby": "cell_type"}, "genes.0", "256 characters"),
        ({"genes": ["Gene1"], "groupby": "c" * 1025}, "groupby", "1024 characters"),
        ({"genes": ["Gene1"], "groupby": "cell_type", "stats": ["mean"] * 65}, "stats", "64 items"),
        ({"genes": ["Gene1"], "groupby": "cell_type", "layer": "x" * 300}, "layer", "256 characters"),
        ({"genes": ["Gene1\x00"], "groupby": "cell_type"}, "genes.0", "NUL"),
    ],
)
def test_over_a_limit_is_a_422_naming_the_field(
    server: Server, body: dict[str, object], field: str, limit: str
) -> None:
    r = server.client.post(SUMMARY, json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith(f"body.{field}: ") and limit in detail
    assert len(detail) < 200  # the value itself is not echoed


def test_filters_and_query_parameters_are_bounded(server: Server) -> None:
    c = server.client
    key = "k" * 5000  # an obs column name: in the error's location, cut to 80 characters
    r = c.post(
        "/api/v1/datasets/pbmc/aggregate",
        json={"genes": ["Gene1"], "groupby": "cell_type", "filter": {key: ["T"]}},
    )
    assert r.status_code == 422 and "1024 characters" in r.json()["detail"]
    assert "k" * 80 + "…" in r.json()["detail"] and "k" * 81 not in r.json()["detail"]
    many = {f"c{i}": ["T"] for i in range(101)}
    r = c.post(
        "/api/v1/datasets/pbmc/aggregate", json={"genes": ["Gene1"], "groupby": "cell_type", "filter": many}
    )
    assert r.status_code == 422 and "100 items" in r.json()["detail"]
    r = c.get(SUMMARY, params={"genes": "Gene1", "groupby": "cell_type", "stats": ["mean"] * 65})
    assert r.status_code == 422 and "64 items" in r.json()["detail"]
    r = c.get("/api/v1/datasets/pbmc/genes", params={"prefix": "p" * 257})
    assert r.status_code == 422 and r.json()["detail"].startswith("query.prefix: ")
    r = c.get("/api/v1/datasets/" + "n" * 200)  # not a dataset name ingest allows
    assert r.status_code == 422 and r.json()["detail"].startswith("path.name: ")


def test_unknown_long_values_are_echoed_cut_to_80_characters(server: Server) -> None:
    gene = "Z" * 250  # within the limit, but unknown: the 422 names it by its first 80 characters
    r = server.client.post(SUMMARY, json={"genes": ["Gene1", gene], "groupby": "cell_type"})
    assert r.status_code == 422
    assert r.json()["detail"] == f"dataset 'pbmc' has no gene '{'Z' * 80}…'"
    r = server.client.get(SUMMARY, params={"genes": "Gene1", "groupby": "g" * 1000})
    assert r.status_code == 422 and "'" + "g" * 80 + "…'" in r.json()["detail"]
    assert "g" * 81 not in r.json()["detail"]


def test_a_body_over_2_MiB_is_a_413(server: Server) -> None:
    body = {"genes": ["Gene1"] * 300_000, "groupby": "cell_type"}  # ~2.7 MB of JSON
    r = server.client.post(SUMMARY, json=body)  # refused on its Content-Length (Starlette's text answer)
    assert r.status_code == 413 and r.text == "Content Too Large"
    # without Content-Length (chunked), counted as it arrives
    raw = httpx.Request("POST", "x", json=body).read()
    r = server.client.post(
        SUMMARY,
        content=(raw[i : i + 65536] for i in range(0, len(raw), 65536)),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413 and r.json() == {"detail": "Content Too Large"}


# -- POST forms of the GET queries ------------------------------------------------------------


def test_post_summary_equals_get_summary(server: Server) -> None:
    c = server.client
    query = {
        "genes": ["Gene3", "Gene0", "Gene59"],
        "groupby": "cell_type,donor",
        "stats": ["mean", "var", "median"],
        "layer": "input",
    }
    got, posted = c.get(SUMMARY, params=query), c.post(SUMMARY, json=query)
    assert got.status_code == posted.status_code == 200
    assert got.json() == posted.json() and got.headers["etag"] == posted.headers["etag"]
    assert posted.json()["genes"] == query["genes"]
    # every gene of the dataset, many times: 5,000 names, too many for a URL, fine as a body
    five_thousand = (GENES * 84)[:5000]
    big = c.post(SUMMARY, json={**query, "genes": five_thousand, "stats": ["mean"]})
    assert big.status_code == 200 and len(big.json()["genes"]) == 5000
    other = c.post(
        SUMMARY, json={**query, "genes": five_thousand}, headers={"if-none-match": big.headers["etag"]}
    )
    assert other.status_code == 200  # another query, another ETag
    assert (
        c.post(
            SUMMARY,
            json={**query, "genes": five_thousand, "stats": ["mean"]},
            headers={"if-none-match": big.headers["etag"]},
        ).status_code
        == 304
    )


def test_post_gene_stats_equals_get_gene_stats(server: Server) -> None:
    c = server.client
    path = "/api/v1/datasets/pbmc/genes/stats"
    got = c.get(path, params={"genes": ["Gene4", "Gene1"], "layer": "input"})
    posted = c.post(path, json={"genes": ["Gene4", "Gene1"], "layer": "input"})
    assert got.status_code == posted.status_code == 200
    assert got.json() == posted.json() and got.headers["etag"] == posted.headers["etag"]
    x = np.asarray(small_adata(seed=5).X)
    assert posted.json()["stats"]["mean"] == pytest.approx([x[:, 4].mean(), x[:, 1].mean()])
    assert c.post(path, json={"genes": ["Gene1"] * 5001}).status_code == 422


# -- heavy work off the event loop --------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_health_probe_answers_while_a_heavy_summary_runs(server: Server, method: str) -> None:
    wc = server.app.state.widecube
    real = wc.summary
    started = threading.Event()

    def heavy(*args: object, **kwargs: object) -> object:  # 2 s of pure-Python CPU, holding the GIL
        started.set()
        end = time.perf_counter() + 2.0
        while time.perf_counter() < end:
            pass
        return real(*args, **kwargs)

    wc.summary = heavy
    query = {"genes": ["Gene1"], "groupby": "cell_type"}
    answers: list[int] = []

    def ask() -> None:
        with httpx.Client(base_url=str(server.client.base_url), timeout=60) as c:
            r = c.get(SUMMARY, params=query) if method == "GET" else c.post(SUMMARY, json=query)
            answers.append(r.status_code)

    # Collect this pytest worker's garbage first: after a hundred other tests its heap held
    # 700 K objects (246 K of them garbage), and a full collection of it, which stops every
    # thread, took 0.75 s; landing inside the window it, not the event loop, made the probe wait.
    gc.collect()
    slow = threading.Thread(target=ask)
    slow.start()
    assert started.wait(10)
    t0 = time.perf_counter()
    probe = server.client.get("/healthz")
    waited = time.perf_counter() - t0
    slow.join()
    del wc.summary
    assert probe.status_code == 200 and answers == [200]
    assert waited < 0.5, f"the health probe waited {waited:.2f} s behind a summary"


# -- uploads ----------------------------------------------------------------------------------


def _upload_folders(settings: Settings) -> list[Path]:
    root = settings.storage / "uploads"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []


@pytest.mark.parametrize("name", ["a\x00b.h5ad", "tab\there.h5ad", "x" * 300 + ".h5ad", "..", "dir/"])
def test_an_invalid_upload_name_is_a_400_and_leaves_nothing(server: Server, name: str) -> None:
    c = server.client
    r = c.post("/api/v1/uploads", params={"filename": name}, content=b"0123456789")
    assert r.status_code == 400, r.text
    assert "upload file name" in r.json()["detail"] and len(r.json()["detail"]) < 200
    r = c.post("/api/v1/uploads/resumable", json={"filename": name, "size": 10})
    assert r.status_code == 400, r.text
    assert _upload_folders(server.settings) == []


def test_resumable_uploads_expire(server: Server) -> None:
    c = server.client
    old = c.post("/api/v1/uploads/resumable", json={"filename": "old.h5ad", "size": 100}).json()["upload"]
    assert (
        c.put(f"/api/v1/uploads/{old}", content=b"x" * 10, headers={"content-range": "bytes 0-9/100"}).json()[
            "offset"
        ]
        == 10
    )
    fresh = c.post("/api/v1/uploads/resumable", json={"filename": "new.h5ad", "size": 100}).json()["upload"]
    folder = server.settings.storage / "uploads" / old
    then = time.time() - server.settings.upload_expiry - 60
    for path in (folder, *folder.iterdir()):
        os.utime(path, (then, then))
    done = server.app.state.upkeep.run_once()
    assert done["expired"] == [old]
    assert not folder.exists() and c.get(f"/api/v1/uploads/{old}").status_code == 404
    assert c.get(f"/api/v1/uploads/{fresh}").json()["offset"] == 0  # idle for less: kept
    assert server.app.state.upkeep.run_once()["expired"] == []


def test_open_uploads_are_limited_per_client(server: Server) -> None:
    c = server.client  # upload_max_open is 3 in this fixture
    ids = [
        c.post("/api/v1/uploads/resumable", json={"filename": f"f{i}.h5ad", "size": 4}).json()["upload"]
        for i in range(3)
    ]
    r = c.post("/api/v1/uploads/resumable", json={"filename": "f3.h5ad", "size": 4})
    assert r.status_code == 429 and "3 unfinished uploads" in r.json()["detail"]
    r = c.post("/api/v1/uploads", params={"filename": "one.h5ad"}, content=b"abcd")
    assert r.status_code == 429
    # finishing one frees its place (a finished upload is a job, not an open upload)
    done = c.put(f"/api/v1/uploads/{ids[0]}", content=b"abcd", headers={"content-range": "bytes 0-3/4"})
    assert done.status_code == 201
    assert c.post("/api/v1/uploads/resumable", json={"filename": "f4.h5ad", "size": 4}).status_code == 201
    assert len(_upload_folders(server.settings)) == 4


# -- client disconnects -------------------------------------------------------------------------


def _raw(port: int, head: str, body: bytes = b"", read: int = 0) -> None:
    """Send a request (``body`` possibly shorter than announced), read ``read`` bytes, hang up."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(head.encode() + body)
        if read:
            s.recv(read)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST


def test_client_disconnects_are_not_logged_as_server_errors(server: Server) -> None:
    port = server.port
    # an upload cut off mid-body, in one request and as a chunk of a resumable upload
    _raw(
        port,
        "POST /api/v1/uploads?filename=cut.h5ad HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
        b"y" * 5000,
    )
    up = server.client.post("/api/v1/uploads/resumable", json={"filename": "r.h5ad", "size": 100000}).json()
    _raw(
        port,
        f"PUT /api/v1/uploads/{up['upload']} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
        "Content-Range: bytes 0-99999/100000\r\n\r\n",
        b"z" * 5000,
    )
    # a large answer (a 5,000-gene summary, ~2 MB of JSON), plain and gzipped, left after its first bytes
    body = (
        '{"genes": ' + str((GENES * 84)[:5000]).replace("'", '"') + ', "groupby": "cell_type,donor", '
        '"stats": ["mean", "var", "sum"]}'
    ).encode()
    for encoding in ("identity", "gzip"):
        head = (
            f"POST {SUMMARY} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Accept-Encoding: {encoding}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        _raw(port, head, body, read=100)
    time.sleep(1.0)
    assert server.client.get("/healthz").status_code == 200  # still serving
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "disconnected" not in server.log.text():
        time.sleep(0.1)
    logged = server.log.text()
    assert "Exception in ASGI application" not in logged and "Traceback" not in logged
    assert not [r for r in server.log.records if r.levelno >= logging.ERROR]
    assert "the client disconnected" in logged
    # the one-request upload went; the resumable one kept what arrived, to resume from
    assert server.client.get(f"/api/v1/uploads/{up['upload']}").json()["offset"] > 0
    assert [p.name for p in _upload_folders(server.settings)] == [up["upload"]]


def test_a_finished_upload_expires_only_after_its_job_ended(server: Server) -> None:
    c = server.client
    up = c.post("/api/v1/uploads/resumable", json={"filename": "done.h5ad", "size": 4}).json()["upload"]
    job = c.put(f"/api/v1/uploads/{up}", content=b"abcd", headers={"content-range": "bytes 0-3/4"}).json()[
        "job"
    ]
    folder = server.settings.storage / "uploads" / up
    then = time.time() - server.settings.upload_expiry - 60

    def age() -> None:
        for path in (folder, *folder.iterdir()):
            os.utime(path, (then, then))

    age()
    assert server.app.state.upkeep.run_once()["expired"] == []  # its job waits to run: its input stays
    jobs = server.app.state.widecube.catalog.jobs
    claimed = jobs.claim("test-worker", lease_s=60, job=job)
    assert claimed is not None
    jobs.advance(job, "test-worker", JobState.FAILED, error="test")  # the worker died before cleaning up
    age()
    assert server.app.state.upkeep.run_once()["expired"] == [up] and not folder.exists()
