"""The OpenAPI document is true: schemathesis, with every check enabled, against a real server
(uvicorn on a free port) serving a real ingested dataset.

Each operation gets generated requests, valid and invalid, and each answer is checked: no
server error (5xx), a status the document lists for that operation, the content type and
the body schema it declares (errors included: ``{"detail": str}``), invalid data refused,
valid data accepted, and the method, header and auth checks. Bounded in time: a few examples
per operation (``MAX_EXAMPLES``), no Hypothesis deadline.

The dataset's names match the examples of the document (dataset ``pbmc``, genes ``CD3E`` and
``MS4A1``, groupby ``cell_type``, embedding ``X_umap``), so the examples phase reaches the 200
answers (a random gene name is a 422).
Valid data may still be answered 422, 400 or 413: the schema cannot list a dataset's genes,
groups or stats (unknown ones are 422), nor what the bytes of an upload hash to (a sha256
that does not match is 400), nor the server's upload size limit (a setting; 413), nor which
tokens are valid and which roles the caller holds (401, 403; 404 for a dataset it may not see),
and a URL of valid parameters may be longer than the HTTP server takes (400: the POST forms
exist for that); ``positive_data_acceptance`` is told so.

With authentication on it runs twice more: anonymously (the dataset is restricted, so hidden)
and with its owner's token.
"""

from __future__ import annotations

import copy
import functools
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import hypothesis
import numpy as np
import pytest
import requests
import schemathesis
import uvicorn

from _data import small_adata, write_h5ad
from widecube.access import Actor, Governance
from widecube.api import create_app
from widecube.catalog import Catalog
from widecube.config import Settings
from widecube.pipeline import ingest

pytestmark = pytest.mark.slow

MAX_EXAMPLES = int(os.environ.get("WIDECUBE_CONTRACT_EXAMPLES", "12"))
"""Per operation and phase; set WIDECUBE_CONTRACT_EXAMPLES for a longer, randomised hunt."""
_FIXED = "WIDECUBE_CONTRACT_EXAMPLES" not in os.environ  # CI: the same examples every run
GENES = ["CD3E", "MS4A1"]
GROUPBYS = ["cell_type", "donor", "cell_type,donor"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Target:
    url: str
    headers: dict[str, str]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """The server in single-user mode (auth off)."""
    yield from _serve("single-user", tmp_path_factory.mktemp("contract"))


@pytest.fixture(scope="module", params=["anonymous", "owner"])
def authed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """The server with authentication, called anonymously (the dataset is restricted: hidden)
    and with its owner's token."""
    yield from _serve(request.param, tmp_path_factory.mktemp("contract"))


def _serve(mode: str, root: Path) -> Iterator[Target]:
    adata = small_adata(seed=3)
    adata.var_names = GENES + [f"Gene{j}" for j in range(2, adata.n_vars)]
    adata.obsm["X_umap"] = np.random.default_rng(0).normal(size=(adata.n_obs, 2)).astype(np.float32)
    auth = mode != "single-user"
    settings = Settings(
        storage=root / "store", upload_max_bytes=1 << 20, auth=auth, rate_limit="1000000/minute"
    )
    ingest(write_h5ad(adata, root / "pbmc.h5ad"), dataset="pbmc", groupbys=GROUPBYS, settings=settings)
    headers = {}
    if mode == "owner":
        with Catalog(settings.catalog_url) as catalog:
            gov = Governance(catalog, auth=True)
            gov.grant("pbmc", "olga", "owner", actor=Actor.cli())
            headers["Authorization"] = (
                "Bearer " + gov.create_token(user="olga", scope="admin", actor=Actor.cli()).text
            )
    app = create_app(settings, upkeep=False, jobs=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield Target(f"http://127.0.0.1:{server.config.port}", headers)
    server.should_exit = True
    thread.join(timeout=30)


_CONFIG = {
    "checks": {
        # a generated body past the server's limit is refused by its size first (413)
        "negative_data_rejection": {
            "expected-statuses": [
                "400",
                "401",
                "403",
                "404",
                "405",
                "406",
                "409",
                "413",
                "415",
                "422",
                "428",
                "429",
                "5xx",
            ]
        },
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "304", "400", "401", "403", "404", "409", "413", "422", "429"]
        },
    },
}


@functools.cache
def _document() -> dict[str, object]:
    """The app's OpenAPI document (it does not depend on the data; the server's is the same,
    as the last test checks)."""
    with tempfile.TemporaryDirectory() as root:
        app = create_app(Settings(storage=Path(root)), upkeep=False, jobs=False)
        doc = app.openapi()
        app.state.widecube.close()
    return doc


def _load(examples: int) -> schemathesis.BaseSchema:
    config = {**_CONFIG, "generation": {"max-examples": examples}}
    document = copy.deepcopy(_document())  # schemathesis may annotate what it is given
    loaded = schemathesis.openapi.from_dict(document, config=schemathesis.Config.from_dict(config))
    loaded.config.checks.update(included_check_names=["all"])
    return loaded


AUTH_EXAMPLES = max(3, MAX_EXAMPLES // 3)
"""With authentication the same operations run again, anonymously and as an owner, with fewer
examples each: the generated data is the single-user run's business; here every route's
answers to both callers must still be what the document says."""


# The schemas are loaded by fixtures, so schemathesis builds each operation's test (and its
# coverage phase's ~7,400 cases) when the test runs, once, instead of at collection, which every
# pytest-xdist worker repeats for every module (about 5 CPU-s each); each operation is reported
# as a subtest named by its method and path.
@pytest.fixture(scope="module")
def document_schema() -> schemathesis.BaseSchema:
    return _load(MAX_EXAMPLES)


@pytest.fixture(scope="module")
def authed_document_schema() -> schemathesis.BaseSchema:
    return _load(AUTH_EXAMPLES)


if not hasattr(pytest.Function, "_nodeid"):
    # schemathesis' lazy loader (4.32.5) names each operation's subtest by rewriting the running
    # item's ``_nodeid``, which pytest 9.2 replaced by a parsed ``_id``: give it the old attribute.
    from _pytest.nodeid import coerce_node_id

    pytest.Function._nodeid = property(  # type: ignore[attr-defined]
        lambda item: item.nodeid, lambda item, value: setattr(item, "_id", coerce_node_id(value))
    )

_SETTINGS = dict(deadline=None, derandomize=_FIXED, suppress_health_check=list(hypothesis.HealthCheck))
schema = schemathesis.pytest.from_fixture("document_schema")
authed_schema = schemathesis.pytest.from_fixture("authed_document_schema")


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    """One keep-alive connection for every generated request (a new session per case costs a
    connection and a pool each: about 30 CPU-s over the module); its cookies are cleared per case
    (``POST /api/v1/session`` sets one), so no case sees another's."""
    with requests.Session() as session:
        yield session


@schema.parametrize()
@hypothesis.settings(max_examples=MAX_EXAMPLES, **_SETTINGS)
def test_every_answer_is_what_the_document_says(
    case: schemathesis.Case, target: Target, http: requests.Session
) -> None:
    http.cookies.clear()
    case.call_and_validate(base_url=target.url, headers=target.headers, session=http)


@authed_schema.parametrize()
@pytest.mark.usefixtures(
    "authed"
)  # the lazy wrapper hides the signature: parametrize by the fixture's params
@hypothesis.settings(max_examples=AUTH_EXAMPLES, **_SETTINGS)
def test_every_answer_with_authentication_is_what_the_document_says(
    case: schemathesis.Case, authed: Target, http: requests.Session
) -> None:
    http.cookies.clear()
    case.call_and_validate(base_url=authed.url, headers=authed.headers, session=http)


def test_the_document_types_bodies_as_sent(target: Target, tmp_path: Path) -> None:
    """The issue's two lies, checked directly: 200 bodies were 'a string', 422 an array."""
    doc = httpx.get(f"{target.url}/openapi.json").json()
    assert doc == _document()
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            for status, answer in op["responses"].items():
                for media, content in answer.get("content", {}).items():
                    if media == "application/json":
                        assert content["schema"] != {"type": "string"}, (method, path, status)
                if status.startswith(("4", "5")):
                    assert answer["content"]["application/json"]["schema"]["$ref"].endswith("Problem")
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert doc["components"]["schemas"]["Problem"]["properties"]["detail"]["type"] == "string"
    summary = doc["paths"]["/api/v1/datasets/{name}/summary"]["get"]["responses"]["200"]["content"]
    assert set(summary) == {"application/json", "application/vnd.apache.arrow.stream"}
