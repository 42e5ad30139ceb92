"""The audit log: an append-only, hash-chained record of who did what to which data.

Each row's ``hash`` is the SHA-256 of the previous row's hash and this row's own fields in a
canonical JSON form; the one-row ``audit_head`` table holds the newest sequence number and
hash. Appends take the head's lock (``FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on
SQLite), so rows from every process form one chain with no gaps. :meth:`Audit.verify`
recomputes the chain: an edited row, a deleted one (a gap, or a row whose ``prev_hash`` no
longer matches) and deleted newest rows (the head disagrees) are each named by sequence
number. This makes tampering evident, not impossible: whoever can rewrite the whole table and
the head can forge a chain, so export the head hash (``widecube audit verify`` prints it) to a
place they cannot write.

    >>> catalog.audit.append(AuditEvent(actor="ana", via="token", action="publish",
    ...                                 dataset="pbmc", outcome="ok"))      # doctest: +SKIP
    >>> catalog.audit.verify().ok
    True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from widecube.catalog._engine import dumps_json
from widecube.catalog._schema import audit, audit_head

__all__ = ["Audit", "AuditCheck", "AuditEvent", "AuditRecord", "GENESIS"]

Transaction = Callable[[], AbstractContextManager[sa.Connection]]
_A, _H = audit.c, audit_head.c
_LAST_SEQ = 2**63 - 1
"""The largest sequence number a SQL BIGINT holds (SQLite's and PostgreSQL's)."""
GENESIS = "0" * 64
"""The ``prev_hash`` of the first row."""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One thing to record. ``outcome``: ``ok`` (done), ``allowed`` (a read let through),
    ``denied`` (refused by the door), ``failed`` (allowed, then failed), ``rejected`` (bad
    credentials)."""

    action: str
    outcome: str
    actor: str | None = None
    via: str = "anonymous"
    dataset: str | None = None
    version: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    client: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored row: the event, when, its place in the chain and its hash."""

    seq: int
    at: datetime
    event: AuditEvent
    prev_hash: str
    hash: str

    def as_json(self) -> dict[str, Any]:
        """The row as one JSON object (``widecube audit --jsonl``, ``GET /api/v1/audit``)."""
        e = self.event
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "actor": e.actor,
            "via": e.via,
            "action": e.action,
            "dataset": e.dataset,
            "version": e.version,
            "outcome": e.outcome,
            "detail": e.detail,
            "client": e.client,
            "request_id": e.request_id,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class AuditCheck:
    """What :meth:`Audit.verify` found: ``ok``, the rows checked, the head, and the first
    problem (``seq``: the row at fault) if any."""

    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    seq: int | None = None
    problem: str | None = None


def chain_hash(prev_hash: str, seq: int, at: datetime, event: AuditEvent) -> str:
    """The hash of a row: SHA-256 over the previous hash and the row's canonical JSON."""
    body = {
        "seq": seq,
        "at": _instant(at),
        "actor": event.actor,
        "via": event.via,
        "action": event.action,
        "dataset": event.dataset,
        "version": event.version,
        "outcome": event.outcome,
        "detail": event.detail,
        "client": event.client,
        "request_id": event.request_id,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


class Audit:
    """The audit table, reached as :attr:`Catalog.audit`."""

    def __init__(self, write: Transaction, read: Transaction) -> None:
        self._write, self._read = write, read

    def append(self, event: AuditEvent) -> int:
        """Record ``event`` at the end of the chain; its sequence number."""
        detail = json.loads(dumps_json(event.detail))  # what the JSON column will give back
        event = _with_detail(event, detail)
        at = _now()
        with self._write() as conn:
            seq, prev = _lock_head(conn)
            digest = chain_hash(prev, seq, at, event)
            conn.execute(
                sa.insert(audit).values(
                    seq=seq,
                    at=at,
                    actor=event.actor,
                    via=event.via,
                    action=event.action,
                    dataset=event.dataset,
                    version=event.version,
                    outcome=event.outcome,
                    detail=detail,
                    client=event.client,
                    request_id=event.request_id,
                    prev_hash=prev,
                    hash=digest,
                )
            )
            conn.execute(sa.update(audit_head).where(_H.id == 1).values(seq=seq, hash=digest))
        return seq

    def rows(
        self,
        *,
        actor: str | None = None,
        dataset: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[AuditRecord]:
        """Rows in sequence order after ``after``, filtered by what is given."""
        after = min(after, _LAST_SEQ)  # past every row; a larger number overflows the SQL integer
        query = sa.select(audit).where(_A.seq > after).order_by(_A.seq).limit(limit)
        for column, value in ((_A.actor, actor), (_A.dataset, dataset), (_A.action, action)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(_A.at >= since)
        if until is not None:
            query = query.where(_A.at < until)
        with self._read() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def verify(self, *, batch: int = 10_000) -> AuditCheck:
        """Recompute the whole chain; the first row that breaks it, named by its ``seq``."""
        with self._read() as conn:
            head = conn.execute(sa.select(_H.seq, _H.hash).where(_H.id == 1)).first()
        head_seq, head_hash = (0, GENESIS) if head is None else (int(head.seq), str(head.hash))
        expected_seq, prev, count = 1, GENESIS, 0

        def fail(seq: int | None, problem: str) -> AuditCheck:
            return AuditCheck(False, count, head_seq, head_hash, seq, problem)

        for record in self._all(batch):
            if record.seq != expected_seq:
                missing = (
                    f"{expected_seq}"
                    if record.seq == expected_seq + 1
                    else f"{expected_seq}-{record.seq - 1}"
                )
                return fail(
                    expected_seq, f"row {missing} is missing (deleted): the chain jumps to row {record.seq}"
                )
            if record.prev_hash != prev:
                return fail(
                    record.seq,
                    f"row {record.seq} does not follow row {record.seq - 1} (an earlier row changed)",
                )
            if chain_hash(prev, record.seq, record.at, record.event) != record.hash:
                return fail(record.seq, f"row {record.seq} was edited: its hash does not match its fields")
            prev, expected_seq, count = record.hash, expected_seq + 1, count + 1
        if count != head_seq or prev != head_hash:
            return fail(
                count + 1,
                f"the log ends at row {count} but its head records row {head_seq}: "
                f"rows {count + 1}-{head_seq} were deleted (or the head was changed)",
            )
        return AuditCheck(True, count, head_seq, head_hash)

    def _all(self, batch: int) -> Iterator[AuditRecord]:
        after = 0
        while True:
            with self._read() as conn:
                rows = conn.execute(
                    sa.select(audit).where(_A.seq > after).order_by(_A.seq).limit(batch)
                ).mappings()
                records = [_record(row) for row in rows]
            yield from records
            if len(records) < batch:
                return
            after = records[-1].seq


def _lock_head(conn: sa.Connection) -> tuple[int, str]:
    """Lock the head row (making it on the very first append) and return the next ``seq``
    and the ``prev_hash`` it chains to."""
    locked = sa.select(_H.seq, _H.hash).where(_H.id == 1).with_for_update()
    head = conn.execute(locked).first()
    if head is None:
        # FOR UPDATE locks nothing while there is no row, so concurrent first appends race to
        # make it (PostgreSQL): the loser's insert fails once the winner commits, and it then
        # locks the winner's row
        try:
            with conn.begin_nested():
                conn.execute(sa.insert(audit_head).values(id=1, seq=0, hash=GENESIS))
        except IntegrityError:
            pass
        head = conn.execute(locked).one()
    return int(head.seq) + 1, str(head.hash)


def _record(row: Any) -> AuditRecord:
    event = AuditEvent(
        action=row["action"],
        outcome=row["outcome"],
        actor=row["actor"],
        via=row["via"],
        dataset=row["dataset"],
        version=row["version"],
        detail=row["detail"],
        client=row["client"],
        request_id=row["request_id"],
    )
    return AuditRecord(int(row["seq"]), row["at"], event, row["prev_hash"], row["hash"])


def _with_detail(event: AuditEvent, detail: dict[str, Any]) -> AuditEvent:
    return AuditEvent(
        event.action,
        event.outcome,
        event.actor,
        event.via,
        event.dataset,
        event.version,
        detail,
        event.client,
        event.request_id,
    )


def _instant(at: datetime) -> str:
    """``at`` in UTC to the microsecond: what both backends store and give back."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> datetime:
    return datetime.now(UTC)
