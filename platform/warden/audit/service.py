"""Appending, verifying and querying the keyed, hash-chained audit log (see docs/audit.md).

`append()` writes inside the caller's transaction (for events that must commit atomically with
a change); `record()` writes in a transaction of its own (group commit) and fails closed.
Either way the event's OTel log record goes out only once its transaction has committed.
It runs over 500 lines: the record's shape, its two write paths and the query share the chain
step and column helpers; the checks live in verify.py, checkpoints in checkpoints.py.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import BigInteger, bindparam, func, insert, inspect, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.instrumentation import manager_of_class

from warden.audit import channel, pg_group
from warden.audit import verify as _verify
from warden.audit.anchor import anchor_for
from warden.audit.chain import (
    CURRENT_CHAIN_V,
    DESCRIPTION_FIELDS,
    GENESIS_HASH,
    canonical,
    iso_utc,
    keyed_hash,
    normalise_json,
    utc,
)
from warden.audit.cursor import decode_cursor, encode_cursor
from warden.audit.keys import ChainKeyring, keys_for
from warden.audit.models import HEAD_ID, AuditEvent, AuditHead
from warden.audit.telemetry import current_trace_id, emit_audit_log
from warden.audit.verify import BrokenLink, Finding, VerifyResult
from warden.db.per_engine import PerEngine

if TYPE_CHECKING:
    from warden.audit.checkpoints import CheckpointLog
from warden.db.session import take_writer_turn
from warden.errors import AuditUnavailable, Unprocessable

log = logging.getLogger("warden.audit")

DECISIONS = ("allow", "deny", "error")
MAX_QUERY_LIMIT = 1000
VERIFY_BATCH = _verify.VERIFY_BATCH
_PENDING_KEY = "warden.audit.pending"

Decision = Literal["allow", "deny", "error"]

# Free text (rule, reason) is kept to this many characters; lists to MAX_LIST items of at
# most MAX_ITEM characters each (column names, grant ids).
MAX_TEXT = 4000
MAX_LIST = 1000
MAX_ITEM = 256
_LISTS = ("columns", "masked_columns", "row_filter", "grant_ids")


def _column_widths() -> dict[str, int]:
    widths: dict[str, int] = {}
    for column in AuditEvent.__table__.columns:
        length = getattr(column.type, "length", None)
        if column.key in {"rule", "reason"}:
            widths[column.key] = MAX_TEXT
        elif isinstance(length, int) and column.key not in {"id", "prev_hash", "hash", "key_id"}:
            widths[column.key] = length
    return widths


_WIDTHS = {k: v for k, v in _column_widths().items() if k in {*DESCRIPTION_FIELDS, "reason"}}


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

    def __post_init__(self) -> None:
        door = channel.current()  # the console's actions say so (audit/channel.py)
        if door is not None and "channel" not in self.details:
            self.details = {**self.details, "channel": door}
        self.clip()

    def clip(self) -> AuditRecord:
        """Fit every field to its column, here and only here, so callers never slice: strings
        to their column's width, free text to MAX_TEXT, lists to MAX_LIST items of at most
        MAX_ITEM characters. What was cut is noted in `details["clipped"]` (field: length).
        Idempotent; returns self."""
        clipped: dict[str, int] = {}
        for name, width in _WIDTHS.items():
            value = getattr(self, name)
            if isinstance(value, str) and len(value) > width:
                clipped[name] = len(value)
                setattr(self, name, value[:width])
        for name in _LISTS:
            value = getattr(self, name)
            if isinstance(value, str | bytes) or not isinstance(value, Sequence):
                continue
            items = list(value)
            cut = [
                v[:MAX_ITEM] if isinstance(v, str) and len(v) > MAX_ITEM else v
                for v in items[:MAX_LIST]
            ]
            if len(items) > MAX_LIST or cut != items[: len(cut)]:
                clipped[name] = len(items)
                setattr(self, name, cut)
        if clipped:
            details = dict(self.details)
            previous = details.get("clipped")
            if isinstance(previous, dict):
                clipped = {**previous, **clipped}
            details["clipped"] = clipped
            self.details = details
        return self


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
    try:
        keyring = keys_for(db.get_bind())
    except Exception as exc:
        raise _unavailable(exc) from exc
    _guard(db.get_bind(), rec.action, catch_up=False)  # in the caller's transaction
    head = _lock_head(db)
    event = AuditEvent(**_row(rec, fields, head.seq + 1, head.hash, keyring))
    head.seq = event.seq
    head.hash = event.hash
    db.add(event)
    db.flush()
    _log_after_commit(db, event)
    return event


def record(sessions: sessionmaker[Session], rec: AuditRecord) -> AuditEvent:
    """Append in a transaction of its own, durable on return; any failure is AuditUnavailable.

    Group commit: callers of one sessionmaker that arrive while an append is being written
    queue up, and the next of them writes the whole queue in one transaction (advance the head
    by N, which takes the head's row lock or SQLite's write lock, and read the previous hash;
    insert the N events; store the new hash; commit). Each caller returns only once the
    transaction holding its event has committed; if it fails, every caller in it gets
    AuditUnavailable and none of their events exists.
    """
    try:
        fields = _checked(rec)
    except Exception as exc:
        raise _unavailable(exc) from exc
    _guard(sessions.kw.get("bind"), rec.action, catch_up=True)
    return _batcher_for(sessions).submit(rec, fields)


MAX_GROUP = 256


@dataclass
class _Pending:
    rec: AuditRecord
    fields: _Fields
    trace_id: str | None  # the caller's, read in the caller's thread
    event: AuditEvent | None = None
    error: AuditUnavailable | None = None
    finished: bool = False
    # set once `finished`, or when this caller is handed the lead (then it writes the queue)
    wake: threading.Event = field(default_factory=threading.Event)


class _Batcher:
    """The group-commit queue of one sessionmaker; the leader is whichever waiting caller
    finds nobody writing (no thread of its own). Each waiter sleeps on its own event, woken
    once: when its group has committed (or failed), or when the leader hands it the lead. A
    condition notified for all would wake every waiter at every commit, most of them only to
    sleep again: under load, that churn cost a tenth of a small read's CPU."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.engine = sessions.kw.get("bind")
        self.writer = pg_group.writer_for(self.engine) if pg_group.usable(self.engine) else None
        self.cond = threading.Condition(threading.Lock())  # guards queue and leading
        self.queue: list[_Pending] = []
        self.leading = False
        self.batches = 0  # transactions written, for tests and operators

    def submit(self, rec: AuditRecord, fields: _Fields) -> AuditEvent:
        pending = _Pending(rec, fields, current_trace_id())
        with self.cond:
            self.queue.append(pending)
            lead = not self.leading
            self.leading = True
        if not lead:
            pending.wake.wait()  # its group committed (or failed), or it leads now
        if not pending.finished:
            self._lead(pending)
        if pending.error is not None:
            raise pending.error
        event = pending.event
        assert event is not None
        # In the caller's thread, so the log record correlates with the caller's own span.
        try:
            emit_audit_log(event)
        except Exception:
            log.exception("could not emit the OTel log record for audit event %s", event.id)
        _anchor(self.engine, [event])
        return event

    def _lead(self, pending: _Pending) -> None:
        """Write the queue, a group at a time, until `pending`'s group is written; then hand
        the lead to the first caller still waiting, or put it down."""
        try:
            while not pending.finished:
                batch: list[_Pending] = []

                def take(batch: list[_Pending] = batch) -> list[_Pending]:
                    """The group: taken once, as late as the write allows (see _write)."""
                    if not batch:
                        with self.cond:
                            batch[:] = self.queue[:MAX_GROUP]
                            del self.queue[: len(batch)]
                    return batch

                try:
                    self._write(take)
                except BaseException:
                    for other in take():  # never leave a waiter behind
                        if not other.finished:
                            other.error = AuditUnavailable("the audit writer was interrupted")
                            other.finished = True
                    raise
                finally:
                    for other in take():
                        if other is not pending:
                            other.wake.set()
        finally:
            with self.cond:
                if self.queue:
                    self.queue[0].wake.set()  # not finished: it takes the lead
                else:
                    self.leading = False
                self.cond.notify_all()  # for anyone watching the queue (tests, operators)

    def _write(self, take: Callable[[], list[_Pending]]) -> None:
        """Write the group `take` gives. On SQLite the group is taken once this process's turn
        at the one writer has come: callers who queued while another process wrote join it,
        instead of waiting for that write, this one and the next."""
        events: list[AuditEvent] | None = None
        error: AuditUnavailable | None = None
        if self.writer is not None:
            try:
                events = self._write_pipelined(take())
            except Exception as exc:
                error = _unavailable(exc)
        if events is None and error is None:
            try:
                events = self._write_in_session(take)
            except Exception as exc:
                error = _unavailable(exc)
        for i, pending in enumerate(take()):
            if error is None:
                assert events is not None
                pending.event = events[i]
            else:
                pending.error = error
            pending.finished = True

    def _write_pipelined(self, batch: list[_Pending]) -> list[AuditEvent] | None:
        """PostgreSQL: the group in two round trips (audit/pg_group.py); None when the head
        row must be created first (the session path does that)."""
        assert self.writer is not None
        keyring = keys_for(self.engine)

        def chain(seq: int, prev_hash: str) -> tuple[list[dict[str, Any]], str]:
            rows = []
            for pending in batch:
                row = _row(pending.rec, pending.fields, seq, prev_hash, keyring, pending.trace_id)
                rows.append(row)
                prev_hash, seq = row["hash"], seq + 1
            return rows, prev_hash

        rows = self.writer.write_group(len(batch), chain)
        if rows is None:
            return None
        self.batches += 1
        return [_committed_event(row) for row in rows]

    def _write_in_session(self, take: Callable[[], list[_Pending]]) -> list[AuditEvent]:
        db = self.sessions()
        try:
            keyring = keys_for(db.get_bind())
            conn = db.connection()
            take_writer_turn(conn, "audit group")
            batch = take()
            advanced = conn.execute(_ADVANCE_HEAD, {"n": len(batch)}).first()
            if advanced is None:
                ensure_head(db)
                advanced = conn.execute(_ADVANCE_HEAD, {"n": len(batch)}).first()
                assert advanced is not None
            last_seq, prev_hash = advanced
            seq = last_seq - len(batch) + 1
            rows = []
            for pending in batch:
                row = _row(pending.rec, pending.fields, seq, prev_hash, keyring, pending.trace_id)
                rows.append(row)
                prev_hash, seq = row["hash"], seq + 1
            conn.execute(_INSERT_EVENT, rows)
            conn.execute(_STORE_HASH, {"new_hash": prev_hash})
            db.commit()
            self.batches += 1
            return [_committed_event(row) for row in rows]
        except Exception:
            _rollback_quietly(db)
            raise
        finally:
            db.close()


_batchers: PerEngine[_Batcher] = PerEngine()  # one per sessionmaker


def _batcher_for(sessions: sessionmaker[Session]) -> _Batcher:
    return _batchers.get(sessions, lambda: _Batcher(sessions))


_EVENT_COLUMNS = tuple(c.key for c in AuditEvent.__table__.columns)
_ADVANCE_HEAD = (
    update(AuditHead)
    .where(AuditHead.id == HEAD_ID)
    .values(seq=AuditHead.seq + bindparam("n", type_=BigInteger))
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
    rec.clip()
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


def _row(
    rec: AuditRecord,
    fields: _Fields,
    seq: int,
    prev_hash: str,
    keyring: ChainKeyring,
    trace_id: str | None = None,
) -> dict[str, Any]:
    """The event's every column, chained after `prev_hash` (a plain dict: building the ORM
    object costs more than the chain step; callers get one made from it)."""
    row: dict[str, Any] = {
        "seq": seq,
        "id": uuid.uuid4().hex,
        "ts": datetime.now(UTC),
        "actor": rec.actor,
        "actor_kind": rec.actor_kind,
        "on_behalf_of": rec.on_behalf_of,
        "tenant": rec.tenant,
        "action": rec.action,
        "dataset": rec.dataset,
        "dataset_version": rec.dataset_version,
        "purpose": rec.purpose,
        "decision": rec.decision,
        "rule": rec.rule,
        "policy_version": None if rec.policy_version is None else int(rec.policy_version),
        "columns": fields.columns,
        "masked_columns": fields.masked,
        "row_filter": fields.row_filter,
        "rows": None if rec.rows is None else int(rec.rows),
        "bytes": None if rec.bytes is None else int(rec.bytes),
        "grant_ids": fields.grant_ids,
        "trace_id": trace_id if trace_id is not None else current_trace_id(),
        "reason": rec.reason,
        "details": fields.details,
        "prev_hash": prev_hash,
        "chain_v": CURRENT_CHAIN_V,
        "key_id": keyring.current.id,
    }
    row["hash"] = keyed_hash(keyring.current.secret, prev_hash, canonical(row))
    return row


def _committed_event(row: dict[str, Any]) -> AuditEvent:
    """The event a committed row is, for `record()`'s caller: made without the ORM's attribute
    events (a fifth of a group's write otherwise), as a detached copy never to be added."""
    event: AuditEvent = _EVENT_MANAGER.new_instance()
    event.__dict__.update(row)
    return event


_EVENT_MANAGER = manager_of_class(AuditEvent)


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
    # An event appended inside a savepoint that rolled back is no longer in the session.
    events = [e for e in events if inspect(e).persistent]
    for event in events:
        try:
            emit_audit_log(event)
        except Exception:
            log.exception("could not emit the OTel log record for audit event %s", event.id)
    _anchor(db.get_bind(), events)


def _anchor(bind: Any, events: list[AuditEvent]) -> None:
    """What ends access is checkpointed before the caller is answered (audit/anchor.py)."""
    found = anchor_for(bind)
    if found is not None and events:
        found.committed(getattr(bind, "engine", bind), events)


def _guard(bind: Any, action: str, *, catch_up: bool) -> None:
    """No append to a tail no checkpoint covered for too long (audit/tail.py)."""
    found = anchor_for(bind) if bind is not None else None
    if found is not None:
        found.guard(action, catch_up=catch_up)


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
# Streamed reads: an intent before the first byte, a completion after the last (issue 10)

STREAM_INTENT = "intent"
STREAM_COMPLETION = "completion"
# What a completion carries over from its intent: who read what, under which policy.
_CARRIED = (
    "actor",
    "actor_kind",
    "on_behalf_of",
    "tenant",
    "dataset",
    "dataset_version",
    "purpose",
    "policy_version",
)


def stream_intent(rec: AuditRecord) -> AuditRecord:
    """`rec` (the read's decision: who, what, columns, masks, filters, policy version) marked
    as the intent of a stream: `record()` it before the first byte leaves."""
    details = dict(rec.details)
    details["stream"] = {"phase": STREAM_INTENT, "id": uuid.uuid4().hex}
    return dataclasses.replace(rec, details=details)


def stream_completion(
    intent: AuditEvent,
    *,
    rows: int,
    bytes: int,
    sha256: str | None,
    complete: bool,
    reason: str | None = None,
) -> AuditRecord:
    """How the stream `intent` opened ended: rows and bytes sent, the SHA-256 of the bytes, and
    whether the client got all of it (`complete`) or went away (`reason`). `record()` it
    after the last byte; `verify` reports an intent with no completion as an open_intent note."""
    raw = (intent.details or {}).get("stream")
    stream: dict[str, Any] = dict(raw) if isinstance(raw, Mapping) else {}
    if stream.get("phase") != STREAM_INTENT or not isinstance(stream.get("id"), str):
        raise ValueError("not a stream intent event")
    return AuditRecord(
        action=f"{intent.action}.completion",
        decision="allow" if complete else "error",
        **{name: getattr(intent, name) for name in _CARRIED},
        rows=rows,
        bytes=bytes,
        reason=reason,
        details={
            "stream": {
                "phase": STREAM_COMPLETION,
                "id": stream["id"],
                "intent_seq": intent.seq,
                "status": "complete" if complete else "incomplete",
                "sha256": sha256,
            }
        },
    )


# ---------------------------------------------------------------------------------------------
# Verifying


def verify(
    db: Session,
    *,
    batch_size: int = VERIFY_BATCH,
    keyring: ChainKeyring | None = None,
    checkpoints: CheckpointLog | None = None,
) -> VerifyResult:
    """Check the chain with its keys (those bound to the session's engine unless given), and,
    given the checkpoint file as read, against every signed checkpoint; see verify.py."""
    keys = keyring if keyring is not None else keys_for(db.get_bind())
    return _verify.verify(db, keys, checkpoints=checkpoints, batch_size=batch_size)


# ---------------------------------------------------------------------------------------------
# Querying


def count_events(db: Session, *, tenant: str) -> int:
    """How many events of the chain are `tenant`'s."""
    mine = select(func.count()).select_from(AuditEvent).where(AuditEvent.tenant == tenant)
    return int(db.scalar(mine) or 0)


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
    event_id: str | None = None,
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
    if event_id is not None:
        stmt = stmt.where(AuditEvent.id == event_id)
    keys = keys_for(db.get_bind())
    if cursor is not None:
        stmt = stmt.where(AuditEvent.seq < decode_cursor(keys, cursor))
    events = list(db.scalars(stmt.order_by(AuditEvent.seq.desc()).limit(limit + 1)))
    if len(events) > limit:
        return events[:limit], encode_cursor(keys, events[limit - 1].seq)
    return events, None


def event_dict(event: AuditEvent, *, whole_chain: bool = True) -> dict[str, Any]:
    """An event as plain JSON-ready data (timestamps in the chain's ISO form).

    Without `whole_chain` (a tenant's view) its place in the one chain is left out: the global
    seq and the previous event's hash would show how many events, or whether any, other
    tenants wrote between two of this tenant's."""
    return {
        "seq": event.seq if whole_chain else None,
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
        "details": dict(event.details or {}) if whole_chain else _off_chain(event.details),
        "prev_hash": event.prev_hash if whole_chain else None,
        "hash": event.hash,
    }


def _off_chain(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """Details without the chain positions they carry (a streamed read's completion names its
    intent's seq; the stream's id links the two as well)."""
    shown = dict(details or {})
    stream = shown.get("stream")
    if isinstance(stream, Mapping) and "intent_seq" in stream:
        shown["stream"] = {k: v for k, v in stream.items() if k != "intent_seq"}
    return shown


__all__ = [
    "AuditRecord",
    "BrokenLink",
    "Finding",
    "VerifyResult",
    "append",
    "count_events",
    "ensure_head",
    "event_dict",
    "query",
    "record",
    "stream_completion",
    "stream_intent",
    "verify",
]
