"""Revocation holds on the next request of every server process: two ``widecube serve``
processes on one catalog (SQLite, PostgreSQL), a client looping requests on both, and the
CLI revoking a grant, then a token, from a third process. No permission cache may answer
from before the commit.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import pytest

from _data import small_adata, write_h5ad
from _pg import postgres_schema
from widecube.access import Actor, Governance
from widecube.catalog import Catalog
from widecube.config import Settings
from widecube.pipeline import Jobs

pytestmark = pytest.mark.subprocess
CLI = Actor.cli("test-admin")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _catalog_url(backend: str) -> Iterator[str]:
    if backend == "postgresql":
        with postgres_schema() as (url, _):
            yield url
    else:
        yield ""


@contextmanager
def _servers(env: dict[str, str], n: int) -> Iterator[list[str]]:
    procs, urls = [], []
    for _ in range(n):
        port = _port()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "widecube.cli", "serve", "--port", str(port), "--no-access-log"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url, proc in zip(urls, procs, strict=True):
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


class Loop:
    """Requests on every server in turn, each recorded with when it was sent."""

    def __init__(self, urls: list[str], token: str) -> None:
        self.urls, self.token = urls, token
        self.seen: list[tuple[float, str, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        clients = [httpx.Client(base_url=u, timeout=30) for u in self.urls]
        headers = {"Authorization": f"Bearer {self.token}"}
        while not self.stop.is_set():
            for url, client in zip(self.urls, clients, strict=True):
                sent = time.monotonic()
                status = client.get("/api/v1/datasets/d1", headers=headers).status_code
                self.seen.append((sent, url, status))
            self.stop.wait(0.005)  # not flat out: the CLI revoking meanwhile needs the cores
        for c in clients:
            c.close()

    def after(self, t: float) -> list[tuple[str, int]]:
        return [(u, s) for sent, u, s in list(self.seen) if sent > t]

    def wait_for(self, n: int) -> None:
        deadline = time.monotonic() + 60
        while len(self.seen) < n:
            assert time.monotonic() < deadline
            time.sleep(0.02)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_revocations_hold_on_the_next_request_of_every_process(tmp_path: Path, backend: str) -> None:
    with _catalog_url(backend) as url:
        settings = Settings(storage=tmp_path / "store", catalog_url=url, auth=True)
        source = write_h5ad(small_adata(), tmp_path / "d.h5ad")
        with Catalog(settings.catalog_url) as catalog:
            Jobs(settings, catalog).ingest(source, dataset="d1", groupbys=["donor"], actor=CLI)
            gov = Governance(catalog, auth=True)
            gov.grant("d1", "rita", "reader", actor=CLI)
            issued = gov.create_token(user="rita", scope="read", actor=CLI)
        env = {
            **os.environ,
            "WIDECUBE_STORAGE": str(settings.storage),
            "WIDECUBE_CATALOG_URL": settings.catalog_url,
            "WIDECUBE_AUTH": "true",
            "WIDECUBE_SERVE_JOBS": "false",
            "WIDECUBE_RATE_LIMIT": "1000000/minute",
        }

        def cli(*args: str) -> None:
            subprocess.run(
                [sys.executable, "-m", "widecube.cli", *args], env=env, check=True, capture_output=True
            )

        with _servers(env, 2) as urls:
            loop = Loop(urls, issued.text)
            loop.thread.start()
            try:
                loop.wait_for(20)
                assert {s for _, _, s in loop.seen} == {200}
                cli("revoke", "d1", "rita")  # the grant: the dataset disappears for her
                done = time.monotonic()
                n = len(loop.seen)
                loop.wait_for(n + 20)
                hidden = loop.after(done)
                assert {u for u, _ in hidden} == set(urls)
                assert {s for _, s in hidden} == {404}, hidden[:10]
                cli("grant", "d1", "rita", "reader")
                back = time.monotonic()
                loop.wait_for(len(loop.seen) + 20)
                assert {s for _, s in loop.after(back)} == {200}
                cli("tokens", "revoke", issued.record.id)  # the token: refused everywhere
                revoked = time.monotonic()
                loop.wait_for(len(loop.seen) + 20)
                refused = loop.after(revoked)
                assert {u for u, _ in refused} == set(urls)
                assert {s for _, s in refused} == {401}, refused[:10]
            finally:
                loop.stop.set()
                loop.thread.join()
