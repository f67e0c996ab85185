"""Verifying the audit chain: with the chain keys, then against the signed checkpoints.

The walk checks every event in seq order, a batch at a time: the sequence has no gap, each
event links to the previous one, and its hash is the chain step of its version (v2: HMAC
under the key it names). It does not stop at the first break: it re-synchronises on the
stored hash and carries on, so one walk reports every kind of damage, each run of broken
events folded into one finding.

Then each signed checkpoint (see checkpoints.py) is held against the chain: the event it
names must still be at its seq with its hash, the chain must reach it, and the checkpoints
the chain itself records (`audit.checkpoint` events) must be in the checkpoint file.

Findings of severity "tampering" make the result not ok; "note" findings (an open streamed
read, no checkpoint yet) do not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from warden.audit.chain import (
    CHAIN_V1,
    GENESIS_HASH,
    chain_version,
    expected_hash,
    iso_utc,
)
from warden.audit.keys import ChainKeyring
from warden.audit.models import CHECKPOINT_ACTION, HEAD_ID, AuditEvent, AuditHead
from warden.audit.readable import Unreadable, readable
from warden.audit.rollbacks import rolled_back
from warden.audit.unwalked import MAX_FINDINGS, OUTSIDE, unwalked

if TYPE_CHECKING:
    from warden.audit.checkpoints import Checkpoint, CheckpointLog

VERIFY_BATCH = 5000

# Finding kinds. Tampering:
GAP = "gap"  # events missing from the middle of the sequence
RELINKED = "relinked"  # prev_hash is not the previous event's hash (reordered, re-linked)
REWRITTEN = "rewritten"  # the hash is not the keyed chain step: edited or re-hashed without the key
UNKNOWN_KEY = "unknown_key"  # chained with a key this deployment does not hold
DOWNGRADE = "downgrade"  # an unkeyed (v1) event where only keyed ones may be
TRUNCATION = "truncation"  # the chain ends before the head or a checkpoint says it does
DELETION = "deletion"  # every event up to a checkpoint is gone
RECHAINED = "rechained"  # a checkpointed event moved to another seq: removed and renumbered
HEAD = "head_mismatch"  # the head row disagrees with the chain
BEYOND_HEAD = "beyond_head"  # an event past the head: written around the chain
# and OUTSIDE, NOT_CANONICAL, NOT_A_TABLE: what the walk cannot see (unwalked.py), and
# ROLLED_BACK: a revoked token or disabled principal written back to before (rollbacks.py)
CHECKPOINT_FORGED = "checkpoint_forged"  # a checkpoint line whose signature or content fails
CHECKPOINT_MISSING = "checkpoint_missing"  # a checkpoint the chain records is not in the file
# Notes:
OPEN_INTENT = "open_intent"  # a streamed read's intent without its completion
ORPHAN_COMPLETION = "orphan_completion"  # a completion whose intent is not in the chain
NO_CHECKPOINT = "no_checkpoint"  # nothing protects the chain against truncation yet
OTHER_STORE = "other_store"  # checkpoints recorded by another checkpoint store: not checked here

NOTES = frozenset({OPEN_INTENT, ORPHAN_COMPLETION, NO_CHECKPOINT, OTHER_STORE})


@dataclass
class Finding:
    kind: str
    seq: int | None
    id: str | None
    detail: str
    count: int = 1
    last_seq: int | None = None

    @property
    def severity(self) -> str:
        return "note" if self.kind in NOTES else "tampering"


@dataclass(frozen=True)
class BrokenLink:
    seq: int
    id: str | None  # None where the break is a missing event (a gap, a truncated tail)
    reason: str


@dataclass(frozen=True)
class CheckpointSummary:
    n: int
    seq: int
    ts: str
    store: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_broken: BrokenLink | None
    head_seq: int | None
    findings: list[Finding] = field(default_factory=list)
    key_ids: list[str] = field(default_factory=list)
    checkpoints_checked: int = 0
    checkpoint_file: str | None = None
    newest_checkpoint: CheckpointSummary | None = None
    # Events after the newest checkpoint: a database writer could still remove these unseen.
    unprotected_events: int = 0
    unprotected_since: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None


class _Findings:
    def __init__(self) -> None:
        self.items: list[Finding] = []
        self.dropped = 0

    def add(self, kind: str, seq: int | None, event_id: str | None, detail: str) -> None:
        last = self.items[-1] if self.items else None
        end = None if last is None else (last.seq if last.last_seq is None else last.last_seq)
        if last is not None and last.kind == kind and seq is not None and end == seq - 1:
            last.count += 1
            last.last_seq = seq
            return
        if len(self.items) >= MAX_FINDINGS:
            self.dropped += 1
            return
        self.items.append(Finding(kind, seq, event_id, detail))


@dataclass
class _Walk:
    checked: int = 0
    prev_seq: int = 0
    prev_hash: str = GENESIS_HASH
    first_seq: int | None = None
    max_v1_seq: int = 0
    seen_v2: bool = False
    # (store, n) -> (seq, digest) of the checkpoints the chain records
    recorded: dict[tuple[str, int], tuple[int, str | None]] = field(default_factory=dict)
    open_intents: dict[str, tuple[int, str, str]] = field(default_factory=dict)


def walk_range(
    db: Session,
    keyring: ChainKeyring,
    *,
    after_seq: int,
    after_hash: str,
    upto_seq: int | None,
    findings: _Findings,
    state: _Walk | None = None,
    batch_size: int = VERIFY_BATCH,
    v1_until: int | None = None,
) -> _Walk:
    """Check the events after `after_seq` (whose hash is `after_hash`) up to `upto_seq`."""
    walk = state or _Walk()
    walk.prev_seq, walk.prev_hash = after_seq, after_hash
    table = AuditEvent.__table__
    while True:
        query = (
            select(table).where(table.c.seq > walk.prev_seq).order_by(table.c.seq).limit(batch_size)
        )
        if upto_seq is not None:
            query = query.where(table.c.seq <= upto_seq)
        rows = readable(db, query)
        if not rows:
            break
        for row in rows:
            if isinstance(row, Unreadable):
                findings.add(
                    REWRITTEN,
                    row.seq,
                    row.id,
                    "an event whose fields are not of their types (written past Warden):"
                    " it cannot be read, let alone hashed",
                )
                walk.prev_seq, walk.prev_hash = row.seq, row.hash or ""
                walk.checked += 1
                continue
            _check_row(row, walk, keyring, findings, v1_until)
    return walk


def _check_row(
    row: Any,
    walk: _Walk,
    keyring: ChainKeyring,
    findings: _Findings,
    v1_until: int | None,
) -> None:
    seq, event_id = row["seq"], row["id"]
    if walk.first_seq is None:
        walk.first_seq = seq
    if seq != walk.prev_seq + 1:
        missing = (
            f"{walk.prev_seq + 1}"
            if seq == walk.prev_seq + 2
            else (f"{walk.prev_seq + 1}-{seq - 1}")
        )
        findings.add(GAP, seq, event_id, f"sequence gap: event(s) {missing} missing")
    elif row["prev_hash"] != walk.prev_hash:
        findings.add(
            RELINKED,
            seq,
            event_id,
            "prev_hash does not match the previous event's hash (reordered or re-linked)",
        )
    version = chain_version(row)
    if version == CHAIN_V1:
        walk.max_v1_seq = seq
        if walk.seen_v2 or (v1_until is not None and seq > v1_until):
            findings.add(
                DOWNGRADE,
                seq,
                event_id,
                "an unkeyed (v1) event where the chain is keyed: re-hashed without the key",
            )
    else:
        walk.seen_v2 = True
    expected = expected_hash(row, keyring)
    if expected is None:
        findings.add(
            UNKNOWN_KEY,
            seq,
            event_id,
            f"chained with key {row['key_id']!r}, which is not among this deployment's chain"
            f" keys ({', '.join(keyring.ids)}): the chain key was replaced or lost",
        )
    elif expected != row["hash"]:
        findings.add(
            REWRITTEN,
            seq,
            event_id,
            "hash mismatch: the event was altered, or re-hashed without the chain key"
            " (an edit, or a re-chaining after events were removed)",
        )
    walk.prev_seq, walk.prev_hash = seq, row["hash"]
    walk.checked += 1
    _note_content(row, walk, findings)


def _note_content(row: Mapping[str, Any], walk: _Walk, findings: _Findings) -> None:
    details = row["details"] if isinstance(row["details"], dict) else {}
    if row["action"] == CHECKPOINT_ACTION:
        store, n = details.get("store"), details.get("checkpoint")
        if isinstance(store, str) and isinstance(n, int):
            digest = details.get("digest")
            walk.recorded[(store, n)] = (row["seq"], digest if isinstance(digest, str) else None)
    stream = details.get("stream")
    if isinstance(stream, dict) and isinstance(stream.get("id"), str):
        sid, phase = stream["id"], stream.get("phase")
        if phase == "intent":
            walk.open_intents[sid] = (row["seq"], row["id"], iso_utc(row["ts"]))
        elif phase == "completion" and walk.open_intents.pop(sid, None) is None:
            findings.add(
                ORPHAN_COMPLETION,
                row["seq"],
                row["id"],
                f"completion of stream {sid} whose intent is not in the chain",
            )


def load_head(db: Session) -> AuditHead | None:
    query = select(AuditHead).where(AuditHead.id == HEAD_ID)
    return db.scalar(query.execution_options(populate_existing=True))


def verify(
    db: Session,
    keyring: ChainKeyring,
    *,
    checkpoints: CheckpointLog | None = None,
    batch_size: int = VERIFY_BATCH,
) -> VerifyResult:
    """Walk the whole chain, then hold it against the checkpoints; see the module doc.

    The head is read first and the walk stops at its seq, so appends made meanwhile neither
    break nor lengthen the check.
    """
    head = load_head(db)
    head_seq = head.seq if head is not None else None
    head_hash = head.hash if head is not None else None
    findings = _Findings()
    valid: list[Checkpoint] = list(checkpoints.checkpoints) if checkpoints else []
    v1_until = max((c.v1_until for c in valid), default=None)
    walk = walk_range(
        db,
        keyring,
        after_seq=0,
        after_hash=GENESIS_HASH,
        upto_seq=head_seq,
        findings=findings,
        batch_size=batch_size,
        v1_until=v1_until,
    )
    prev_seq, prev_hash = walk.prev_seq, walk.prev_hash
    table = AuditEvent.__table__

    if head is None:
        findings.add(HEAD, prev_seq + 1, None, "the chain head row is missing")
    elif head_seq != prev_seq:
        findings.add(
            TRUNCATION,
            prev_seq + 1,
            None,
            f"the chain ends at seq {prev_seq} but the head says {head_seq}:"
            " events were removed from the tail",
        )
    elif head_hash != prev_hash:
        findings.add(HEAD, prev_seq, None, "the head hash does not match the last event's hash")
    last_seq = db.scalar(select(func.max(table.c.seq)))
    if last_seq is not None and not isinstance(last_seq, int):  # SQLite stores what it is given
        stray = db.scalar(select(table.c.id).where(table.c.seq == last_seq))
        findings.add(OUTSIDE, None, stray, f"an event numbered {str(last_seq)[:20]!r}")
        last_seq = head_seq
    for kind, seq, event_id, detail in [*unwalked(db), *rolled_back(db)]:
        findings.add(kind, seq, event_id, detail)
    if head_seq is not None and last_seq is not None and last_seq > head_seq:
        # An append commits its event and the head together, so an event the head has not
        # reached (read after the event was seen) was written around the chain.
        head_now = load_head(db)
        if head_now is None or head_now.seq < last_seq:
            stray = db.scalar(select(table.c.id).where(table.c.seq == last_seq))
            detail = "event beyond the chain head: written around the chain"
            findings.add(BEYOND_HEAD, last_seq, stray, detail)

    newest: Checkpoint | None = None
    if checkpoints is not None:
        for problem in checkpoints.problems:
            findings.items.append(problem)
        for cp in valid:
            _check_checkpoint(db, cp, findings, last_seq)
            if newest is None or cp.seq > newest.seq:
                newest = cp
        _check_recorded(walk, checkpoints, findings)
    for sid, (seq, event_id, ts) in list(walk.open_intents.items())[:MAX_FINDINGS]:
        findings.add(
            OPEN_INTENT,
            seq,
            event_id,
            f"streamed read {sid} (intent at {ts}) has no completion: still running, or the"
            " server stopped before recording how it ended",
        )

    unprotected, since = 0, None
    chain_end = min(prev_seq, head_seq) if head_seq is not None else prev_seq
    protected_to = newest.seq if newest is not None else 0
    if chain_end > protected_to:
        unprotected = int(
            db.scalar(
                select(func.count())
                .select_from(table)
                .where(table.c.seq > protected_to, table.c.seq <= chain_end)
            )
            or 0
        )
        first_ts = db.scalar(
            select(table.c.ts).where(table.c.seq > protected_to).order_by(table.c.seq).limit(1)
        )
        since = iso_utc(first_ts) if first_ts is not None else None
    if newest is None and walk.checked:
        findings.add(
            NO_CHECKPOINT,
            None,
            None,
            "no signed checkpoint covers this chain: a database writer could truncate or replace"
            " it unseen; run `warden audit checkpoint`",
        )
    if findings.dropped:
        findings.items.append(
            Finding("more", None, None, f"{findings.dropped} more findings not listed")
        )

    tampering = [f for f in findings.items if f.severity == "tampering"]
    first = tampering[0] if tampering else None
    return VerifyResult(
        ok=not tampering,
        checked=walk.checked,
        first_broken=BrokenLink(first.seq or 0, first.id, first.detail) if first else None,
        head_seq=head_seq,
        findings=findings.items,
        key_ids=keyring.ids,
        checkpoints_checked=len(valid),
        checkpoint_file=str(checkpoints.path) if checkpoints is not None else None,
        newest_checkpoint=CheckpointSummary(newest.n, newest.seq, newest.ts, newest.store)
        if newest
        else None,
        unprotected_events=unprotected,
        unprotected_since=since,
        first_seq=walk.first_seq,
        last_seq=last_seq,
    )


def _check_checkpoint(
    db: Session, cp: Checkpoint, findings: _Findings, last_seq: int | None
) -> None:
    """The event a checkpoint names is at its seq with its hash, or say what became of it."""
    if cp.seq == 0:
        return
    table = AuditEvent.__table__
    at = db.execute(select(table.c.id, table.c.hash).where(table.c.seq == cp.seq)).first()
    label = f"checkpoint {cp.n} ({cp.ts}) covers seq {cp.seq}"
    if at is not None and at.id == cp.event_id and at.hash == cp.hash:
        return
    if at is not None and at.id == cp.event_id:
        findings.add(
            REWRITTEN,
            cp.seq,
            cp.event_id,
            f"{label} with hash {cp.hash[:12]}…, but that event now hashes to {at.hash[:12]}…:"
            " it or an event before it was rewritten",
        )
        return
    moved = db.scalar(select(table.c.seq).where(table.c.id == cp.event_id))
    if moved is not None:
        findings.add(
            RECHAINED,
            moved,
            cp.event_id,
            f"{label}, but its event is now at seq {moved}: {cp.seq - moved} event(s) before it"
            " were removed and the chain renumbered and re-hashed",
        )
        return
    remaining = db.scalar(select(func.count()).select_from(table).where(table.c.seq <= cp.seq))
    if not remaining:
        findings.add(
            DELETION,
            cp.seq,
            cp.event_id,
            f"{label}, but every event up to it is gone: checkpointed events were deleted",
        )
    elif last_seq is None or last_seq < cp.seq:
        findings.add(
            TRUNCATION,
            cp.seq,
            cp.event_id,
            f"{label}, but the chain ends at seq {last_seq}: events after seq {last_seq} were"
            " removed and the head reset",
        )
    else:
        findings.add(
            REWRITTEN,
            cp.seq,
            cp.event_id,
            f"{label}, but that event is gone and seq {cp.seq} holds another: the chain was"
            " rewritten",
        )


def _check_recorded(walk: _Walk, log: CheckpointLog, findings: _Findings) -> None:
    """Every checkpoint the chain records for this store is in the file, unaltered."""
    in_file = {(c.store, c.n): c for c in log.checkpoints}
    forged = {(log.store, n) for n in log.forged_numbers}
    # This folder's stores: the signing key now, and every key whose checkpoints it holds or
    # whose public key is kept (a rotated signing key).
    local = {log.store, *(c.store for c in log.checkpoints), *log.known_stores}
    others: set[str] = set()
    for (store, n), (seq, digest) in sorted(walk.recorded.items(), key=lambda kv: kv[1][0]):
        if store not in local:
            others.add(store)
            continue
        cp = in_file.get((store, n))
        if cp is None:
            if (store, n) in forged:
                continue  # already reported as forged
            where = "is missing" if log.exists else "does not exist"
            findings.add(
                CHECKPOINT_MISSING,
                seq,
                None,
                f"the chain records checkpoint {n} of this store, but it is not in the checkpoint"
                f" file ({log.path} {where}): checkpoint records were deleted",
            )
        elif digest is not None and digest != cp.digest:
            findings.add(
                CHECKPOINT_FORGED,
                seq,
                None,
                f"checkpoint {n} in the file is not the one the chain recorded: it was replaced",
            )
    for store in sorted(others):
        findings.add(
            OTHER_STORE,
            None,
            None,
            f"the chain records checkpoints of another store ({store}), not checked here",
        )
