"""The access rules as one table, and the API token format.

Every expected outcome below is written by hand from the rules (issue 11, item 2, and the
docstring of ``widecube.access._policy``), not computed by the code under test:

* roles rank reader < writer < owner < admin (server-wide); ``read`` needs reader,
  ``submit``/``upload`` writer, ``publish``/``rollback``/``verify``/``grant``/``classify`` owner;
* ``public`` lends reader to everyone, ``internal`` to every signed-in caller, ``restricted``
  nothing; a credential's scope caps the rank (read: reader, write: writer);
* a credential narrowed to some datasets sees no others (``hidden``);
* a caller who cannot see a dataset gets ``hidden`` (404); an anonymous caller who sees it but
  may not do this gets ``unauthenticated`` (401); a signed-in one gets ``forbidden`` (403);
* a missing dataset may be created (``submit``/``upload``) by a signed-in caller whose scope
  allows writing;
* ``phi`` data over plain HTTP on a network is ``forbidden`` (to those who may see it);
* authentication off, or a trusted caller (cli, local, server), is always ``allowed``.
"""

from __future__ import annotations

import hashlib
import re

import pytest

from widecube.access import NEEDS, Actor, decide, decide_server
from widecube.access import tokens as tk
from widecube.catalog import Lookup, Policy

# -- the datasets -----------------------------------------------------------------------------

POLICIES = {
    "pub": Policy("pub", "public", "open"),
    "int": Policy("int", "internal", "internal"),
    "res": Policy("res", "restricted", "controlled"),
    "new": Policy("new", "restricted", "internal", exists=False),
}

# -- the callers: the actor and the roles the catalog holds for it (on every existing dataset;
# server-wide admin also on the missing one) --------------------------------------------------

ACTORS: dict[str, tuple[Actor, tuple[str, ...]]] = {
    "anonymous": (Actor(), ()),
    "signed-in": (Actor(user="pat", via="token"), ()),
    "reader": (Actor(user="rea", via="token"), ("reader",)),
    "writer": (Actor(user="wri", via="oidc"), ("writer",)),
    "owner": (Actor(user="own", via="session"), ("owner",)),
    "admin": (Actor(user="adm", via="token"), ("admin",)),
    "signed-in/read": (Actor(user="pat", via="token", scope="read"), ()),
    "owner/read": (Actor(user="own", via="token", scope="read"), ("owner",)),
    "owner/write": (Actor(user="own", via="token", scope="write"), ("owner",)),
    "owner/admin": (Actor(user="own", via="token", scope="admin"), ("owner",)),
    "admin/read": (Actor(user="adm", via="token", scope="read"), ("admin",)),
    "admin/write": (Actor(user="adm", via="token", scope="write"), ("admin",)),
    "owner/only-pub": (Actor(user="own", via="token", datasets=frozenset({"pub"})), ("owner",)),
    "admin/only-new": (Actor(user="adm", via="token", datasets=frozenset({"new"})), ("admin",)),
    "cli": (Actor.cli("ops"), ()),
    "local": (Actor.local("ops"), ()),
    "server": (Actor.server(), ()),
}

A, C, U, H, F = "allowed", "created", "unauthenticated", "hidden", "forbidden"

# (actor, dataset) → outcome of (read, submit, publish)
TABLE: dict[tuple[str, str], tuple[str, str, str]] = {
    ("anonymous", "pub"): (A, U, U),
    ("anonymous", "int"): (H, H, H),
    ("anonymous", "res"): (H, H, H),
    ("anonymous", "new"): (H, U, H),
    ("signed-in", "pub"): (A, F, F),
    ("signed-in", "int"): (A, F, F),
    ("signed-in", "res"): (H, H, H),
    ("signed-in", "new"): (H, C, H),
    ("reader", "pub"): (A, F, F),
    ("reader", "int"): (A, F, F),
    ("reader", "res"): (A, F, F),
    ("reader", "new"): (H, C, H),
    ("writer", "pub"): (A, A, F),
    ("writer", "int"): (A, A, F),
    ("writer", "res"): (A, A, F),
    ("writer", "new"): (H, C, H),
    ("owner", "pub"): (A, A, A),
    ("owner", "int"): (A, A, A),
    ("owner", "res"): (A, A, A),
    ("owner", "new"): (H, C, H),
    ("admin", "pub"): (A, A, A),
    ("admin", "int"): (A, A, A),
    ("admin", "res"): (A, A, A),
    ("admin", "new"): (H, C, H),
    ("signed-in/read", "pub"): (A, F, F),
    ("signed-in/read", "int"): (A, F, F),
    ("signed-in/read", "res"): (H, H, H),
    ("signed-in/read", "new"): (H, F, H),
    ("owner/read", "pub"): (A, F, F),
    ("owner/read", "int"): (A, F, F),
    ("owner/read", "res"): (A, F, F),
    ("owner/read", "new"): (H, F, H),
    ("owner/write", "pub"): (A, A, F),
    ("owner/write", "int"): (A, A, F),
    ("owner/write", "res"): (A, A, F),
    ("owner/write", "new"): (H, C, H),
    ("owner/admin", "pub"): (A, A, A),
    ("owner/admin", "int"): (A, A, A),
    ("owner/admin", "res"): (A, A, A),
    ("owner/admin", "new"): (H, C, H),
    ("admin/read", "pub"): (A, F, F),
    ("admin/read", "int"): (A, F, F),
    ("admin/read", "res"): (A, F, F),
    ("admin/read", "new"): (H, F, H),
    ("admin/write", "pub"): (A, A, F),
    ("admin/write", "int"): (A, A, F),
    ("admin/write", "res"): (A, A, F),
    ("admin/write", "new"): (H, C, H),
    ("owner/only-pub", "pub"): (A, A, A),
    ("owner/only-pub", "int"): (H, H, H),
    ("owner/only-pub", "res"): (H, H, H),
    ("owner/only-pub", "new"): (H, H, H),
    ("admin/only-new", "pub"): (H, H, H),
    ("admin/only-new", "int"): (H, H, H),
    ("admin/only-new", "res"): (H, H, H),
    ("admin/only-new", "new"): (H, C, H),
    **{(trusted, d): (A, A, A) for trusted in ("cli", "local", "server") for d in POLICIES},
}

CASES = [
    pytest.param(who, dataset, action, expected, id=f"{who}-{action}-{dataset}")
    for (who, dataset), outcomes in TABLE.items()
    for action, expected in zip(("read", "submit", "publish"), outcomes, strict=True)
]


def lookup_for(who: str, dataset: str) -> Lookup:
    policy = POLICIES[dataset]
    roles = ACTORS[who][1]
    if not policy.exists:  # no grants on a dataset that does not exist; server-wide admin stays
        roles = tuple(r for r in roles if r == "admin")
    return Lookup(policy, roles)


def test_the_table_covers_every_actor_and_dataset() -> None:
    assert set(TABLE) == {(who, d) for who in ACTORS for d in POLICIES}


@pytest.mark.parametrize(("who", "dataset", "action", "expected"), CASES)
def test_decide(who: str, dataset: str, action: str, expected: str) -> None:
    decision = decide(ACTORS[who][0], action, lookup_for(who, dataset), auth=True)  # type: ignore[arg-type]
    assert decision.outcome == expected, decision.reason
    assert decision.allowed == (expected in (A, C))


@pytest.mark.parametrize(("who", "dataset", "action", "expected"), CASES)
def test_without_authentication_everyone_is_allowed(
    who: str, dataset: str, action: str, expected: str
) -> None:
    decision = decide(ACTORS[who][0], action, lookup_for(who, dataset), auth=False)  # type: ignore[arg-type]
    assert decision.outcome == "allowed"


# -- each action needs its role ---------------------------------------------------------------


def test_needs_table() -> None:
    assert NEEDS == {
        "read": "reader",
        "submit": "writer",
        "upload": "writer",
        "publish": "owner",
        "rollback": "owner",
        "verify": "owner",
        "grant": "owner",
        "classify": "owner",
        "describe": "owner",  # a dataset's metadata
        "delete": "owner",  # the whole dataset
        # the lifecycle (issue 13): on one dataset its owners; on every dataset (``*``) admins
        "gc": "owner",
        "archive": "owner",
        "restore": "owner",
        "release": "owner",
        "retention": "owner",
        "scrub": "owner",
        "inventory": "owner",
    }


@pytest.mark.parametrize(
    ("role", "action", "expected"),
    [
        ("reader", "read", A),
        ("reader", "upload", F),
        ("reader", "rollback", F),
        ("writer", "upload", A),
        ("writer", "submit", A),
        ("writer", "rollback", F),
        ("writer", "verify", F),
        ("writer", "grant", F),
        ("writer", "classify", F),
        ("owner", "rollback", A),
        ("owner", "verify", A),
        ("owner", "grant", A),
        ("owner", "classify", A),
        ("writer", "delete", F),
        ("owner", "delete", A),
    ],
)
def test_each_action_on_a_restricted_dataset(role: str, action: str, expected: str) -> None:
    actor = Actor(user="u", via="token")
    decision = decide(actor, action, Lookup(POLICIES["res"], (role,)), auth=True)  # type: ignore[arg-type]
    assert decision.outcome == expected


def test_upload_creates_a_missing_dataset() -> None:
    decision = decide(Actor(user="u", via="token"), "upload", Lookup(POLICIES["new"], ()), auth=True)
    assert (decision.outcome, decision.role) == ("created", "owner")
    anonymous = decide(Actor(), "upload", Lookup(POLICIES["new"], ()), auth=True)
    assert anonymous.outcome == "unauthenticated"


@pytest.mark.parametrize(
    ("who", "dataset", "role"),
    [
        ("signed-in", "int", "reader"),
        ("anonymous", "pub", "reader"),
        ("owner/read", "res", "reader"),
        ("owner/write", "res", "writer"),
        ("admin/write", "pub", "writer"),
        ("owner", "pub", "owner"),
        ("admin", "res", "admin"),
    ],
)
def test_effective_role(who: str, dataset: str, role: str) -> None:
    assert decide(ACTORS[who][0], "read", lookup_for(who, dataset), auth=True).role == role


def test_several_grants_take_the_best() -> None:
    lookup = Lookup(POLICIES["res"], ("owner", "reader", "writer"))
    assert decide(Actor(user="u", via="token"), "publish", lookup, auth=True).outcome == "allowed"


# -- phi over plain HTTP -------------------------------------------------------------------------

PHI_RESTRICTED = Policy("ph", "restricted", "phi")
PHI_INTERNAL = Policy("pi", "internal", "phi")


@pytest.mark.parametrize(("transport", "expected"), [("tls", A), ("loopback", A), (None, A), ("plain", F)])
def test_phi_is_served_only_over_tls_or_loopback(transport: str | None, expected: str) -> None:
    owner = Actor(user="own", via="token", transport=transport)  # type: ignore[arg-type]
    assert decide(owner, "read", Lookup(PHI_RESTRICTED, ("owner",)), auth=True).outcome == expected
    user = Actor(user="pat", via="token", transport=transport)  # type: ignore[arg-type]
    assert decide(user, "read", Lookup(PHI_INTERNAL, ()), auth=True).outcome == expected


@pytest.mark.parametrize(
    ("actor", "policy"),
    [
        (Actor(transport="plain"), PHI_RESTRICTED),
        (Actor(transport="plain"), PHI_INTERNAL),
        (Actor(user="pat", via="token", transport="plain"), PHI_RESTRICTED),
    ],
)
def test_phi_over_plain_http_does_not_reveal_a_dataset_the_caller_cannot_see(
    actor: Actor, policy: Policy
) -> None:
    assert decide(actor, "read", Lookup(policy, ()), auth=True).outcome == "hidden"


def test_phi_rule_does_not_bind_trusted_callers_or_auth_off() -> None:
    lookup = Lookup(PHI_RESTRICTED, ())
    assert decide(Actor.cli("ops"), "read", lookup, auth=True).outcome == "allowed"
    assert decide(Actor(transport="plain"), "read", lookup, auth=False).outcome == "allowed"


# -- server-wide actions --------------------------------------------------------------------------

SERVER_CASES = [
    (Actor(), (), U),
    (Actor(user="pat", via="token"), (), F),
    (Actor(user="pat", via="token", scope="admin"), (), F),
    (Actor(user="adm", via="token"), ("admin",), A),
    (Actor(user="adm", via="oidc"), ("admin",), A),
    (Actor(user="adm", via="token", scope="admin"), ("admin",), A),
    (Actor(user="adm", via="token", scope="write"), ("admin",), F),
    (Actor(user="adm", via="token", scope="read"), ("admin",), F),
    (Actor.cli("ops"), (), A),
    (Actor.local("ops"), (), A),
    (Actor.server(), (), A),
]


@pytest.mark.parametrize("action", ["jobs", "upkeep", "tokens", "audit"])
@pytest.mark.parametrize(("actor", "roles", "expected"), SERVER_CASES)
def test_decide_server(action: str, actor: Actor, roles: tuple[str, ...], expected: str) -> None:
    assert decide_server(actor, action, roles, auth=True).outcome == expected  # type: ignore[arg-type]
    assert decide_server(actor, action, roles, auth=False).outcome == "allowed"  # type: ignore[arg-type]


# -- tokens ---------------------------------------------------------------------------------------


def test_mint_form_and_roundtrip() -> None:
    token = tk.mint()
    assert re.fullmatch(r"wc_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token.text)
    assert token.text == f"wc_{token.id}_{token.secret}"
    assert tk.parse(token.text) == (token.id, token.secret)
    assert tk.parse(f"  {token.text}\n") == (token.id, token.secret)
    other = tk.mint()
    assert (other.id, other.secret) != (token.id, token.secret)


GOOD_ID, GOOD_SECRET = "0123456789ab", "A" * 20 + "-_" + "z9" * 10 + "q"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "wc_",
        f"{GOOD_ID}_{GOOD_SECRET}",
        f"wx_{GOOD_ID}_{GOOD_SECRET}",
        f"WC_{GOOD_ID}_{GOOD_SECRET}",
        f"wc_{GOOD_ID[:-1]}_{GOOD_SECRET}",
        f"wc_{GOOD_ID}0_{GOOD_SECRET}",
        f"wc_0123456789AB_{GOOD_SECRET}",
        f"wc_0123456789ag_{GOOD_SECRET}",
        f"wc_{GOOD_ID}_{GOOD_SECRET[:-1]}",
        f"wc_{GOOD_ID}_{GOOD_SECRET}x",
        f"wc_{GOOD_ID}_{GOOD_SECRET[:-1]}+",
        f"wc_{GOOD_ID}_{GOOD_SECRET[:-1]}=",
        f"wc_{GOOD_ID}_{GOOD_SECRET[:20]} {GOOD_SECRET[21:]}",
        f"wc_{GOOD_ID}{GOOD_SECRET}",
        f"Bearer wc_{GOOD_ID}_{GOOD_SECRET}",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbmEifQ.c2ln",
    ],
)
def test_parse_rejects_malformed(text: str) -> None:
    assert tk.parse(text) is None


def test_parse_accepts_the_hand_made_good_one() -> None:
    assert len(GOOD_SECRET) == 43
    assert tk.parse(f"wc_{GOOD_ID}_{GOOD_SECRET}") == (GOOD_ID, GOOD_SECRET)


def test_digest_is_sha256_hex_of_the_secret() -> None:
    # the SHA-256 test vector of FIPS 180-2
    assert tk.digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    token = tk.mint()
    assert token.sha256 == hashlib.sha256(token.secret.encode()).hexdigest()
    assert token.secret not in token.sha256
    assert token.sha256 != token.secret


def test_matches() -> None:
    token = tk.mint()
    assert tk.matches(token.secret, token.sha256)
    assert not tk.matches(token.secret[:-1] + ("A" if token.secret[-1] != "A" else "B"), token.sha256)
    assert not tk.matches(token.secret, tk.mint().sha256)
    assert not tk.matches(token.sha256, token.sha256)  # the stored hash is not a password
    assert not tk.matches(token.secret, "")
