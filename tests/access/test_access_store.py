"""Tests of the access tables, the audit log, the door and the governance facade against real
databases: a SQLite file and PostgreSQL (a private schema per test, see ``_pg.py``).

What the catalog wrote is read back with plain SQL; expectations are written by hand.
"""

from __future__ import annotations

import hashlib
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from _pg import postgres_schema
from widecube.access import Actor, Door, Governance, Identities
from widecube.access import tokens as tk
from widecube.catalog import AuditEvent, Catalog, Policy, TokenNotFound
from widecube.catalog._schema import audit as audit_table
from widecube.config import Settings
from widecube.errors import AuthenticationFailed, DatasetNotFound, InvalidQuery, PermissionDenied


@dataclass(frozen=True)
class Backend:
    name: str
    url: str


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path_factory.mktemp('catalog') / 'catalog.sqlite'}")
    else:
        with postgres_schema() as (url, _schema):
            yield Backend("postgresql", url)


@pytest.fixture
def engine(backend: Backend) -> Iterator[sa.Engine]:
    """A plain engine on the same database, to read and tamper with what the catalog wrote."""
    engine = sa.create_engine(backend.url)
    yield engine
    engine.dispose()


@pytest.fixture
def open_catalog(backend: Backend) -> Iterator[Callable[[], Catalog]]:
    opened: list[Catalog] = []

    def open_() -> Catalog:
        opened.append(Catalog(backend.url))
        return opened[-1]

    yield open_
    for catalog in opened:
        catalog.close()


@pytest.fixture
def catalog(open_catalog: Callable[[], Catalog]) -> Catalog:
    return open_catalog()


def sql(engine: sa.Engine, query: str, **params: object) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(query), params)]


def execute(engine: sa.Engine, query: str, **params: object) -> int:
    with engine.begin() as conn:
        return int(conn.execute(sa.text(query), params).rowcount)


def dump(engine: sa.Engine, table: str) -> str:
    """Every cell of ``table`` as text."""
    return "\n".join(" | ".join(str(cell) for cell in row) for row in sql(engine, f"SELECT * FROM {table}"))


def new_token(catalog: Catalog, user: str = "ana", **kw: Any) -> tuple[str, str]:
    """Store a fresh token; its id and secret."""
    minted = tk.mint()
    values: dict[str, Any] = dict(scope="read", datasets=None, expires_at=None, created_by="test")
    values.update(kw)
    catalog.access.create_token(id=minted.id, secret_sha256=minted.sha256, user=user, **values)
    return minted.id, minted.secret


# -- tokens -----------------------------------------------------------------------------------------


def test_token_row_holds_the_hash_not_the_secret(catalog: Catalog, engine: sa.Engine) -> None:
    token_id, secret = new_token(catalog, scope="write", note="for the lab")
    rows = sql(engine, "SELECT id, user_name, secret_sha256, scope FROM tokens")
    assert rows == [(token_id, "ana", hashlib.sha256(secret.encode()).hexdigest(), "write")]
    table = dump(engine, "tokens")
    assert token_id in table  # the dump does hold the row
    assert secret not in table
    assert secret[:16] not in table


def test_token_lookup_and_states(catalog: Catalog) -> None:
    now = datetime.now(UTC)
    active, secret = new_token(catalog, expires_at=now + timedelta(days=1))
    expired, _ = new_token(catalog, expires_at=now - timedelta(seconds=1))
    forever, _ = new_token(catalog)
    found = catalog.access.token(active)
    assert found is not None
    record, stored = found
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    assert (record.id, record.user, record.scope, record.created_by) == (active, "ana", "read", "test")
    assert abs(record.expires_at - (now + timedelta(days=1))) < timedelta(seconds=1)  # type: ignore[operator]
    assert record.state(datetime.now(UTC)) == "active"
    assert catalog.access.token(expired)[0].state(datetime.now(UTC)) == "expired"  # type: ignore[index]
    assert catalog.access.token(forever)[0].state(now + timedelta(days=3650)) == "active"  # type: ignore[index]
    assert record.state(now + timedelta(days=2)) == "expired"


def test_revoke_token(catalog: Catalog, engine: sa.Engine) -> None:
    token_id, _ = new_token(catalog, expires_at=datetime.now(UTC) + timedelta(days=1))
    before = datetime.now(UTC)
    revoked = catalog.access.revoke_token(token_id)
    assert revoked.revoked_at is not None and revoked.revoked_at >= before
    assert revoked.state(datetime.now(UTC)) == "revoked"
    assert catalog.access.token(token_id)[0].state(datetime.now(UTC)) == "revoked"  # type: ignore[index]
    again = catalog.access.revoke_token(token_id)
    assert again.revoked_at == revoked.revoked_at  # the first time is kept
    assert sql(engine, "SELECT count(*) FROM tokens WHERE revoked_at IS NOT NULL") == [(1,)]


def test_unknown_token(catalog: Catalog) -> None:
    assert catalog.access.token("0123456789ab") is None
    with pytest.raises(TokenNotFound, match="0123456789ab"):
        catalog.access.revoke_token("0123456789ab")


@pytest.mark.parametrize(
    ("given", "stored"),
    [(None, None), (["pbmc"], ("pbmc",)), (["b", "a", "b"], ("a", "b")), ([], ())],
)
def test_narrowed_datasets_roundtrip(
    catalog: Catalog, given: list[str] | None, stored: tuple[str, ...] | None
) -> None:
    token_id, _ = new_token(catalog, datasets=given)
    assert catalog.access.token(token_id)[0].datasets == stored  # type: ignore[index]
    assert [t.datasets for t in catalog.access.tokens("ana")] == [stored]


def test_token_listing(catalog: Catalog) -> None:
    first, _ = new_token(catalog, user="ana")
    second, _ = new_token(catalog, user="bob", scope="admin")
    assert {t.id for t in catalog.access.tokens()} == {first, second}
    assert [t.id for t in catalog.access.tokens("bob")] == [second]
    assert catalog.access.tokens("nobody") == []


@pytest.mark.parametrize(
    "kw", [{"scope": "root"}, {"user": "a b"}, {"user": "user:ana"}, {"user": ""}, {"user": "*"}]
)
def test_invalid_tokens_are_refused(catalog: Catalog, engine: sa.Engine, kw: dict[str, str]) -> None:
    with pytest.raises(InvalidQuery):
        new_token(catalog, **kw)
    assert sql(engine, "SELECT count(*) FROM tokens") == [(0,)]


# -- grants and groups ------------------------------------------------------------------------------


def test_grant_replace_revoke(catalog: Catalog, engine: sa.Engine) -> None:
    catalog.access.grant("pbmc", "user:ana", "reader", by="own")
    catalog.access.grant("pbmc", "group:lab", "writer", by="own")
    catalog.access.grant("pbmc", "user:ana", "owner", by="root")
    assert sorted(sql(engine, "SELECT dataset, principal, role, granted_by FROM grants")) == [
        ("pbmc", "group:lab", "writer", "own"),
        ("pbmc", "user:ana", "owner", "root"),
    ]
    assert [(g.principal, g.role) for g in catalog.access.grants(dataset="pbmc")] == [
        ("group:lab", "writer"),
        ("user:ana", "owner"),
    ]
    assert [g.dataset for g in catalog.access.grants(principal="user:ana")] == ["pbmc"]
    assert catalog.access.revoke("pbmc", "user:ana") is True
    assert catalog.access.revoke("pbmc", "user:ana") is False
    assert catalog.access.revoke("other", "group:lab") is False
    assert sql(engine, "SELECT principal FROM grants") == [("group:lab",)]


@pytest.mark.parametrize(
    ("dataset", "principal", "role"),
    [
        ("pbmc", "user:ana", "superuser"),
        ("pbmc", "user:ana", "Reader"),
        ("pbmc", "ana", "reader"),
        ("pbmc", "team:lab", "reader"),
        ("pbmc", "user:", "reader"),
        ("pbmc", "user:a b", "reader"),
        ("pbmc", "user:a:b", "reader"),
        ("pbmc", "user:\u00fe", "reader"),  # Python's \w takes it; the published (ECMA) pattern does not
        ("pbmc", "group:lab\u00b2", "reader"),
        ("pbmc", "group:*", "reader"),
        ("pbmc", "user:ana", "admin"),
        ("*", "user:ana", "reader"),
        ("*", "user:ana", "owner"),
    ],
)
def test_invalid_grants_are_refused(
    catalog: Catalog, engine: sa.Engine, dataset: str, principal: str, role: str
) -> None:
    with pytest.raises(InvalidQuery):
        catalog.access.grant(dataset, principal, role, by="own")
    assert sql(engine, "SELECT count(*) FROM grants") == [(0,)]


def test_server_wide_admin(catalog: Catalog) -> None:
    catalog.access.grant("*", "user:root", "admin", by="cli")
    assert catalog.access.roles_of(("user:root",)) == {"*": ("admin",)}
    assert catalog.access.lookup("anything", ("user:root",)).roles == ("admin",)


def test_group_membership(catalog: Catalog, engine: sa.Engine) -> None:
    catalog.access.add_member("lab", "ana")
    catalog.access.add_member("lab", "ana")  # again: no-op
    catalog.access.add_member("core", "ana")
    catalog.access.add_member("lab", "bob")
    assert catalog.access.groups_of("ana") == frozenset({"lab", "core"})
    assert sql(engine, "SELECT count(*) FROM group_members") == [(3,)]
    assert catalog.access.remove_member("lab", "ana") is True
    assert catalog.access.remove_member("lab", "ana") is False
    assert catalog.access.groups_of("ana") == frozenset({"core"})
    assert catalog.access.groups_of("nobody") == frozenset()
    with pytest.raises(InvalidQuery):
        catalog.access.add_member("a lab", "ana")
    with pytest.raises(InvalidQuery):
        catalog.access.add_member("lab", "user:ana")


def test_lookup_gives_policy_and_roles_of_the_principals(catalog: Catalog) -> None:
    catalog.access.set_policy("pbmc", visibility="internal", classification="controlled")
    catalog.access.grant("pbmc", "user:ana", "reader", by="own")
    catalog.access.grant("pbmc", "group:lab", "writer", by="own")
    catalog.access.grant("pbmc", "user:bob", "owner", by="own")
    catalog.access.grant("other", "user:ana", "owner", by="own")
    catalog.access.grant("*", "user:ana", "admin", by="cli")
    found = catalog.access.lookup("pbmc", ("user:ana", "group:lab"))
    assert found.policy == Policy("pbmc", "internal", "controlled")
    assert found.roles == ("admin", "reader", "writer")
    assert catalog.access.lookup("pbmc", ("user:bob",)).roles == ("owner",)
    assert catalog.access.lookup("pbmc", ("group:lab",)).roles == ("writer",)
    assert catalog.access.lookup("pbmc", ()).roles == ()
    missing = catalog.access.lookup("nosuch", ("user:ana",))
    assert missing.policy.exists is False
    assert missing.roles == ("admin",)
    assert catalog.access.policy("nosuch").exists is False
    assert catalog.access.roles_of(("user:ana", "group:lab")) == {
        "*": ("admin",),
        "other": ("owner",),
        "pbmc": ("reader", "writer"),
    }


def test_set_policy_creates_the_dataset_row(catalog: Catalog, engine: sa.Engine) -> None:
    assert catalog.access.set_policy("pbmc") == Policy("pbmc", "restricted", "internal")
    assert sql(engine, "SELECT name, visibility, classification FROM datasets") == [
        ("pbmc", "restricted", "internal")
    ]
    assert catalog.access.set_policy("pbmc", visibility="public") == Policy("pbmc", "public", "internal")
    assert catalog.access.policies() == {"pbmc": Policy("pbmc", "public", "internal")}
    # the dataset's first version lands in the row that is already there
    catalog.create_version("pbmc", "v1", input_name="in.h5ad", input_sha256="ab" * 32, params={})
    assert sql(engine, "SELECT name, visibility FROM datasets") == [("pbmc", "public")]


@pytest.mark.parametrize("secret_class", ["controlled", "phi"])
def test_controlled_data_can_never_be_public(catalog: Catalog, engine: sa.Engine, secret_class: str) -> None:
    policy = "SELECT visibility, classification FROM datasets WHERE name = :n"
    with pytest.raises(InvalidQuery, match="never be public"):
        catalog.access.set_policy("fresh", visibility="public", classification=secret_class)
    assert sql(engine, policy, n="fresh") == []
    # public first, then the classification
    catalog.access.set_policy("a", visibility="public")
    with pytest.raises(InvalidQuery, match="never be public"):
        catalog.access.set_policy("a", classification=secret_class)
    assert sql(engine, policy, n="a") == [("public", "internal")]
    # the classification first, then public
    catalog.access.set_policy("b", classification=secret_class)
    with pytest.raises(InvalidQuery, match="never be public"):
        catalog.access.set_policy("b", visibility="public")
    assert sql(engine, policy, n="b") == [("restricted", secret_class)]
    catalog.access.set_policy("b", visibility="internal")
    assert sql(engine, policy, n="b") == [("internal", secret_class)]


def test_set_policy_refuses_unknown_values(catalog: Catalog) -> None:
    with pytest.raises(InvalidQuery):
        catalog.access.set_policy("pbmc", visibility="secret")
    with pytest.raises(InvalidQuery):
        catalog.access.set_policy("pbmc", classification="top-secret")


# -- changes are seen at once by another catalog (another process's view) ---------------------------


def test_changes_are_seen_by_another_catalog_on_its_next_lookup(
    open_catalog: Callable[[], Catalog], backend: Backend
) -> None:
    a, b = open_catalog(), open_catalog()
    a.access.set_policy("pbmc")
    ana = ("user:ana", "group:lab")
    first = b.access.lookup("pbmc", ana)
    assert first.roles == ()
    if backend.name == "sqlite":  # the memo is live: an unchanged catalog answers from memory
        assert b.access.lookup("pbmc", ana) is first
    a.access.grant("pbmc", "user:ana", "reader", by="own")
    assert b.access.lookup("pbmc", ana).roles == ("reader",)
    assert b.access.roles_of(ana) == {"pbmc": ("reader",)}
    a.access.grant("pbmc", "user:ana", "owner", by="own")
    assert b.access.lookup("pbmc", ana).roles == ("owner",)
    a.access.revoke("pbmc", "user:ana")
    assert b.access.lookup("pbmc", ana).roles == ()
    assert b.access.roles_of(ana) == {}
    a.access.set_policy("pbmc", visibility="internal")
    assert b.access.lookup("pbmc", ana).policy.visibility == "internal"
    assert b.access.policies()["pbmc"].visibility == "internal"
    assert b.access.groups_of("ana") == frozenset()
    a.access.add_member("lab", "ana")
    assert b.access.groups_of("ana") == frozenset({"lab"})


def test_token_revocation_is_seen_by_another_catalog_at_once(open_catalog: Callable[[], Catalog]) -> None:
    a, b = open_catalog(), open_catalog()
    token_id, _ = new_token(a)
    assert b.access.token(token_id)[0].state(datetime.now(UTC)) == "active"  # type: ignore[index]
    assert b.access.token(token_id)[0].revoked_at is None  # type: ignore[index]
    a.access.revoke_token(token_id)
    assert b.access.token(token_id)[0].state(datetime.now(UTC)) == "revoked"  # type: ignore[index]


def test_revoked_token_fails_authentication_in_another_catalog(
    open_catalog: Callable[[], Catalog], tmp_path: Path
) -> None:
    a, b = open_catalog(), open_catalog()
    minted = tk.mint()
    a.access.create_token(
        id=minted.id,
        secret_sha256=minted.sha256,
        user="ana",
        scope="read",
        datasets=None,
        expires_at=None,
        created_by="test",
    )
    identities = Identities(b, Settings(storage=tmp_path / "store"))
    assert identities.bearer(minted.text).user == "ana"
    a.access.revoke_token(minted.id)
    with pytest.raises(AuthenticationFailed, match="revoked"):
        identities.bearer(minted.text)


def test_bearer_from_memory_answers_only_what_a_catalog_read_would(
    open_catalog: Callable[[], Catalog], backend: Backend, tmp_path: Path
) -> None:
    """The API's no-I/O path: None until the token was read (and always on PostgreSQL, where
    nothing is remembered), then the same actor as ``bearer``, and None again the moment
    another catalog revokes the token or adds the user to a group."""
    a, b = open_catalog(), open_catalog()
    minted = tk.mint()
    a.access.create_token(
        id=minted.id,
        secret_sha256=minted.sha256,
        user="ana",
        scope="read",
        datasets=None,
        expires_at=None,
        created_by="test",
    )
    identities = Identities(b, Settings(storage=tmp_path / "store"))
    assert identities.bearer_from_memory(minted.text) is None  # never read: go to the catalog
    slow = identities.bearer(minted.text)
    fast = identities.bearer_from_memory(minted.text)
    if backend.name == "postgresql":
        assert fast is None
        return
    assert fast == slow and fast is not None and fast.user == "ana" and fast.via == "token"
    wrong = tk.parse(minted.text)
    assert wrong is not None
    assert identities.bearer_from_memory(f"wc_{wrong[0]}_{'x' * 43}") is None  # wrong secret
    assert identities.bearer_from_memory("not-a-token") is None
    a.access.add_member("lab", "ana")
    assert identities.bearer_from_memory(minted.text) is None  # a commit elsewhere: read again
    assert identities.bearer(minted.text).groups == frozenset({"lab"})
    assert identities.bearer_from_memory(minted.text).groups == frozenset({"lab"})  # type: ignore[union-attr]
    a.access.revoke_token(minted.id)
    assert identities.bearer_from_memory(minted.text) is None
    with pytest.raises(AuthenticationFailed, match="revoked"):
        identities.bearer(minted.text)
    assert identities.bearer_from_memory(minted.text) is None  # remembered, but revoked


_WATCH = """
import sys
from datetime import UTC, datetime
from widecube.catalog import Catalog
catalog = Catalog(sys.argv[1])
principals = ("user:ana",)
for line in sys.stdin:
    found = catalog.access.token(line.strip())
    state = None if found is None else found[0].state(datetime.now(UTC))
    print(repr((catalog.access.lookup("pbmc", principals).roles, state)), flush=True)
"""


@pytest.mark.subprocess
def test_changes_are_seen_by_another_process_on_its_next_lookup(
    open_catalog: Callable[[], Catalog], backend: Backend
) -> None:
    a = open_catalog()
    a.access.set_policy("pbmc")
    token_id, _ = new_token(a)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", _WATCH, backend.url],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    answers: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [answers.put(line) for line in child.stdout], daemon=True).start()  # type: ignore[union-attr]

    def ask() -> str:
        child.stdin.write(token_id + "\n")  # type: ignore[union-attr]
        child.stdin.flush()  # type: ignore[union-attr]
        try:
            return answers.get(timeout=120).strip()
        except queue.Empty:
            child.kill()
            raise AssertionError(child.communicate()[1]) from None

    try:
        assert ask() == "((), 'active')"
        assert ask() == "((), 'active')"  # asked twice: the child's memo is warm
        a.access.grant("pbmc", "user:ana", "writer", by="own")
        assert ask() == "(('writer',), 'active')"
        assert ask() == "(('writer',), 'active')"
        a.access.revoke("pbmc", "user:ana")
        assert ask() == "((), 'active')"
        a.access.revoke_token(token_id)
        assert ask() == "((), 'revoked')"
    finally:
        child.stdin.close()  # type: ignore[union-attr]
        child.wait(timeout=60)
    assert child.returncode == 0, child.stderr.read()  # type: ignore[union-attr]


# -- the audit log ----------------------------------------------------------------------------------

DETAILS: list[dict[str, Any]] = [
    {},
    {"reason": "unknown API token", "token": "0123456789ab"},
    {"note": "données ✓ 细胞 😀 — «quoted» \"double\" 'single' \\ back\nslash"},
    {"nested": {"b": [1, 2.5, None, True], "a": "x"}, "n": 10**15, "f": 0.1},
    {"empty": "", "none": None, "list": []},
]


def event(i: int, worker: int) -> AuditEvent:
    """A varied event, some fields None."""
    kinds = ["publish", "read", "grant", "authenticate", "upload", "rollback", "submit"]
    return AuditEvent(
        action=kinds[i % len(kinds)],
        outcome=["ok", "allowed", "denied", "failed", "rejected"][i % 5],
        actor=None if i % 4 == 0 else f"user-{worker}-ü",
        via=["token", "anonymous", "oidc", "session", "cli"][i % 5],
        dataset=None if i % 3 == 0 else f"ds-{i % 11}",
        version=None if i % 2 else f"{i:032x}",
        detail={**DETAILS[i % len(DETAILS)], "i": i, "worker": worker},
        client=None if i % 6 == 0 else f"10.0.{worker}.{i % 250}",
        request_id=None if i % 7 == 0 else f"req-{worker}-{i}",
    )


@pytest.fixture
def thousand(open_catalog: Callable[[], Catalog]) -> Catalog:
    """1,000 appends from two catalogs (two processes' views), two threads each, started together."""
    catalogs = [open_catalog(), open_catalog()]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def append(catalog: Catalog, worker: int) -> None:
        try:
            barrier.wait()
            for i in range(250):
                catalog.audit.append(event(i, worker))
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(catalogs[w % 2], w)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return catalogs[0]


@pytest.mark.slow
def test_audit_chain_after_a_thousand_mixed_appends(thousand: Catalog, engine: sa.Engine) -> None:
    check = thousand.audit.verify()
    assert (check.ok, check.rows, check.head_seq, check.seq, check.problem) == (True, 1000, 1000, None, None)
    assert sql(engine, "SELECT min(seq), max(seq), count(*) FROM audit") == [(1, 1000, 1000)]
    assert sql(engine, "SELECT seq, hash FROM audit_head") == [(1000, check.head_hash)]
    # the chain, read with plain SQL: each row's prev_hash is the previous row's hash
    chain = sql(engine, "SELECT seq, prev_hash, hash FROM audit ORDER BY seq")
    assert chain[0][1] == "0" * 64
    assert all(chain[k][1] == chain[k - 1][2] for k in range(1, 1000))
    # every event came back as it went in
    rows = thousand.audit.rows(limit=2000)
    assert len(rows) == 1000
    got = sorted((r.event.detail["worker"], r.event.detail["i"], r.event) for r in rows)
    want = sorted((w, i, event(i, w)) for w in range(4) for i in range(250))
    assert [g[2] for g in got] == [w[2] for w in want]
    # a smaller batch walks the same chain
    assert thousand.audit.verify(batch=7).ok


@pytest.mark.slow
def test_audit_tampering_is_named(thousand: Catalog, engine: sa.Engine) -> None:
    verify = thousand.audit.verify

    # an edited field
    (outcome,) = sql(engine, "SELECT outcome FROM audit WHERE seq = 537")[0]
    execute(engine, "UPDATE audit SET outcome = 'tampered' WHERE seq = 537")
    check = verify()
    assert (check.ok, check.seq) == (False, 537)
    assert "row 537" in (check.problem or "")
    execute(engine, "UPDATE audit SET outcome = :o WHERE seq = 537", o=outcome)
    assert verify().ok

    (actor,) = sql(engine, "SELECT actor FROM audit WHERE seq = 12")[0]
    execute(engine, "UPDATE audit SET actor = 'someone-else' WHERE seq = 12")
    check = verify()
    assert (check.ok, check.seq) == (False, 12)
    assert "row 12 " in (check.problem or "")
    execute(engine, "UPDATE audit SET actor = :a WHERE seq = 12", a=actor)
    assert verify().ok

    # a deleted row
    saved = saved_rows(engine, 200, 200)
    execute(engine, "DELETE FROM audit WHERE seq = 200")
    check = verify()
    assert (check.ok, check.seq) == (False, 200)
    assert "row 200 " in (check.problem or "")
    restore(engine, saved)
    assert verify().ok

    # the newest rows deleted, the head left as it was
    saved = saved_rows(engine, 998, 1000)
    assert execute(engine, "DELETE FROM audit WHERE seq >= 998") == 3
    check = verify()
    assert (check.ok, check.rows, check.head_seq, check.seq) == (False, 997, 1000, 998)
    assert "998" in (check.problem or "") and "1000" in (check.problem or "")
    restore(engine, saved)
    assert verify().ok

    # the head changed
    (head_hash,) = sql(engine, "SELECT hash FROM audit_head")[0]
    execute(engine, "UPDATE audit_head SET hash = :h", h="f" * 64)
    assert not verify().ok
    execute(engine, "UPDATE audit_head SET hash = :h", h=head_hash)
    execute(engine, "UPDATE audit_head SET seq = 999")
    assert not verify().ok
    execute(engine, "UPDATE audit_head SET seq = 1000")
    assert verify().ok


def saved_rows(engine: sa.Engine, first: int, last: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        query = sa.select(audit_table).where(audit_table.c.seq.between(first, last))
        return [dict(row) for row in conn.execute(query).mappings()]


def restore(engine: sa.Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(audit_table), rows)


def test_empty_audit_log_verifies(catalog: Catalog) -> None:
    check = catalog.audit.verify()
    assert (check.ok, check.rows, check.head_seq, check.head_hash) == (True, 0, 0, "0" * 64)


def test_audit_rows_filters(catalog: Catalog) -> None:
    catalog.audit.append(AuditEvent("publish", "ok", actor="ana", dataset="pbmc"))
    catalog.audit.append(AuditEvent("read", "allowed", actor="bob", dataset="pbmc"))
    catalog.audit.append(AuditEvent("publish", "ok", actor="ana", dataset="other"))
    assert [r.seq for r in catalog.audit.rows(actor="ana")] == [1, 3]
    assert [r.seq for r in catalog.audit.rows(dataset="pbmc")] == [1, 2]
    assert [r.seq for r in catalog.audit.rows(action="publish", dataset="other")] == [3]
    assert [r.seq for r in catalog.audit.rows(after=1, limit=1)] == [2]
    assert catalog.audit.rows(after=3) == []
    assert catalog.audit.rows(after=7009291666574062362923368448) == []  # past BIGINT: no row, no overflow
    future = datetime.now(UTC) + timedelta(hours=1)
    assert catalog.audit.rows(since=future) == []
    assert len(catalog.audit.rows(until=future)) == 3


@pytest.mark.subprocess
def test_cli_audit_verify_names_the_tampered_row(tmp_path: Path) -> None:
    storage = tmp_path / "store"
    url = Settings(storage=storage).catalog_url
    with Catalog(url) as catalog:
        for i in range(30):
            catalog.audit.append(event(i, 0))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "WIDECUBE_STORAGE": str(storage)}
    env.pop("WIDECUBE_CATALOG_URL", None)
    command = [sys.executable, "-c", "from widecube.cli import app; app()", "audit", "verify"]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    intact = run()
    assert intact.returncode == 0, intact.stderr
    assert "30 rows" in intact.stdout
    engine = sa.create_engine(url)
    try:
        execute(engine, "UPDATE audit SET dataset = 'elsewhere' WHERE seq = 17")
        broken = run()
    finally:
        engine.dispose()
    assert broken.returncode == 1
    assert "row 17 " in broken.stderr
    assert "intact" not in broken.stdout


# -- the door ---------------------------------------------------------------------------------------


def audit_rows(engine: sa.Engine) -> list[tuple[Any, ...]]:
    return sql(engine, "SELECT actor, action, dataset, version, outcome FROM audit ORDER BY seq")


def test_hidden_dataset_reads_like_a_missing_one(catalog: Catalog) -> None:
    door = Door(catalog, auth=True)
    catalog.access.set_policy("secret", visibility="restricted")
    catalog.access.set_policy("secret2", visibility="internal")
    for actor in (Actor(user="pat", via="token"), Actor(), Actor(user="own", via="token", scope="read")):
        for action in ("read", "publish", "grant"):
            with pytest.raises(DatasetNotFound) as hidden:
                door.authorize(actor, action, "secret")  # type: ignore[arg-type]
            with pytest.raises(DatasetNotFound) as missing:
                door.authorize(actor, action, "nosuch")  # type: ignore[arg-type]
            assert str(hidden.value) == "no dataset named 'secret' in the catalog"
            assert str(missing.value) == "no dataset named 'nosuch' in the catalog"
    with pytest.raises(DatasetNotFound) as anonymous_internal:
        door.authorize(Actor(), "read", "secret2")
    assert str(anonymous_internal.value) == "no dataset named 'secret2' in the catalog"


def test_a_denial_is_audited(catalog: Catalog, engine: sa.Engine) -> None:
    door = Door(catalog, auth=True)
    catalog.access.set_policy("pbmc", visibility="internal")
    ana = Actor(user="ana", via="token", client="10.1.2.3", request_id="r-1")
    with pytest.raises(PermissionDenied):
        door.authorize(ana, "publish", "pbmc")
    with pytest.raises(DatasetNotFound):
        door.authorize(ana, "read", "nosuch")
    assert audit_rows(engine) == [
        ("ana", "publish", "pbmc", None, "denied"),
        ("ana", "read", "nosuch", None, "denied"),
    ]
    assert sql(engine, "SELECT client, request_id, via FROM audit WHERE seq = 1") == [
        ("10.1.2.3", "r-1", "token")
    ]
    assert catalog.audit.verify().ok


def test_reads_of_controlled_data_are_audited_open_ones_not(catalog: Catalog, engine: sa.Engine) -> None:
    door = Door(catalog, auth=True)
    catalog.access.set_policy("open", visibility="internal", classification="open")
    catalog.access.set_policy("ctl", visibility="internal", classification="controlled")
    catalog.access.set_policy("phi", visibility="internal", classification="phi")
    ana = Actor(user="ana", via="token", transport="tls")
    for _ in range(3):
        assert door.authorize(ana, "read", "open").allowed
    assert audit_rows(engine) == []
    door.authorize(ana, "read", "ctl")
    door.authorize(ana, "read", "ctl")
    door.authorize(ana, "read", "phi")
    assert audit_rows(engine) == [
        ("ana", "read", "ctl", None, "allowed"),
        ("ana", "read", "ctl", None, "allowed"),
        ("ana", "read", "phi", None, "allowed"),
    ]
    assert door.may(ana, "read", "ctl") is True  # a filter: no row
    assert door.may(ana, "publish", "ctl") is False
    assert len(audit_rows(engine)) == 3


def test_act_records_ok_and_failed_with_the_version(catalog: Catalog, engine: sa.Engine) -> None:
    door = Door(catalog, auth=True)
    catalog.access.set_policy("pbmc")
    catalog.access.grant("pbmc", "user:own", "owner", by="cli")
    own = Actor(user="own", via="token")
    with door.act(own, "publish", "pbmc", note="é") as act:
        act.version = "v1"
    with pytest.raises(RuntimeError, match="disk full"), door.act(own, "rollback", "pbmc") as act:
        act.version = "v0"
        raise RuntimeError("disk full")
    with (
        pytest.raises(PermissionDenied),
        door.act(Actor(user="own", via="token", scope="write"), "publish", "pbmc"),
    ):
        raise AssertionError("the block must not run")  # pragma: no cover
    assert audit_rows(engine) == [
        ("own", "publish", "pbmc", "v1", "ok"),
        ("own", "rollback", "pbmc", "v0", "failed"),
        ("own", "publish", "pbmc", None, "denied"),
    ]
    rows = catalog.audit.rows()
    assert rows[0].event.detail == {"note": "é"}
    assert rows[1].event.detail == {"error": "RuntimeError"}


def test_act_on_a_new_dataset_makes_the_caller_its_owner(catalog: Catalog, engine: sa.Engine) -> None:
    door = Door(catalog, auth=True)
    with door.act(Actor(user="ana", via="token"), "submit", "fresh") as act:
        act.version = "v1"
    assert sql(engine, "SELECT visibility, classification FROM datasets WHERE name = 'fresh'") == [
        ("restricted", "internal")
    ]
    assert sql(engine, "SELECT dataset, principal, role FROM grants") == [("fresh", "user:ana", "owner")]
    assert audit_rows(engine) == [("ana", "submit", "fresh", "v1", "ok")]
    with pytest.raises(DatasetNotFound):  # and it stays hidden from others
        door.authorize(Actor(user="bob", via="token"), "read", "fresh")


def test_door_with_auth_off_lets_everyone_in_and_still_records(catalog: Catalog, engine: sa.Engine) -> None:
    door = Door(catalog, auth=False)
    catalog.access.set_policy("secret", classification="controlled")
    assert door.authorize(Actor(), "publish", "secret").allowed
    assert door.visible(Actor(), ["secret", "nosuch"]) == ["secret", "nosuch"]
    with door.act(Actor(), "publish", "secret") as act:
        act.version = "v2"
    assert audit_rows(engine)[-1] == (None, "publish", "secret", "v2", "ok")


def test_visible_lists_only_what_the_caller_may_read(catalog: Catalog) -> None:
    door = Door(catalog, auth=True)
    for name, visibility in (
        ("pub", "public"),
        ("int", "internal"),
        ("res", "restricted"),
        ("mine", "restricted"),
    ):
        catalog.access.set_policy(name, visibility=visibility)
    catalog.access.grant("mine", "group:lab", "reader", by="cli")
    names = ["pub", "int", "res", "mine", "unlisted"]
    assert door.visible(Actor(), names) == ["pub"]
    assert door.visible(Actor(user="pat", via="token"), names) == ["pub", "int"]
    lab = Actor(user="pat", via="token", groups=frozenset({"lab"}))
    assert door.visible(lab, names) == ["pub", "int", "mine"]
    assert door.visible(
        Actor(user="pat", via="token", groups=frozenset({"lab"}), datasets=frozenset({"mine"})), names
    ) == ["mine"]
    catalog.access.grant("*", "user:root", "admin", by="cli")
    # (listings come from the catalog, so every name has a row; an admin sees them all)
    assert door.visible(Actor(user="root", via="token"), names[:4]) == ["pub", "int", "res", "mine"]


# -- governance -------------------------------------------------------------------------------------


def test_create_token_is_audited_without_its_secret(catalog: Catalog, engine: sa.Engine) -> None:
    gov = Governance(catalog, auth=True)
    catalog.access.grant("*", "user:root", "admin", by="cli")
    root = Actor(user="root", via="token")
    issued = gov.create_token(
        user="ana", scope="read", datasets=["pbmc"], expires_in=timedelta(days=1), actor=root
    )
    parsed = tk.parse(issued.text)
    assert parsed is not None
    token_id, secret = parsed
    assert issued.record.id == token_id
    log = dump(engine, "audit")
    assert token_id in log  # the row is there, and names the token by its id
    assert secret not in log
    assert issued.text not in log
    assert tk.digest(secret) not in log
    assert secret not in dump(engine, "tokens")
    assert audit_rows(engine) == [("root", "tokens", "*", None, "ok")]
    # a refused caller leaves a row, and no token
    with pytest.raises(PermissionDenied):
        gov.create_token(user="eve", actor=Actor(user="ana", via="token"))
    with pytest.raises(AuthenticationFailed):
        gov.create_token(user="eve", actor=Actor())
    assert [t.user for t in catalog.access.tokens()] == ["ana"]
    assert [r[-1] for r in audit_rows(engine)] == ["ok", "denied", "denied"]


def test_a_rejected_secret_is_not_logged(catalog: Catalog, engine: sa.Engine, tmp_path: Path) -> None:
    token_id, _ = new_token(catalog)
    wrong = tk.mint().secret
    identities = Identities(catalog, Settings(storage=tmp_path / "store"))
    with pytest.raises(AuthenticationFailed):
        identities.bearer(f"wc_{token_id}_{wrong}", client="10.9.9.9")
    log = dump(engine, "audit")
    assert "rejected" in log and token_id in log
    assert wrong not in log


@pytest.mark.parametrize("name", ["catalog", "jobs", "uploads", "cache"])
def test_a_dataset_named_like_a_server_resource_is_still_guarded(catalog: Catalog, name: str) -> None:
    catalog.access.set_policy(name, visibility="restricted", classification="controlled")
    with pytest.raises(DatasetNotFound):
        Door(catalog, auth=True).authorize(Actor(), "read", name)
