"""Who may reach which dataset, as the catalog records it: API tokens, grants, local groups,
and each dataset's visibility and classification.

The catalog only stores and looks up; :mod:`widecube.access` decides. Every change is one
transaction and takes effect on the next lookup of every process: lookups are never cached
beyond the catalog's *strict* change token (on SQLite, ``PRAGMA data_version`` moves on any
commit by anyone, so a remembered answer is reused only while nothing at all was committed; on
other backends nothing is remembered: PostgreSQL's notifications arrive a few milliseconds after
the commit, too late for the next request).

    >>> catalog.access.grant("pbmc", "user:ana", "reader", by="admin")          # doctest: +SKIP
    >>> catalog.access.lookup("pbmc", ("user:ana",)).roles
    ('reader',)
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from widecube.catalog._changes import ChangeToken
from widecube.catalog._schema import (
    CLASSIFICATIONS,
    ROLES,
    SCOPES,
    VISIBILITIES,
    datasets,
    grants,
    group_members,
    tokens,
)
from widecube.errors import InvalidQuery, NotFound

__all__ = [
    "NAME_PATTERN",
    "Access",
    "GrantRecord",
    "Lookup",
    "NotInMemory",
    "Policy",
    "TokenNotFound",
    "TokenRecord",
]

Transaction = Callable[[], AbstractContextManager[sa.Connection]]
_T, _G, _M, _D = tokens.c, grants.c, group_members.c, datasets.c
_REMEMBER = 4096
SERVER = "*"
"""The ``dataset`` of a server-wide grant (role ``admin``)."""


class TokenNotFound(NotFound):
    """No API token has that id."""


class NotInMemory(Exception):
    """Inside :meth:`Access.memory_only`: the answer would need a catalog read."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An API token as stored (never its secret): whose, how far it reaches, until when."""

    id: str
    user: str
    scope: str
    datasets: tuple[str, ...] | None
    note: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        """``active``, ``revoked`` or ``expired`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """A role of a principal (``user:NAME`` or ``group:NAME``) on a dataset (``*``: server)."""

    dataset: str
    principal: str
    role: str
    granted_by: str
    granted_at: datetime


@dataclass(frozen=True, slots=True)
class Policy:
    """A dataset's visibility and classification (``exists`` False: no such dataset yet)."""

    dataset: str
    visibility: str
    classification: str
    exists: bool = True


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the door needs to decide about one dataset: its policy and the roles the given
    principals hold on it, server-wide ``admin`` included."""

    policy: Policy
    roles: tuple[str, ...]


class Access:
    """The access tables, reached as :attr:`Catalog.access`; every change is one transaction."""

    def __init__(self, write: Transaction, read: Transaction, changes: ChangeToken) -> None:
        self._write, self._read, self._changes = write, read, changes
        self._remembered: dict[tuple[Any, ...], tuple[int, Any]] = {}
        self._no_io = threading.local()

    # -- tokens -----------------------------------------------------------------------------

    def create_token(
        self,
        *,
        id: str,
        secret_sha256: str,
        user: str,
        scope: str,
        datasets: Iterable[str] | None,
        expires_at: datetime | None,
        created_by: str,
        note: str | None = None,
    ) -> TokenRecord:
        """Store a new token (its secret's hash only)."""
        _check(scope, SCOPES, "scope")
        _check_name(user, "user")
        narrowed = None if datasets is None else sorted(set(datasets))
        with self._write() as conn:
            conn.execute(
                sa.insert(tokens).values(
                    id=id,
                    user_name=user,
                    secret_sha256=secret_sha256,
                    scope=scope,
                    datasets=narrowed,
                    note=note,
                    created_by=created_by,
                    created_at=_now(),
                    expires_at=expires_at,
                    revoked_at=None,
                )
            )
            return _token(conn.execute(sa.select(tokens).where(_T.id == id)).mappings().one())

    def token(self, id: str) -> tuple[TokenRecord, str] | None:
        """The token ``id`` and its secret's hash, or None (looked up on every request)."""

        def load() -> tuple[TokenRecord, str] | None:
            with self._read() as conn:
                row = conn.execute(sa.select(tokens).where(_T.id == id)).mappings().first()
            return None if row is None else (_token(row), str(row["secret_sha256"]))

        return self._unchanged(("token", id), load)  # type: ignore[no-any-return]

    def tokens(self, user: str | None = None) -> list[TokenRecord]:
        """Every token (or ``user``'s), newest first."""
        query = sa.select(tokens).order_by(_T.created_at.desc(), _T.id)
        if user is not None:
            query = query.where(_T.user_name == user)
        with self._read() as conn:
            return [_token(row) for row in conn.execute(query).mappings()]

    def revoke_token(self, id: str) -> TokenRecord:
        """Revoke token ``id`` now (revoking twice keeps the first time)."""
        with self._write() as conn:
            row = conn.execute(sa.select(tokens).where(_T.id == id).with_for_update()).mappings().first()
            if row is None:
                raise TokenNotFound(f"no API token with id {id!r}")
            if row["revoked_at"] is None:
                conn.execute(sa.update(tokens).where(_T.id == id).values(revoked_at=_now()))
            return _token(conn.execute(sa.select(tokens).where(_T.id == id)).mappings().one())

    # -- grants and groups ------------------------------------------------------------------

    def grant(self, dataset: str, principal: str, role: str, *, by: str) -> GrantRecord:
        """Give ``principal`` ``role`` on ``dataset`` (replacing the role it had there)."""
        _check(role, ROLES, "role")
        _check_principal(principal)
        if (dataset == SERVER) != (role == "admin"):
            raise InvalidQuery("role admin is server-wide (dataset '*'), and '*' takes no other role")
        now = _now()
        with self._write() as conn:
            found = conn.execute(
                sa.select(_G.id).where(_G.dataset == dataset, _G.principal == principal).with_for_update()
            ).first()
            if found is None:
                conn.execute(
                    sa.insert(grants).values(
                        dataset=dataset, principal=principal, role=role, granted_by=by, granted_at=now
                    )
                )
            else:
                conn.execute(
                    sa.update(grants)
                    .where(_G.id == found.id)
                    .values(role=role, granted_by=by, granted_at=now)
                )
        return GrantRecord(dataset, principal, role, by, now)

    def revoke(self, dataset: str, principal: str) -> bool:
        """Take ``principal``'s role on ``dataset`` away; False if it had none."""
        with self._write() as conn:
            gone = conn.execute(sa.delete(grants).where(_G.dataset == dataset, _G.principal == principal))
            return bool(gone.rowcount)

    def grants(self, *, dataset: str | None = None, principal: str | None = None) -> list[GrantRecord]:
        """Grants, by dataset and principal, optionally only one dataset's or one principal's."""
        query = sa.select(grants).order_by(_G.dataset, _G.principal)
        if dataset is not None:
            query = query.where(_G.dataset == dataset)
        if principal is not None:
            query = query.where(_G.principal == principal)
        with self._read() as conn:
            return [
                GrantRecord(r["dataset"], r["principal"], r["role"], r["granted_by"], r["granted_at"])
                for r in conn.execute(query).mappings()
            ]

    def add_member(self, group: str, user: str) -> None:
        """Put ``user`` into the local group ``group`` (a no-op if already there)."""
        _check_name(group, "group")
        _check_name(user, "user")
        try:
            with self._write() as conn:
                conn.execute(
                    sa.insert(group_members).values(group_name=group, user_name=user, added_at=_now())
                )
        except IntegrityError:
            pass

    def remove_member(self, group: str, user: str) -> bool:
        """Take ``user`` out of ``group``; False if not a member."""
        with self._write() as conn:
            gone = conn.execute(sa.delete(group_members).where(_M.group_name == group, _M.user_name == user))
            return bool(gone.rowcount)

    def groups_of(self, user: str) -> frozenset[str]:
        """The local groups ``user`` is in (looked up on every request)."""

        def load() -> frozenset[str]:
            with self._read() as conn:
                rows = conn.execute(sa.select(_M.group_name).where(_M.user_name == user))
                return frozenset(str(r.group_name) for r in rows)

        return self._unchanged(("groups", user), load)  # type: ignore[no-any-return]

    # -- dataset policy -------------------------------------------------------------------

    def policy(self, dataset: str) -> Policy:
        """``dataset``'s visibility and classification (``exists`` False if no such dataset)."""
        return self.lookup(dataset, ()).policy

    def set_policy(
        self, dataset: str, *, visibility: str | None = None, classification: str | None = None
    ) -> Policy:
        """Change what is given, creating the dataset's row if it has none yet. ``controlled``
        and ``phi`` data can never be public: refused, whichever of the two changes."""
        if visibility is not None:
            _check(visibility, VISIBILITIES, "visibility")
        if classification is not None:
            _check(classification, CLASSIFICATIONS, "classification")
        with self._write() as conn:
            row = conn.execute(
                sa.select(_D.visibility, _D.classification).where(_D.name == dataset).with_for_update()
            ).first()
            old = (row.visibility, row.classification) if row is not None else ("restricted", "internal")
            new = (visibility or old[0], classification or old[1])
            if new[0] == "public" and new[1] in ("controlled", "phi"):
                raise InvalidQuery(
                    f"dataset {dataset!r} is classified {new[1]}: it can never be public "
                    "(internal or restricted only)"
                )
            values = dict(visibility=new[0], classification=new[1])
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(sa.insert(datasets).values(name=dataset, created_at=_now(), **values))
                except IntegrityError:
                    conn.execute(sa.update(datasets).where(_D.name == dataset).values(**values))
            else:
                conn.execute(sa.update(datasets).where(_D.name == dataset).values(**values))
        return Policy(dataset, *new)

    def policies(self) -> dict[str, Policy]:
        """Every dataset's policy, by name (one query: the listing filter)."""

        def load() -> dict[str, Policy]:
            with self._read() as conn:
                rows = conn.execute(sa.select(_D.name, _D.visibility, _D.classification))
                return {r.name: Policy(r.name, r.visibility, r.classification) for r in rows}

        return self._unchanged(("policies",), load)  # type: ignore[no-any-return]

    def roles_of(self, principals: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        """Every role the principals hold, by dataset (``*``: server-wide)."""

        def load() -> dict[str, tuple[str, ...]]:
            found: dict[str, list[str]] = {}
            with self._read() as conn:
                rows = conn.execute(sa.select(_G.dataset, _G.role).where(_G.principal.in_(principals)))
                for r in rows:
                    found.setdefault(r.dataset, []).append(r.role)
            return {d: tuple(sorted(set(v))) for d, v in found.items()}

        if not principals:
            return {}
        return self._unchanged(("roles_of", principals), load)  # type: ignore[no-any-return]

    def lookup(self, dataset: str, principals: tuple[str, ...]) -> Lookup:
        """``dataset``'s policy and the roles ``principals`` hold on it or server-wide: what
        one decision of the door needs, in one round trip to the database."""

        def load() -> Lookup:
            policy_q = sa.select(
                sa.literal("policy").label("kind"), _D.visibility.label("a"), _D.classification.label("b")
            ).where(_D.name == dataset)
            query: sa.Select[Any] | sa.CompoundSelect[Any] = policy_q
            if principals:
                roles_q = sa.select(
                    sa.literal("role").label("kind"), _G.role.label("a"), _G.dataset.label("b")
                ).where(_G.principal.in_(principals), _G.dataset.in_((dataset, SERVER)))
                query = sa.union_all(policy_q, roles_q)
            with self._read() as conn:
                rows = conn.execute(query).all()
            policy = Policy(dataset, "restricted", "internal", exists=False)
            roles = []
            for kind, a, b in rows:
                if kind == "policy":
                    policy = Policy(dataset, a, b)
                else:
                    roles.append(a)
            return Lookup(policy, tuple(sorted(set(roles))))

        return self._unchanged(("lookup", dataset, principals), load)  # type: ignore[no-any-return]

    def forget_dataset(self, dataset: str) -> int:
        """Remove every grant on ``dataset`` (it is being deleted); how many there were."""
        with self._write() as conn:
            return int(conn.execute(sa.delete(grants).where(_G.dataset == dataset)).rowcount)

    # -- memo -------------------------------------------------------------------------------

    @contextmanager
    def memory_only(self) -> Iterator[None]:
        """Lookups in this block (this thread) answer only what is remembered and still valid,
        and raise :class:`NotInMemory` where they would read the catalog: the API checks a
        token on its event loop this way and goes to a worker thread only on a miss."""
        self._no_io.on = True
        try:
            yield
        finally:
            self._no_io.on = False

    def _unchanged(self, key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
        """``load()``, or its earlier answer while nothing at all was committed to the catalog
        since (the change token, read before loading; see ``_changes``)."""
        token = self._changes.read(strict=True)
        if token is not None:
            hit = self._remembered.get(key)
            if hit is not None and hit[0] == token:
                return hit[1]
        if getattr(self._no_io, "on", False):
            raise NotInMemory(key[0])
        value = load()
        if token is not None:
            if len(self._remembered) >= _REMEMBER:
                self._remembered.clear()
            self._remembered[key] = (token, value)
        return value


def _token(row: Any) -> TokenRecord:
    narrowed = row["datasets"]
    return TokenRecord(
        id=row["id"],
        user=row["user_name"],
        scope=row["scope"],
        datasets=None if narrowed is None else tuple(narrowed),
        note=row["note"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise InvalidQuery(f"unknown {what} {value!r} (one of: {', '.join(allowed)})")


NAME_PATTERN = r"^[A-Za-z0-9_.@+-]{1,200}$"
"""A user or group name: 1 to 200 ASCII letters, digits, ``_ . @ + -`` (an e-mail address fits).

ASCII, spelt out rather than ``\\w``: the OpenAPI document publishes this pattern, and ``\\w``
means ASCII to a JSON Schema (ECMA-262) validator but any Unicode letter to Python's ``re`` and to
pydantic, so the server accepted names its own schema declares invalid. A user whose identity
provider name is not ASCII is granted through a group, or the server reads another claim
(``WIDECUBE_OIDC_USER_CLAIM``)."""


def _check_name(name: str, what: str) -> None:
    if not re.fullmatch(NAME_PATTERN, name):
        raise InvalidQuery(
            f"invalid {what} name {name[:80]!r}: 1 to 200 ASCII letters, digits or '_', '.', '@', '+', '-'"
        )


def _check_principal(principal: str) -> None:
    kind, _, name = principal.partition(":")
    if kind not in ("user", "group"):
        raise InvalidQuery(f"invalid principal {principal!r}: user:NAME or group:NAME")
    _check_name(name, kind)


def _now() -> datetime:
    return datetime.now(UTC)
