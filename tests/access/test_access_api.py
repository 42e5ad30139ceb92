"""Governed access over HTTP: every route × every kind of caller, against a live server on
SQLite and on PostgreSQL, plus the UI session (cookie, CSRF) and OIDC bearer tokens.

The table ``ROUTES`` names every route the app registers with what it needs (nothing, a
credential, read, ingest, owner or admin rights) and its success status; ``EXPECTED`` says,
by hand, what each kind of caller gets for each need. ``test_the_table_has_every_route``
fails on a route that is missing from the table, so a new route cannot skip the door.

The dataset ``d1`` is restricted (the default): only grants reach it. Callers: anonymous;
rita (reader of d1), wes (writer), olga (owner), adam (server admin), each with an
admin-scoped token; olga's tokens once revoked, once expired, once narrowed to d2, once
narrowed to scope read.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
import uvicorn

from _data import small_adata, write_h5ad
from _pg import postgres_schema
from widecube.access import Actor, Governance
from widecube.api import create_app
from widecube.catalog import Catalog, VersionStatus
from widecube.config import Settings
from widecube.pipeline import Held, Jobs
from widecube.query import Widecube

# end to end: every test but one reads the module's world (four ingests and a live server)
pytestmark = pytest.mark.slow

CLI = Actor.cli("test-admin")
CALLERS = ("anonymous", "reader", "writer", "owner", "admin", "revoked", "expired", "other", "lower")

# What each caller gets, by what the route needs (written by hand from issue 11's rules):
# a dataset the caller may not see is 404 (its name does not leak), an invalid credential is
# 401 whatever the route, a visible dataset without the role is 403, an anonymous caller who
# might sign in gets 401 for server-wide routes.
OK = "ok"
EXPECTED: dict[str, dict[str, int | str]] = {
    "open": dict.fromkeys(CALLERS, OK),  # no caller involved (health, docs, static files)
    "anyone": {**dict.fromkeys(CALLERS, OK), "revoked": 401, "expired": 401},
    "read": {
        "anonymous": 404,
        "reader": OK,
        "writer": OK,
        "owner": OK,
        "admin": OK,
        "revoked": 401,
        "expired": 401,
        "other": 404,
        "lower": OK,
    },
    "job": {  # a job is shown to those who may ingest into its dataset; to others it is not there
        "anonymous": 404,
        "reader": 404,
        "writer": OK,
        "owner": OK,
        "admin": OK,
        "revoked": 401,
        "expired": 401,
        "other": 404,
        "lower": 404,
    },
    "write": {
        "anonymous": 404,
        "reader": 403,
        "writer": OK,
        "owner": OK,
        "admin": OK,
        "revoked": 401,
        "expired": 401,
        "other": 404,
        "lower": 403,
    },
    "owner": {
        "anonymous": 404,
        "reader": 403,
        "writer": 403,
        "owner": OK,
        "admin": OK,
        "revoked": 401,
        "expired": 401,
        "other": 404,
        "lower": 403,
    },
    "admin": {
        "anonymous": 401,
        "reader": 403,
        "writer": 403,
        "owner": 403,
        "admin": OK,
        "revoked": 401,
        "expired": 401,
        "other": 403,
        "lower": 403,
    },
}


@dataclass
class World:
    url: str
    settings: Settings
    tokens: dict[str, str]
    versions: list[str]  # of d1, oldest first
    gov: Governance
    jobs: Jobs
    catalog: Catalog
    http: httpx.Client
    wc: Widecube
    spare: str  # a verified version of d1, never live: archived and restored by the routes

    def headers(self, caller: str) -> dict[str, str]:
        token = self.tokens.get(caller)
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    def statuses(self) -> dict[str, VersionStatus]:
        """Each version of d1 and its status, read from the catalog's tables: ``current()`` and
        ``get_version()`` may answer from what this process last heard, and on PostgreSQL the
        server's change reaches this connection by NOTIFY, a few milliseconds later (more on a
        loaded machine: two full runs read an old pointer and an old status)."""
        return {v.version: v.status for v in self.catalog.versions("d1")}

    def live(self) -> str:
        (live,) = [v for v, status in self.statuses().items() if status == VersionStatus.PUBLISHED]
        return live

    def other_version(self) -> str:
        live = self.live()
        return next(v for v in self.versions if v != live)


Request = Callable[[World], dict[str, Any]]
"""Builds one request: {"method", "path", and httpx keywords} (it may prepare state first)."""


def _upload_of(world: World, size: int = 10) -> str:
    store = world.jobs.uploads(actor=CLI)
    return store.create("x.h5ad", size=size, sha256=None, params={}, dataset="d1", actor=CLI).id


def _job_of(world: World) -> str:
    path = world.settings.storage.parent / "job-input.h5ad"
    return world.jobs.submit(path, dataset="d1", params={}, actor=CLI).id


def _grant_zed(world: World) -> str:
    world.gov.grant("d1", "user:zed", "reader", actor=CLI)
    return "user:zed"


def _file_link(world: World) -> str:
    """A signed download link to d1's manifest (asked for by its owner)."""
    links = world.http.get(f"{D}/download", headers=world.headers("owner")).json()
    return str(next(f["url"] for f in links["files"] if f["path"] == "manifest.json")).removeprefix(world.url)


def _throwaway_token(world: World) -> str:
    return world.gov.create_token(user="tmp", scope="read", actor=CLI).record.id


def _spare(world: World, archived: bool) -> str:
    """The spare version, archived or hot as the request needs it first."""
    status = world.statuses()[world.spare].value
    if archived and status != "archived":
        world.wc.archive("d1", world.spare, actor=CLI)
    if not archived and status == "archived":
        world.wc.restore("d1", world.spare, actor=CLI)
    return world.spare


def _release(world: World) -> str:
    if "lake-a" not in {r.name for r in world.wc.releases(actor=CLI)}:
        world.wc.create_release("lake-a", ["d1"], actor=CLI)
    return "lake-a"


D = "/api/v1/datasets/d1"
ROUTES: dict[tuple[str, str], tuple[str, int, Request]] = {
    ("GET", "/healthz"): ("open", 200, lambda w: {}),
    ("GET", "/"): ("anyone", 200, lambda w: {}),
    ("GET", "/openapi.json"): ("open", 200, lambda w: {}),
    ("GET", "/docs"): ("open", 200, lambda w: {}),
    ("GET", "/docs/oauth2-redirect"): ("open", 200, lambda w: {}),
    ("GET", "/redoc"): ("open", 200, lambda w: {}),
    ("GET", "/static"): ("open", 200, lambda w: {"path": "/static/js/main.js"}),
    ("GET", "/docs/static"): ("open", 200, lambda w: {"path": "/docs/static/swagger-ui.css"}),
    ("GET", "/api/v1/features"): ("anyone", 200, lambda w: {}),
    ("POST", "/api/v1/session"): ("anyone", 200, lambda w: {"json": {"token": w.tokens["reader"]}}),
    ("DELETE", "/api/v1/session"): ("anyone", 204, lambda w: {}),
    ("GET", "/api/v1/session"): ("anyone", 200, lambda w: {}),
    # not configured on this server (tests/access/test_oidc_login.py covers a configured one)
    ("GET", "/api/v1/session/oidc/login"): ("anyone", 404, lambda w: {}),
    ("GET", "/api/v1/session/oidc/callback"): (
        "anyone",
        404,
        lambda w: {"params": {"code": "x", "state": "y"}},
    ),
    ("GET", "/api/v1/datasets"): ("anyone", 200, lambda w: {}),
    ("GET", "/api/v1/jobs"): ("anyone", 200, lambda w: {}),
    ("GET", "/api/v1/datasets/{name}"): ("read", 200, lambda w: {"path": D}),
    ("GET", "/api/v1/datasets/{name}/versions"): ("read", 200, lambda w: {"path": f"{D}/versions"}),
    ("GET", "/api/v1/datasets/{name}/genes"): ("read", 200, lambda w: {"path": f"{D}/genes"}),
    ("GET", "/api/v1/datasets/{name}/summary"): (
        "read",
        200,
        lambda w: {"path": f"{D}/summary", "params": {"genes": "Gene3", "groupby": "cell_type"}},
    ),
    ("POST", "/api/v1/datasets/{name}/summary"): (
        "read",
        200,
        lambda w: {"path": f"{D}/summary", "json": {"genes": ["Gene3"], "groupby": "cell_type"}},
    ),
    ("POST", "/api/v1/datasets/{name}/aggregate"): (
        "read",
        200,
        lambda w: {"path": f"{D}/aggregate", "json": {"genes": ["Gene3"], "groupby": "donor"}},
    ),
    ("POST", "/api/v1/datasets/{name}/expression"): (
        "read",
        200,
        lambda w: {"path": f"{D}/expression", "json": {"genes": ["Gene3"]}},
    ),
    ("GET", "/api/v1/datasets/{name}/embedding"): ("read", 200, lambda w: {"path": f"{D}/embedding"}),
    ("GET", "/api/v1/datasets/{name}/embedding/{key}"): (
        "read",
        200,
        lambda w: {"path": f"{D}/embedding/X_umap"},
    ),
    ("GET", "/api/v1/datasets/{name}/markers"): (
        "read",
        200,
        lambda w: {"path": f"{D}/markers", "params": {"groupby": "cell_type", "group": "B"}},
    ),
    ("GET", "/api/v1/datasets/{name}/genes/stats"): (
        "read",
        200,
        lambda w: {"path": f"{D}/genes/stats", "params": {"genes": "Gene3"}},
    ),
    ("POST", "/api/v1/datasets/{name}/genes/stats"): (
        "read",
        200,
        lambda w: {"path": f"{D}/genes/stats", "json": {"genes": ["Gene3"]}},
    ),
    ("GET", "/api/v1/datasets/{name}/cells/stats"): ("read", 200, lambda w: {"path": f"{D}/cells/stats"}),
    ("POST", "/api/v1/datasets/{name}/genes/resolve"): (
        "read",
        200,
        lambda w: {"path": f"{D}/genes/resolve", "json": {"query": ["gene3"]}},
    ),
    ("POST", "/api/v1/datasets/{name}/compare"): (
        "read",
        200,
        lambda w: {"path": f"{D}/compare", "json": {"a": {"group": {"groupby": "cell_type", "group": "B"}}}},
    ),
    ("POST", "/api/v1/datasets/{name}/violin"): (
        "read",
        200,
        lambda w: {"path": f"{D}/violin", "json": {"genes": ["Gene3"], "groupby": "cell_type"}},
    ),
    ("POST", "/api/v1/datasets/{name}/dendrogram"): (
        "read",
        200,
        lambda w: {"path": f"{D}/dendrogram", "json": {"genes": ["Gene3", "Gene4"], "groupby": "cell_type"}},
    ),
    ("POST", "/api/v1/datasets/{name}/cells"): (
        "read",
        200,
        lambda w: {"path": f"{D}/cells", "json": {"filter": {"donor": ["d1"]}}},
    ),
    ("GET", "/api/v1/datasets/{name}/obs/{index}"): ("read", 200, lambda w: {"path": f"{D}/obs/3"}),
    ("GET", "/api/v1/jobs/{job_id}"): ("job", 200, lambda w: {"path": f"/api/v1/jobs/{_job_of(w)}"}),
    ("POST", "/api/v1/uploads"): (
        "write",
        201,
        lambda w: {
            "path": "/api/v1/uploads",
            "params": {"filename": "x.h5ad", "dataset": "d1"},
            "content": b"0123",
        },
    ),
    ("POST", "/api/v1/uploads/resumable"): (
        "write",
        201,
        lambda w: {
            "path": "/api/v1/uploads/resumable",
            "json": {"filename": "x.h5ad", "size": 10, "dataset": "d1"},
        },
    ),
    ("GET", "/api/v1/uploads/{upload_id}"): (
        "write",
        200,
        lambda w: {"path": f"/api/v1/uploads/{_upload_of(w)}"},
    ),
    ("PUT", "/api/v1/uploads/{upload_id}"): (
        "write",
        200,
        lambda w: {
            "path": f"/api/v1/uploads/{_upload_of(w)}",
            "content": b"01234",
            "headers": {"Content-Range": "bytes 0-4/10"},
        },
    ),
    ("POST", "/api/v1/admin/datasets/{name}/publish"): (
        "owner",
        200,
        lambda w: {"path": "/api/v1/admin/datasets/d1/publish", "json": {"version": w.other_version()}},
    ),
    ("POST", "/api/v1/admin/datasets/{name}/rollback"): (
        "owner",
        200,
        lambda w: {"path": "/api/v1/admin/datasets/d1/rollback", "json": {"to": w.other_version()}},
    ),
    ("POST", "/api/v1/admin/datasets/{name}/verify"): (
        "owner",
        200,
        lambda w: {"path": "/api/v1/admin/datasets/d1/verify"},
    ),
    ("GET", "/api/v1/admin/datasets/{name}/access"): (
        "owner",
        200,
        lambda w: {"path": "/api/v1/admin/datasets/d1/access"},
    ),
    ("PATCH", "/api/v1/admin/datasets/{name}/access"): (
        "owner",
        200,
        lambda w: {"path": "/api/v1/admin/datasets/d1/access", "json": {"visibility": "restricted"}},
    ),
    ("PUT", "/api/v1/admin/datasets/{name}/grants"): (
        "owner",
        200,
        lambda w: {
            "path": "/api/v1/admin/datasets/d1/grants",
            "json": {"principal": "user:zed", "role": "reader"},
        },
    ),
    ("DELETE", "/api/v1/admin/datasets/{name}/grants/{principal}"): (
        "owner",
        204,
        lambda w: {"path": f"/api/v1/admin/datasets/d1/grants/{_grant_zed(w)}"},
    ),
    # a dry run (the real delete: tests/query/test_gc.py), so d1 stays for the rest of the table
    ("DELETE", "/api/v1/admin/datasets/{name}"): (
        "owner",
        200,
        lambda w: {"path": "/api/v1/admin/datasets/d1", "params": {"dry_run": "true"}},
    ),
    ("POST", "/api/v1/admin/gc"): ("admin", 200, lambda w: {"json": {"dry_run": True}}),
    ("POST", "/api/v1/admin/datasets/{name}/gc"): (
        "owner",
        200,
        lambda w: {"path": "/api/v1/admin/datasets/d1/gc", "json": {"dry_run": True}},
    ),
    ("GET", "/api/v1/admin/inventory"): ("admin", 200, lambda w: {}),
    ("GET", "/api/v1/admin/datasets/{name}/inventory"): (
        "owner",
        200,
        lambda w: {"path": "/api/v1/admin/datasets/d1/inventory"},
    ),
    ("POST", "/api/v1/admin/scrub"): ("admin", 200, lambda w: {}),
    ("POST", "/api/v1/admin/datasets/{name}/scrub"): (
        "owner",
        200,
        lambda w: {"path": "/api/v1/admin/datasets/d1/scrub"},
    ),
    ("GET", "/api/v1/admin/datasets/{name}/retention"): (
        "read",
        200,
        lambda w: {"path": "/api/v1/admin/datasets/d1/retention"},
    ),
    ("PUT", "/api/v1/admin/datasets/{name}/retention"): (
        "owner",
        200,
        lambda w: {"path": "/api/v1/admin/datasets/d1/retention", "json": {"keep_last": 3}},
    ),
    ("POST", "/api/v1/admin/datasets/{name}/pin"): (
        "owner",
        204,
        lambda w: {"path": "/api/v1/admin/datasets/d1/pin", "json": {"version": w.spare, "pinned": False}},
    ),
    ("POST", "/api/v1/admin/datasets/{name}/archive"): (
        "owner",
        200,
        lambda w: {"path": "/api/v1/admin/datasets/d1/archive", "json": {"version": _spare(w, False)}},
    ),
    ("POST", "/api/v1/admin/datasets/{name}/restore"): (
        "owner",
        200,
        lambda w: {"path": "/api/v1/admin/datasets/d1/restore", "json": {"version": _spare(w, True)}},
    ),
    ("GET", "/api/v1/releases"): ("anyone", 200, lambda w: {}),
    ("GET", "/api/v1/releases/{release}"): (
        "read",
        200,
        lambda w: {"path": f"/api/v1/releases/{_release(w)}"},
    ),
    ("POST", "/api/v1/admin/releases"): (
        "owner",
        201,
        lambda w: {"json": {"name": f"lake-{uuid.uuid4().hex[:8]}", "datasets": ["d1"]}},
    ),
    ("POST", "/api/v1/admin/publish-together"): (
        "owner",
        200,
        lambda w: {"json": {"datasets": [f"d1@{w.other_version()}"]}},
    ),
    ("GET", "/api/v1/admin/tokens"): ("admin", 200, lambda w: {}),
    ("POST", "/api/v1/admin/tokens"): ("admin", 201, lambda w: {"json": {"user": "zed", "scope": "read"}}),
    ("DELETE", "/api/v1/admin/tokens/{token_id}"): (
        "admin",
        200,
        lambda w: {"path": f"/api/v1/admin/tokens/{_throwaway_token(w)}"},
    ),
    ("GET", "/api/v1/search"): ("anyone", 200, lambda w: {"params": {"q": "d1"}}),
    ("GET", "/api/v1/datasets/{name}/metadata"): ("read", 200, lambda w: {"path": f"{D}/metadata"}),
    ("PATCH", "/api/v1/admin/datasets/{name}/metadata"): (
        "owner",
        200,
        lambda w: {"path": "/api/v1/admin/datasets/d1/metadata", "json": {"tags": ["access"]}},
    ),
    ("POST", "/api/v1/atlas/expression"): ("anyone", 200, lambda w: {"json": {"genes": ["Gene3"]}}),
    ("GET", "/api/v1/datasets/{name}/download"): ("read", 200, lambda w: {"path": f"{D}/download"}),
    # the signed link is the credential: whoever holds it downloads (a bad bearer is still a 401)
    ("GET", "/api/v1/files/{token}/{path}"): ("anyone", 200, lambda w: {"path": _file_link(w)}),
    ("GET", "/api/v1/audit"): ("admin", 200, lambda w: {}),
    ("POST", "/api/v1/admin/audit/verify"): ("admin", 200, lambda w: {}),
}


def _registered(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route: the OpenAPI document's, and the ones outside it."""
    found = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
    for route in app.routes:
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if path is None:
            continue
        if methods is None:  # a mount (the UI's static files)
            found.add(("GET", path))
        else:
            found |= {(m, path) for m in methods if m != "HEAD"}
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _input(root: Path) -> Path:
    adata = small_adata()
    adata.obsm["X_umap"] = np.random.default_rng(0).normal(size=(adata.n_obs, 2))
    return write_h5ad(adata, root / "d.h5ad")


@contextmanager
def _no_schema() -> Iterator[tuple[str, None]]:
    yield "", None


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp(f"access-{request.param}")
    with postgres_schema() if request.param == "postgresql" else _no_schema() as (url, _):
        settings = Settings(
            storage=root / "store",
            catalog_url=url or "",
            auth=True,
            rate_limit="100000/minute",
            archive_storage=root / "cold",
        )
        source = _input(root)
        with Catalog(settings.catalog_url) as catalog:
            jobs = Jobs(settings, catalog)
            versions = [
                jobs.ingest(source, dataset=name, groupbys=["cell_type", "donor"], actor=CLI).version
                for name in ("d1", "d1", "d2")
            ][:2]
            try:
                jobs.ingest(
                    source, dataset="d1", groupbys=["cell_type"], views="summary", hold=True, actor=CLI
                )
                raise AssertionError("--no-publish published")
            except Held as held:
                spare = held.version
            gov = Governance(catalog, auth=True)
            for user, role in (("rita", "reader"), ("wes", "writer"), ("olga", "owner")):
                gov.grant("d1", user, role, actor=CLI)
            gov.grant("d2", "olga", "owner", actor=CLI)
            gov.grant("*", "adam", "admin", actor=CLI)

            def token(user: str, **kw: Any) -> str:
                return gov.create_token(user=user, **{"scope": "admin", **kw}, actor=CLI).text

            tokens = {
                "reader": token("rita"),
                "writer": token("wes"),
                "owner": token("olga"),
                "admin": token("adam"),
                "revoked": token("olga"),
                "expired": token("olga", expires_in=timedelta(milliseconds=1)),
                "other": token("olga", datasets=["d2"]),
                "lower": token("olga", scope="read"),
            }
            revoked_id = tokens["revoked"].split("_")[1]
            gov.revoke_token(revoked_id, actor=CLI)
            port = _free_port()
            app = create_app(settings, upkeep=False, jobs=False)
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.05)
            url_ = f"http://127.0.0.1:{port}"
            httpx.post(
                f"{url_}/api/v1/datasets/d1/genes/resolve", json={"query": []}, timeout=30
            )  # see test_web
            try:
                with (
                    httpx.Client(base_url=url_, timeout=60) as http,
                    contextlib.closing(Widecube(settings)) as wc,
                ):
                    yield World(url_, settings, tokens, versions, gov, jobs, catalog, http, wc, spare)
            finally:
                server.should_exit = True
                thread.join()


def test_the_table_has_every_route(world: World) -> None:
    """Every route the app registers is in ROUTES (and nothing stale is), so none skips the door."""
    registered = _registered(create_app(world.settings, upkeep=False, jobs=False))
    assert len(registered) > 40
    assert registered == set(ROUTES)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", sorted(ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_every_route_for_every_caller(world: World, route: tuple[str, str], caller: str) -> None:
    need, success, build = ROUTES[route]
    expected = EXPECTED[need][caller]
    want = success if expected == OK else expected
    request = build(world)
    method, path = route[0], request.pop("path", route[1])
    headers = {**request.pop("headers", {}), **world.headers(caller)}
    answer = world.http.request(method, path, headers=headers, **request)
    world.http.cookies.clear()  # a sign-in's cookie must not make the next caller signed in
    assert answer.status_code == want, (caller, route, answer.text[:300])
    if want == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    if want in (401, 403, 404):
        body = answer.json()["detail"]
        assert "wc_" not in body  # never a token in an error
    if want == 404 and need != "job":
        assert "d1" not in answer.text or "no dataset named 'd1'" in answer.text


def test_a_hidden_dataset_answers_exactly_like_a_missing_one(world: World) -> None:
    hidden = httpx.get(f"{world.url}/api/v1/datasets/d1", timeout=30)
    missing = httpx.get(f"{world.url}/api/v1/datasets/nosuch", timeout=30)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"].replace("d1", "X") == missing.json()["detail"].replace("nosuch", "X")


@pytest.mark.parametrize(
    ("caller", "shown"),
    [
        ("anonymous", set()),
        ("reader", {"d1"}),
        ("owner", {"d1", "d2"}),
        ("other", {"d2"}),
        ("admin", {"d1", "d2"}),
    ],
)
def test_listings_show_only_what_the_caller_may_read(world: World, caller: str, shown: set[str]) -> None:
    answer = httpx.get(f"{world.url}/api/v1/datasets", headers=world.headers(caller), timeout=30)
    assert answer.status_code == 200
    assert {d["name"] for d in answer.json()} == shown


@pytest.mark.parametrize(
    ("caller", "shown"),
    [
        ("anonymous", set()),
        ("reader", {"d1"}),
        ("owner", {"d1", "d2"}),
        ("other", {"d2"}),
        ("admin", {"d1", "d2"}),
    ],
)
def test_search_facets_and_atlas_show_only_what_the_caller_may_read(
    world: World, caller: str, shown: set[str]
) -> None:
    for name, organism in (("d1", "human"), ("d2", "mouse")):
        world.catalog.metadata.update(name, {"organism": organism}, by=None)
    organisms = {"d1": "human", "d2": "mouse"}
    found = httpx.get(f"{world.url}/api/v1/search", headers=world.headers(caller), timeout=30).json()
    assert {d["name"] for d in found["datasets"]} == shown
    assert found["facets"]["organism"] == {organisms[n]: 1 for n in sorted(shown)}
    atlas = httpx.post(
        f"{world.url}/api/v1/atlas/expression",
        json={"genes": ["Gene3"], "layer": "input"},
        headers=world.headers(caller),
        timeout=30,
    ).json()
    assert {d["dataset"] for d in atlas["datasets"]} == shown
    assert sum(atlas["pooled"]["datasets"]) == len(shown) * len(atlas["pooled"]["groups"])


def test_a_public_dataset_is_read_anonymously_and_an_internal_one_by_any_signed_in_user(world: World) -> None:
    world.gov.set_policy("d2", visibility="public", classification="open", actor=CLI)
    try:
        assert httpx.get(f"{world.url}/api/v1/datasets/d2", timeout=30).status_code == 200
        upload = httpx.post(
            f"{world.url}/api/v1/uploads",
            params={"filename": "x.h5ad", "dataset": "d2"},
            content=b"1",
            timeout=30,
        )
        assert upload.status_code == 401  # visible, but writing needs a signed-in writer
        world.gov.set_policy("d2", visibility="internal", actor=CLI)
        assert httpx.get(f"{world.url}/api/v1/datasets/d2", timeout=30).status_code == 404
        assert (
            httpx.get(
                f"{world.url}/api/v1/datasets/d2", headers=world.headers("reader"), timeout=30
            ).status_code
            == 200
        )
    finally:
        world.gov.set_policy("d2", visibility="restricted", actor=CLI)


def test_controlled_data_is_never_public_and_every_read_of_it_is_audited(world: World) -> None:
    owner = world.headers("owner")
    refused = httpx.patch(
        f"{world.url}/api/v1/admin/datasets/d2/access",
        json={"visibility": "public", "classification": "controlled"},
        headers=owner,
        timeout=30,
    )
    assert refused.status_code == 422 and "never be public" in refused.json()["detail"]
    assert world.gov.access("d2", actor=CLI).policy.visibility == "restricted"
    world.gov.set_policy("d2", classification="controlled", actor=CLI)
    try:
        before = len(world.gov.audit(dataset="d2", action="read", limit=10_000, actor=CLI))
        for _ in range(3):
            r = httpx.post(
                f"{world.url}/api/v1/datasets/d2/summary",
                json={"genes": ["Gene3"], "groupby": "donor"},
                headers={**owner, "X-Request-ID": "req-controlled-1"},
                timeout=30,
            )
            assert r.status_code == 200
        rows = world.gov.audit(dataset="d2", action="read", limit=10_000, actor=CLI)[before:]
        assert [(e.event.actor, e.event.outcome, e.event.request_id) for e in rows] == [
            ("olga", "allowed", "req-controlled-1")
        ] * 3
        assert rows[0].event.client == "127.0.0.1" and rows[0].event.via == "token"
        # an open dataset's reads are not logged one by one
        open_before = len(world.gov.audit(dataset="d1", action="read", limit=10_000, actor=CLI))
        httpx.get(f"{world.url}/api/v1/datasets/d1", headers=owner, timeout=30).raise_for_status()
        assert len(world.gov.audit(dataset="d1", action="read", limit=10_000, actor=CLI)) == open_before
    finally:
        world.gov.set_policy("d2", classification="internal", actor=CLI)


def test_state_changes_and_refusals_are_in_the_audit_log(world: World) -> None:
    admin = world.headers("admin")
    target = world.other_version()
    r = httpx.post(
        f"{world.url}/api/v1/admin/datasets/d1/publish",
        json={"version": target},
        headers=world.headers("owner"),
        timeout=60,
    )
    assert r.status_code == 200
    denied = httpx.post(
        f"{world.url}/api/v1/admin/datasets/d1/rollback", json={}, headers=world.headers("reader"), timeout=60
    )
    assert denied.status_code == 403
    bad = httpx.get(
        f"{world.url}/api/v1/datasets", headers={"Authorization": "Bearer wc_000000000000_" + "x" * 43}
    )
    assert bad.status_code == 401
    rows = httpx.get(f"{world.url}/api/v1/audit", params={"limit": 10_000}, headers=admin, timeout=30).json()
    events = [(r["actor"], r["action"], r["dataset"], r["version"], r["outcome"]) for r in rows]
    assert ("olga", "publish", "d1", target, "ok") in events
    assert ("rita", "rollback", "d1", None, "denied") in events
    assert any(
        r["action"] == "authenticate"
        and r["outcome"] == "rejected"
        and r["detail"]["token"] == "000000000000"
        for r in rows
    )
    assert all("x" * 43 not in str(r) for r in rows)  # the presented secret is never logged
    jsonl = httpx.get(
        f"{world.url}/api/v1/audit", params={"format": "jsonl", "limit": 10_000}, headers=admin, timeout=30
    )
    assert jsonl.headers["content-type"].startswith("application/jsonl")
    assert [line for line in jsonl.text.splitlines() if line] and len(jsonl.text.splitlines()) == len(rows)
    check = httpx.post(f"{world.url}/api/v1/admin/audit/verify", headers=admin, timeout=60).json()
    assert check["ok"] and check["rows"] == check["head_seq"] >= len(rows)


def test_an_audit_cursor_past_bigint_is_refused_not_a_500(world: World) -> None:
    admin = world.headers("admin")
    past = httpx.get(f"{world.url}/api/v1/audit", params={"after": 2**63}, headers=admin, timeout=30)
    assert past.status_code == 422, past.text  # the document's bound (found by the contract hunt: a 500)
    last = httpx.get(f"{world.url}/api/v1/audit", params={"after": 2**63 - 1}, headers=admin, timeout=30)
    assert last.status_code == 200 and last.json() == []


def test_a_revoked_grant_holds_on_the_next_request(world: World) -> None:
    world.gov.grant("d2", "rita", "reader", actor=CLI)
    reader = world.headers("reader")
    assert httpx.get(f"{world.url}/api/v1/datasets/d2", headers=reader, timeout=30).status_code == 200
    world.gov.revoke("d2", "rita", actor=CLI)
    assert httpx.get(f"{world.url}/api/v1/datasets/d2", headers=reader, timeout=30).status_code == 404


@pytest.mark.parametrize("principal", ["user:\u00fe", "group:lab\u00b2", "user:jos\u00e9"])
def test_a_name_the_document_refuses_is_refused(world: World, principal: str) -> None:
    """The published pattern is ECMA-262 (``\\w`` there is ASCII); the server agrees with it,
    whatever Python's or pydantic's ``\\w`` would have let through."""
    doc = httpx.get(f"{world.url}/openapi.json", timeout=30).json()
    body = doc["paths"]["/api/v1/admin/datasets/{name}/grants"]["put"]["requestBody"]["content"]
    ref = body["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    pattern = doc["components"]["schemas"][ref]["properties"]["principal"]["pattern"]
    assert re.fullmatch(pattern, principal, re.ASCII) is None  # the document says: invalid
    answer = httpx.put(
        f"{world.url}/api/v1/admin/datasets/d1/grants",
        json={"principal": principal, "role": "reader"},
        headers=world.headers("owner"),
        timeout=30,
    )
    assert answer.status_code == 422, answer.text
    assert principal not in {g.principal for g in world.catalog.access.grants(dataset="d1")}


def test_the_ui_session_cookie_is_strict_and_state_changes_need_the_csrf_header(world: World) -> None:
    with httpx.Client(base_url=world.url, timeout=30) as browser:
        signed = browser.post("/api/v1/session", json={"token": world.tokens["owner"]})
        assert signed.status_code == 200
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert world.tokens["owner"] not in signed.headers["set-cookie"]  # the cookie never holds the secret
        csrf = signed.json()["csrf"]
        assert signed.json()["user"] == "olga" and signed.json()["via"] == "session"
        assert browser.get("/api/v1/datasets/d1").status_code == 200  # reads: the cookie is enough
        body = {"genes": ["Gene3"], "groupby": "donor"}
        assert browser.post("/api/v1/datasets/d1/summary", json=body).status_code == 403  # no CSRF header
        assert (
            browser.post(
                "/api/v1/datasets/d1/summary", json=body, headers={"X-CSRF-Token": "nope"}
            ).status_code
            == 403
        )
        assert (
            browser.post("/api/v1/datasets/d1/summary", json=body, headers={"X-CSRF-Token": csrf}).status_code
            == 200
        )
        assert browser.get("/api/v1/session").json()["csrf"] == csrf
        bad = {"token": "wc_000000000000_" + "y" * 43}
        assert browser.post("/api/v1/session", json=bad).status_code == 403  # signed in: CSRF first
        assert browser.post("/api/v1/session", json=bad, headers={"X-CSRF-Token": csrf}).status_code == 401
        browser.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
        browser.cookies.clear()
        assert browser.get("/api/v1/datasets/d1").status_code == 404
    # revoking the token ends its sessions
    temp = world.gov.create_token(user="olga", scope="admin", actor=CLI)
    with httpx.Client(base_url=world.url, timeout=30) as browser:
        assert browser.post("/api/v1/session", json={"token": temp.text}).status_code == 200
        assert browser.get("/api/v1/datasets/d1").status_code == 200
        world.gov.revoke_token(temp.record.id, actor=CLI)
        assert browser.get("/api/v1/datasets/d1").status_code == 401


def test_guessing_tokens_is_rate_limited_by_address(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    settings = Settings(storage=tmp_path / "store", auth=True, rate_limit="5/minute")
    with TestClient(create_app(settings, upkeep=False, jobs=False)) as client:
        statuses = [
            client.get(
                "/api/v1/datasets", headers={"Authorization": f"Bearer wc_{i:012x}_{'z' * 43}"}
            ).status_code
            for i in range(7)
        ]
        assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
        limited = client.get("/api/v1/datasets", headers={"Authorization": "Bearer nope"})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0


def test_the_python_client_sends_its_token(world: World) -> None:
    from widecube import Client
    from widecube.errors import AuthenticationFailed, NotFound

    with Client(world.url, token=world.tokens["reader"]) as client:
        assert "d1" in set(client.datasets().index)
        table = client.summary("d1", genes=["Gene3"], groupby="cell_type", stats=["mean"])
        assert len(table) > 0
    with Client(world.url) as anonymous:
        assert "d1" not in set(anonymous.datasets().index)
        with pytest.raises(NotFound):
            anonymous.summary("d1", genes=["Gene3"], groupby="cell_type")
    with Client(world.url, token=world.tokens["revoked"]) as revoked, pytest.raises(AuthenticationFailed):
        revoked.datasets()
