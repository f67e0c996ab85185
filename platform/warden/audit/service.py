"""Appending, verifying and querying the hash-chained audit log.

`append()` writes inside the caller's transaction (for events that must commit atomically with
a change); `record()` writes in a transaction of its own and fails closed. Either way the
event's OTel log record goes out only once its transaction has committed.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import bindparam, func, insert, inspect, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from warden.audit.chain import GENESIS_HASH, canonical, chain_hash, iso_utc, normalise_json, utc
from warden.audit.models import AuditEvent, AuditHead
from warden.audit.telemetry import current_trace_id, emit_audit_log
from warden.errors import AuditUnavailable, BadRequest, Unprocessable

log = logging.getLogger("warden.audit")

HEAD_ID = 1
DECISIONS = ("allow", "deny", "error")
MAX_QUERY_LIMIT = 1000
VERIFY_BATCH = 5000
_PENDING_KEY = "warden.audit.pending"
_CURSOR_RE = re.compile(r"^v1:([1-9][0-9]{0,17})$")

Decision = Literal["allow", "deny", "error"]


@dataclass
class AuditRecord:
    """What happened, as a service describes it; the chain fields are added on append."""

    action: str
    decision: Decision
    actor: str
    actor_kind: str
    on_behalf_of: str | None = None
    tenant: str | None = None
    dataset: str | None = None
    dataset_version: str | None = None
    purpose: str | None = None
    rule: str | None = None
    policy_version: int | None = None
    columns: Sequence[str] = ()
    masked_columns: Sequence[str] = ()
    row_filter: Sequence[Mapping[str, Any]] = ()
    rows: int | None = None
    bytes: int | None = None
    grant_ids: Sequence[str] = ()
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BrokenLink:
    seq: int
    id: str | None  # None where the break is a missing event (a gap, a truncated tail)
    reason: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_broken: BrokenLink | None
    head_seq: int | None


# ---------------------------------------------------------------------------------------------
# Appending


def ensure_head(db: Session) -> AuditHead:
    """Create the chain head (seq 0, genesis hash) if missing; safe when run concurrently."""
    head = _load_head(db, lock=False)
    if head is not None:
        return head
    if db.scalar(select(AuditEvent.seq).limit(1)) is not None:
        # A head and its first event commit together: under READ COMMITTED both may have
        # landed between the two reads above, so look once more before calling it lost.
        head = _load_head(db, lock=False)
        if head is not None:
            return head
        # Re-creating a lost head would hide a truncation; verify() reports it instead.
        raise AuditUnavailable("audit chain head is missing while events exist; run audit verify")
    values = {"id": HEAD_ID, "seq": 0, "hash": GENESIS_HASH}
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        db.execute(pg_insert(AuditHead).values(values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        db.execute(sqlite_insert(AuditHead).values(values).on_conflict_do_nothing())
    else:
        try:
            with db.begin_nested():
                db.add(AuditHead(**values))
        except IntegrityError:
            pass
    head = _load_head(db, lock=False)
    assert head is not None
    return head


def append(db: Session, rec: AuditRecord) -> AuditEvent:
    """Append one event inside the caller's transaction; the caller commits.

    Appends are serialised on the head row: a row lock on PostgreSQL, and on SQLite the
    database write lock, taken by a write to the head before it is read.
    """
    fields = _checked(rec)
    head = _lock_head(db)
    event = _chained(rec, fields, head.seq + 1, head.hash)
    head.seq = event.seq
    head.hash = event.hash
    db.add(event)
    db.flush()
    _log_after_commit(db, event)
    return event


def record(sessions: sessionmaker[Session], rec: AuditRecord) -> AuditEvent:
    """Append in a transaction of its own, durable on return; any failure is AuditUnavailable.

    The same chain step as `append`, in three statements: advance the head (which takes the
    head's row lock, or SQLite's write lock) and read the previous hash in one, insert the
    event, store the new hash.
    """
    try:
        db = sessions()
    except Exception as exc:
        raise _unavailable(exc) from exc
    try:
        fields = _checked(rec)
        conn = db.connection()
        advanced = conn.execute(_ADVANCE_HEAD).first()
        if advanced is None:
            ensure_head(db)
            advanced = conn.execute(_ADVANCE_HEAD).first()
            assert advanced is not None
        seq, prev_hash = advanced
        event = _chained(rec, fields, seq, prev_hash)
        conn.execute(_INSERT_EVENT, {c: getattr(event, c) for c in _EVENT_COLUMNS})
        conn.execute(_STORE_HASH, {"new_hash": event.hash})
        db.commit()
    except Exception as exc:
        _rollback_quietly(db)
        raise _unavailable(exc) from exc
    finally:
        db.close()
    try:
        emit_audit_log(event)
    except Exception:
        log.exception("could not emit the OTel log record for audit event %s", event.id)
    return event


_EVENT_COLUMNS = tuple(c.key for c in AuditEvent.__table__.columns)
_ADVANCE_HEAD = (
    update(AuditHead)
    .where(AuditHead.id == HEAD_ID)
    .values(seq=AuditHead.seq + 1)
    .returning(AuditHead.seq, AuditHead.hash)
)
_INSERT_EVENT = insert(AuditEvent)
_STORE_HASH = update(AuditHead).where(AuditHead.id == HEAD_ID).values(hash=bindparam("new_hash"))


@dataclass(frozen=True)
class _Fields:
    columns: Any
    masked: Any
    row_filter: Any
    grant_ids: Any
    details: Any


def _checked(rec: AuditRecord) -> _Fields:
    """The record's JSON fields as a JSON column gives them back (Unprocessable if it can't)."""
    if rec.decision not in DECISIONS:
        raise Unprocessable(f"audit decision must be one of {', '.join(DECISIONS)}")
    try:
        return _Fields(
            columns=normalise_json(list(rec.columns)),
            masked=normalise_json(list(rec.masked_columns)),
            row_filter=normalise_json([dict(f) for f in rec.row_filter]),
            grant_ids=normalise_json(list(rec.grant_ids)),
            details=normalise_json(dict(rec.details)),
        )
    except (TypeError, ValueError) as exc:
        raise Unprocessable(f"audit record is not JSON-serialisable: {exc}") from exc


def _chained(rec: AuditRecord, fields: _Fields, seq: int, prev_hash: str) -> AuditEvent:
    event = AuditEvent(
        seq=seq,
        id=uuid.uuid4().hex,
        ts=datetime.now(UTC),
        actor=rec.actor,
        actor_kind=rec.actor_kind,
        on_behalf_of=rec.on_behalf_of,
        tenant=rec.tenant,
        action=rec.action,
        dataset=rec.dataset,
        dataset_version=rec.dataset_version,
        purpose=rec.purpose,
        decision=rec.decision,
        rule=rec.rule,
        policy_version=None if rec.policy_version is None else int(rec.policy_version),
        columns=fields.columns,
        masked_columns=fields.masked,
        row_filter=fields.row_filter,
        rows=None if rec.rows is None else int(rec.rows),
        bytes=None if rec.bytes is None else int(rec.bytes),
        grant_ids=fields.grant_ids,
        trace_id=current_trace_id(),
        reason=rec.reason,
        details=fields.details,
        prev_hash=prev_hash,
    )
    event.hash = chain_hash(prev_hash, canonical(event))
    return event


def _lock_head(db: Session) -> AuditHead:
    if db.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks: writing first takes the database write lock (waiting on the
        # busy timeout), so the head read next cannot go stale before this transaction commits.
        db.execute(
            update(AuditHead).where(AuditHead.id == HEAD_ID).values(seq=AuditHead.seq),
            execution_options={"synchronize_session": False},
        )
    head = _load_head(db, lock=True)
    if head is None:
        ensure_head(db)
        head = _load_head(db, lock=True)
        assert head is not None
    return head


def _load_head(db: Session, *, lock: bool) -> AuditHead | None:
    query = select(AuditHead).where(AuditHead.id == HEAD_ID)
    if lock:
        query = query.with_for_update()
    return db.scalar(query.execution_options(populate_existing=True))


def _log_after_commit(db: Session, event: AuditEvent) -> None:
    pending: list[AuditEvent] | None = db.info.get(_PENDING_KEY)
    if pending is None:
        pending = db.info[_PENDING_KEY] = []
        sa_event.listen(db, "after_commit", _emit_pending)
        sa_event.listen(db, "after_rollback", _drop_pending)
    pending.append(event)


def _emit_pending(db: Session) -> None:
    pending: list[AuditEvent] = db.info.get(_PENDING_KEY, [])
    events, pending[:] = list(pending), []
    for event in events:
        # An event appended inside a savepoint that rolled back is no longer in the session.
        if not inspect(event).persistent:
            continue
        try:
            emit_audit_log(event)
        except Exception:
            log.exception("could not emit the OTel log record for audit event %s", event.id)


def _drop_pending(db: Session) -> None:
    pending: list[AuditEvent] = db.info.get(_PENDING_KEY, [])
    pending.clear()


def _unavailable(exc: BaseException) -> AuditUnavailable:
    log.error("audit write failed: %s: %s", type(exc).__name__, exc)
    return AuditUnavailable("the audit store is unavailable; nothing was done")


def _rollback_quietly(db: Session) -> None:
    try:
        db.rollback()
    except Exception:
        log.exception("rollback after a failed audit write failed")


# ---------------------------------------------------------------------------------------------
# Verifying


def verify(db: Session, *, batch_size: int = VERIFY_BATCH) -> VerifyResult:
    """Walk the chain in seq order, a batch at a time, and report the first broken link.

    The head is read first and the walk stops at its seq, so appends made meanwhile neither
    break nor lengthen the check.
    """
    head = _load_head(db, lock=False)
    head_seq = head.seq if head is not None else None
    head_hash = head.hash if head is not None else None
    table = AuditEvent.__table__
    prev_seq, prev_hash, checked = 0, GENESIS_HASH, 0

    def broken(seq: int, event_id: str | None, reason: str) -> VerifyResult:
        return VerifyResult(False, checked, BrokenLink(seq, event_id, reason), head_seq)

    while True:
        query = select(table).where(table.c.seq > prev_seq).order_by(table.c.seq).limit(batch_size)
        if head_seq is not None:
            query = query.where(table.c.seq <= head_seq)
        rows = db.execute(query).mappings().all()
        if not rows:
            break
        for row in rows:
            seq, event_id = row["seq"], row["id"]
            if seq != prev_seq + 1:
                missing = f"{prev_seq + 1}" if seq == prev_seq + 2 else f"{prev_seq + 1}-{seq - 1}"
                return broken(seq, event_id, f"sequence gap: event(s) {missing} missing")
            if row["prev_hash"] != prev_hash:
                return broken(seq, event_id, "prev_hash does not match the previous event's hash")
            if chain_hash(row["prev_hash"], canonical(row)) != row["hash"]:
                return broken(seq, event_id, "hash mismatch: the event was altered")
            prev_seq, prev_hash = seq, row["hash"]
            checked += 1

    if head is None:
        return broken(prev_seq + 1, None, "the chain head row is missing")
    if head_seq != prev_seq:
        return broken(
            prev_seq + 1,
            None,
            f"the chain ends at seq {prev_seq} but the head says {head_seq}:"
            " events were removed from the tail",
        )
    if head_hash != prev_hash:
        return broken(prev_seq, None, "the head hash does not match the last event's hash")
    # An append commits its event and the head together, so an event the head has not reached
    # (read after the event was seen) was written around the chain.
    last_seq = db.scalar(select(func.max(table.c.seq)))
    if last_seq is not None and last_seq > head_seq:
        head_now = _load_head(db, lock=False)
        if head_now is None or head_now.seq < last_seq:
            stray = db.scalar(select(table.c.id).where(table.c.seq == last_seq))
            return broken(last_seq, stray, "event beyond the chain head: written around the chain")
    return VerifyResult(True, checked, None, head_seq)


# ---------------------------------------------------------------------------------------------
# Querying


def query(
    db: Session,
    *,
    actor: str | None = None,
    dataset: str | None = None,
    action: str | None = None,
    decision: str | None = None,
    tenant: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
    with_untenanted: bool = False,
) -> tuple[list[AuditEvent], str | None]:
    """Events newest first, `since` inclusive and `until` exclusive; returns (page, next_cursor).

    `with_untenanted` adds events no tenant could be named for (unauthenticated attempts).
    """
    if not 1 <= limit <= MAX_QUERY_LIMIT:
        raise Unprocessable(f"limit must be between 1 and {MAX_QUERY_LIMIT}")
    stmt = select(AuditEvent)
    for column, value in (
        (AuditEvent.actor, actor),
        (AuditEvent.dataset, dataset),
        (AuditEvent.action, action),
        (AuditEvent.decision, decision),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if tenant is not None:
        mine = AuditEvent.tenant == tenant
        stmt = stmt.where(mine | AuditEvent.tenant.is_(None) if with_untenanted else mine)
    if since is not None:
        stmt = stmt.where(AuditEvent.ts >= utc(since))
    if until is not None:
        stmt = stmt.where(AuditEvent.ts < utc(until))
    if cursor is not None:
        stmt = stmt.where(AuditEvent.seq < decode_cursor(cursor))
    events = list(db.scalars(stmt.order_by(AuditEvent.seq.desc()).limit(limit + 1)))
    if len(events) > limit:
        return events[:limit], encode_cursor(events[limit - 1].seq)
    return events, None


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The seq a cursor continues below; anything not made by encode_cursor is BadRequest."""
    if len(cursor) > 64:
        raise BadRequest("malformed cursor")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("malformed cursor") from exc
    match = _CURSOR_RE.fullmatch(text)
    if match is None:
        raise BadRequest("malformed cursor")
    return int(match.group(1))


def event_dict(event: AuditEvent) -> dict[str, Any]:
    """An event as plain JSON-ready data (timestamps in the chain's ISO form)."""
    return {
        "seq": event.seq,
        "id": event.id,
        "ts": iso_utc(event.ts),
        "actor": event.actor,
        "actor_kind": event.actor_kind,
        "on_behalf_of": event.on_behalf_of,
        "tenant": event.tenant,
        "action": event.action,
        "dataset": event.dataset,
        "dataset_version": event.dataset_version,
        "purpose": event.purpose,
        "decision": event.decision,
        "rule": event.rule,
        "policy_version": event.policy_version,
        "columns": list(event.columns or []),
        "masked_columns": list(event.masked_columns or []),
        "row_filter": list(event.row_filter or []),
        "rows": event.rows,
        "bytes": event.bytes,
        "grant_ids": list(event.grant_ids or []),
        "trace_id": event.trace_id,
        "reason": event.reason,
        "details": dict(event.details or {}),
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


__all__ = [
    "AuditRecord",
    "BrokenLink",
    "VerifyResult",
    "append",
    "decode_cursor",
    "encode_cursor",
    "ensure_head",
    "event_dict",
    "query",
    "record",
    "verify",
]
