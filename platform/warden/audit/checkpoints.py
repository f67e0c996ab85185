"""Signed checkpoints of the audit chain head, kept where the database's writers cannot go.
(It runs over 500 lines: the line format, its reader, its writer and the checkpointer that verifies
before it signs belong together.)

A checkpoint says "event `event_id` is at seq `seq` with hash `hash`", with the time, the
chain key ids and how far unkeyed (v1) events reach, signed with Ed25519 by a key outside the
database (keys.py). Each one is appended as a JSON line to `checkpoints.jsonl` in the
checkpoint folder (WARDEN_AUDIT_CHECKPOINT_DIR; point it at append-only storage), sent as an
OpenTelemetry log record, and recorded in the chain itself as an `audit.checkpoint` event, so
a deleted or truncated checkpoint file shows up in `verify` too.

Before signing, the checkpointer verifies the chain from the previous checkpoint to the head:
it never signs a chain it cannot vouch for.

`Checkpointer(platform).start()` writes one every `audit_checkpoint_interval_s` from a
background thread; `checkpoint_now()` writes one at once (CLI and API). Processes sharing a
checkpoint folder serialise on a lock file; the store is named by the signing key's id.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from warden.audit.alarms import Alarms
from warden.audit.chain import CHAIN_V1, GENESIS_HASH, canonical_json, iso_utc
from warden.audit.keys import (
    ChainKeyring,
    keys_for,
    load_public_keys,
    load_signing_key,
    public_key_id,
)
from warden.audit.models import AuditEvent
from warden.audit.service import AuditRecord, record
from warden.audit.telemetry import emit_checkpoint_log
from warden.audit.verify import (
    CHECKPOINT_ACTION,
    CHECKPOINT_FORGED,
    CHECKPOINT_MISSING,
    HEAD,
    TRUNCATION,
    Finding,
    _Findings,
    load_head,
    walk_range,
)
from warden.config import Settings
from warden.core.filesystem import append_durably

if TYPE_CHECKING:
    from warden.core.platform import Platform

log = logging.getLogger("warden.audit.checkpoints")

FILE_NAME = "checkpoints.jsonl"
LOCK_NAME = ".lock"
TAIL_BYTES = 8192  # a few checkpoint lines (each under 1 KiB)
FORMAT_V = 1
_PAYLOAD_FIELDS = (
    "v",
    "store",
    "n",
    "seq",
    "event_id",
    "hash",
    "v1_until",
    "ts",
    "chain_key_ids",
)


@dataclass(frozen=True)
class Checkpoint:
    n: int
    seq: int
    event_id: str | None
    hash: str
    v1_until: int
    ts: str
    chain_key_ids: tuple[str, ...]
    store: str
    sig: str
    digest: str  # SHA-256 of the whole line's canonical form, signature included

    def payload(self) -> dict[str, Any]:
        return {
            "v": FORMAT_V,
            "store": self.store,
            "n": self.n,
            "seq": self.seq,
            "event_id": self.event_id,
            "hash": self.hash,
            "v1_until": self.v1_until,
            "ts": self.ts,
            "chain_key_ids": list(self.chain_key_ids),
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.payload(), "sig": self.sig, "digest": self.digest}


@dataclass
class CheckpointLog:
    """The checkpoint file as read: its valid checkpoints and what is wrong with the rest."""

    path: Path
    exists: bool
    store: str
    checkpoints: list[Checkpoint] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)
    forged_numbers: set[int] = field(default_factory=set)
    known_stores: set[str] = field(default_factory=set)  # every signing key id we can check

    def newest(self, store: str | None = None) -> Checkpoint | None:
        mine = [c for c in self.checkpoints if store is None or c.store == store]
        return max(mine, key=lambda c: c.n) if mine else None


@dataclass(frozen=True)
class CheckpointOutcome:
    checkpoint: Checkpoint | None
    skipped: str | None = None  # why none was written, when nothing was wrong
    findings: list[Finding] = field(default_factory=list)  # why none was written: tampering
    event_seq: int | None = None  # the audit.checkpoint event recording it


def _digest(payload: dict[str, Any], sig: str) -> str:
    return hashlib.sha256(canonical_json({**payload, "sig": sig})).hexdigest()


class CheckpointStore:
    """The checkpoint folder of one deployment, and the keys that sign and check it."""

    def __init__(
        self,
        folder: Path,
        public_keys: dict[str, Ed25519PublicKey],
        signing_key: Ed25519PrivateKey | None = None,
    ) -> None:
        self.folder = folder
        self.public_keys = public_keys
        self.signing_key = signing_key
        self.store = public_key_id(signing_key.public_key()) if signing_key else ""

    @classmethod
    def for_settings(cls, settings: Settings) -> CheckpointStore:
        signing = load_signing_key(settings)
        return cls(settings.resolved_audit_checkpoint_dir, load_public_keys(settings), signing)

    @property
    def path(self) -> Path:
        return self.folder / FILE_NAME

    # --- reading -------------------------------------------------------------------------

    def read(self) -> CheckpointLog:
        result = CheckpointLog(
            self.path, self.path.exists(), self.store, known_stores=set(self.public_keys)
        )
        if not result.exists:
            return result
        seen: dict[str, set[int]] = {}
        with self.path.open("rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                checkpoint, problem = self._parse(raw, lineno)
                if checkpoint is None:
                    result.problems.append(Finding(CHECKPOINT_FORGED, None, None, problem))
                    number = _number_of(raw)
                    if number is not None:
                        result.forged_numbers.add(number)
                    continue
                numbers = seen.setdefault(checkpoint.store, set())
                if checkpoint.n in numbers:
                    result.problems.append(
                        Finding(
                            CHECKPOINT_FORGED,
                            checkpoint.seq,
                            None,
                            f"line {lineno}: checkpoint {checkpoint.n} appears twice",
                        )
                    )
                    continue
                numbers.add(checkpoint.n)
                result.checkpoints.append(checkpoint)
        for store, numbers in seen.items():
            expected = set(range(1, max(numbers) + 1)) - result.forged_numbers
            missing = sorted(expected - numbers)
            if missing:
                shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
                result.problems.append(
                    Finding(
                        CHECKPOINT_MISSING,
                        None,
                        None,
                        f"checkpoint(s) {shown} of store {store} are missing from {self.path}:"
                        " lines were deleted",
                    )
                )
        return result

    def last(self) -> Checkpoint | None:
        """The newest valid checkpoint, from the file's tail only (lines are appended in
        order, under the folder's lock): cheap enough to look at on every authentication."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - TAIL_BYTES))
                tail = handle.read()
        except FileNotFoundError:
            return None
        lines = tail.splitlines()
        if len(tail) == TAIL_BYTES:  # the first line may be cut
            lines = lines[1:]
        for raw in reversed(lines):
            if raw.strip():
                checkpoint, _ = self._parse(raw, 0)
                if checkpoint is not None:
                    return checkpoint
        return None

    def _parse(self, raw: bytes, lineno: int) -> tuple[Checkpoint | None, str]:
        where = f"{self.path.name} line {lineno}"
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise TypeError("not an object")
            payload = {name: doc[name] for name in _PAYLOAD_FIELDS}
            sig = doc["sig"]
            checkpoint = Checkpoint(
                n=_int(payload["n"]),
                seq=_int(payload["seq"]),
                event_id=payload["event_id"]
                if payload["event_id"] is None
                else str(payload["event_id"]),
                hash=str(payload["hash"]),
                v1_until=_int(payload["v1_until"]),
                ts=str(payload["ts"]),
                chain_key_ids=tuple(str(k) for k in payload["chain_key_ids"]),
                store=str(payload["store"]),
                sig=str(sig),
                digest=_digest(payload, str(sig)),
            )
        except (ValueError, TypeError, KeyError) as exc:
            return None, f"{where}: not a checkpoint record ({type(exc).__name__}: {exc})"
        public = self.public_keys.get(checkpoint.store)
        if public is None:
            return None, (
                f"{where}: checkpoint {checkpoint.n} is signed by key {checkpoint.store!r}, which"
                " this deployment does not know (a forged line, or the signing key was replaced)"
            )
        try:
            public.verify(base64.b64decode(checkpoint.sig, validate=True), canonical_json(payload))
        except (InvalidSignature, ValueError):
            return None, (
                f"{where}: the signature of checkpoint {checkpoint.n} does not match its content:"
                " the line was edited or forged"
            )
        return checkpoint, ""

    # --- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, deadline: float | None = None) -> Iterator[None]:
        """An exclusive lock on the folder, across processes (and, with `_thread_lock`, threads);
        TimeoutError when it is not had by `deadline` (time.monotonic())."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _flock(fd, deadline)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def sign(
        self, *, n: int, seq: int, event_id: str | None, hash_: str, v1_until: int, keys: list[str]
    ) -> Checkpoint:
        if self.signing_key is None:
            raise RuntimeError("this checkpoint store has no signing key")
        ts = iso_utc(datetime.now(UTC))
        unsigned = Checkpoint(
            n, seq, event_id, hash_, v1_until, ts, tuple(keys), self.store, sig="", digest=""
        )
        payload = unsigned.payload()
        sig = base64.b64encode(self.signing_key.sign(canonical_json(payload))).decode("ascii")
        return replace(unsigned, sig=sig, digest=_digest(payload, sig))

    def append(self, checkpoint: Checkpoint) -> None:
        """Append one line and fsync it (and the folder, when the file is new)."""
        append_durably(self.path, canonical_json({**checkpoint.payload(), "sig": checkpoint.sig}))


def _flock(fd: int, deadline: float | None) -> None:
    if deadline is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError("the checkpoint folder stayed locked past the bound") from None
            time.sleep(0.01)


@contextlib.contextmanager
def _cancelled_at(db: Session, deadline: float | None) -> Iterator[None]:
    """Cancel `db`'s database work at `deadline` (time.monotonic()), so that a walk stalled on
    purpose (a sleep in a function of a view swapped in for the log) fails rather than holds
    the folder's lock and whoever waits on it (red team 22)."""
    if deadline is None:
        yield
        return
    raw: Any = db.connection().connection.dbapi_connection
    # sqlite3 interrupts; psycopg cancels the running query (both safe from another thread)
    cancel = getattr(raw, "interrupt", None) or getattr(raw, "cancel_safe", None) or raw.cancel
    guard, over = threading.Lock(), threading.Event()

    def fire() -> None:
        if over.wait(max(0.0, deadline - time.monotonic())):
            return
        while True:  # again and again: a cancel between two statements cancels nothing
            with guard:  # never once the work is over: the connection may serve another then
                if over.is_set():
                    return
                with contextlib.suppress(Exception):  # the work's own error says what failed
                    cancel()
            if over.wait(0.1):
                return

    threading.Thread(target=fire, name="checkpoint-deadline", daemon=True).start()
    try:
        yield
    finally:
        with guard:
            over.set()


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _number_of(raw: bytes) -> int | None:
    try:
        doc = json.loads(raw)
        n = doc.get("n") if isinstance(doc, dict) else None
        return n if isinstance(n, int) and not isinstance(n, bool) else None
    except ValueError:
        return None


class Checkpointer:
    """Writes signed checkpoints for one process: on a cadence (`start`) and on demand."""

    def __init__(
        self,
        platform: Platform,
        *,
        interval_s: float | None = None,
        store: CheckpointStore | None = None,
    ) -> None:
        self.sessions: sessionmaker[Session] = platform.sessions
        self.keyring: ChainKeyring = keys_for(platform.engine)
        self.store = store or CheckpointStore.for_settings(platform.settings)
        # the deployment's cadence, whether or not this process keeps it (audit/tail.py)
        self.cadence_s = platform.settings.audit_checkpoint_interval_s
        self.interval_s = self.cadence_s if interval_s is None else interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._written = threading.Event()

    def start(self) -> Checkpointer:
        if self.interval_s <= 0 or self._thread is not None:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="audit-checkpointer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def wait_for_checkpoint(self, timeout: float | None = None) -> bool:
        """Block until this checkpointer has written a checkpoint (True) or `timeout` passed."""
        return self._written.wait(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.round()
            except Exception:
                log.exception("audit checkpoint failed")

    def round(self) -> CheckpointOutcome:
        """One round of the background thread: a checkpoint, or why none was written."""
        outcome = self.checkpoint_now()
        if outcome.findings:
            details = "; ".join(f.detail for f in outcome.findings)
            log.error("audit checkpoint refused: %s", details)
        return outcome

    def checkpoint_now(
        self,
        *,
        actor: str = "warden",
        actor_kind: str = "service",
        tenant: str | None = None,
        alarm: bool = True,
        within: float | None = None,
    ) -> CheckpointOutcome:
        """Verify the chain since the last checkpoint, sign its head, record it; see module doc.
        Refused for tampering, it raises the alarm (`alarm=False`: the caller raises its own,
        carrying what it holds: audit/anchor.py). `within` seconds bound the wait for the
        folder's lock and the walk (TimeoutError, or the database's error when cancelled);
        the record of the checkpoint, once signed, is not bounded."""
        deadline = None if within is None else time.monotonic() + within
        if not self._lock.acquire(timeout=-1 if within is None else within):
            raise TimeoutError("another checkpoint of this process held past the bound")
        try:
            with self.store.locked(deadline):
                return self._checkpoint_and_record(actor, actor_kind, tenant, alarm, deadline)
        finally:
            self._lock.release()

    def _checkpoint_and_record(
        self, actor: str, actor_kind: str, tenant: str | None, alarm: bool, deadline: float | None
    ) -> CheckpointOutcome:
        outcome = self._checkpoint_locked(deadline)
        if outcome.checkpoint is None:
            if outcome.findings:
                emit_checkpoint_log(
                    {"refused": True, "findings": [f.detail for f in outcome.findings]},
                    refused=True,
                )
                if alarm:
                    self._alarm(outcome.findings)
            return outcome
        cp = outcome.checkpoint
        self.store.append(cp)
        emit_checkpoint_log(cp.as_dict())
        event = record(
            self.sessions,
            AuditRecord(
                action=CHECKPOINT_ACTION,
                decision="allow",
                actor=actor,
                actor_kind=actor_kind,
                tenant=tenant,
                details={
                    "store": cp.store,
                    "checkpoint": cp.n,
                    "seq": cp.seq,
                    "hash": cp.hash,
                    "digest": cp.digest,
                },
            ),
        )
        self._written.set()
        return CheckpointOutcome(cp, event_seq=event.seq)

    def _alarm(self, findings: list[Finding]) -> None:
        """Every process refuses while the chain cannot be signed (audit/alarms.py): else it
        serves into a tail that waits, unprotected, for whoever makes the chain whole again
        by cutting it (red team 20)."""
        why = "; ".join(f.detail for f in findings)
        try:
            Alarms.beside(self.store).raise_once(f"the checkpointer refused to sign: {why}")
        except Exception:  # no signing key, folder unwritable: the ERROR log says why
            log.exception("could not raise the audit alarm")

    def _checkpoint_locked(self, deadline: float | None = None) -> CheckpointOutcome:
        log_ = self.store.read()
        last = log_.newest(self.store.store)
        numbers = [c.n for c in log_.checkpoints if c.store == self.store.store]
        n = max([*numbers, *log_.forged_numbers, 0]) + 1
        with self.sessions() as db, _cancelled_at(db, deadline):
            head = load_head(db)
            if head is None:
                return CheckpointOutcome(None, skipped="the audit chain has no head yet")
            if last is not None and head.seq == last.seq and head.hash == last.hash:
                return CheckpointOutcome(None, skipped=f"no event since checkpoint {last.n}")
            if last is not None and head.seq == last.seq + 1 and _records(db, head.seq, last):
                return CheckpointOutcome(None, skipped=f"no event since checkpoint {last.n}")
            findings = _Findings()
            start_seq, start_hash, v1_until = 0, GENESIS_HASH, None
            if last is not None and last.seq > 0:
                table = AuditEvent.__table__
                at = db.execute(
                    select(table.c.id, table.c.hash).where(table.c.seq == last.seq)
                ).first()
                if at is None or at.id != last.event_id or at.hash != last.hash:
                    findings.add(
                        HEAD,
                        last.seq,
                        last.event_id,
                        f"the event of checkpoint {last.n} (seq {last.seq}) is gone or changed;"
                        " run `warden audit verify`",
                    )
                    return CheckpointOutcome(None, findings=findings.items)
                start_seq, start_hash, v1_until = last.seq, last.hash, last.v1_until
            walk = walk_range(
                db,
                self.keyring,
                after_seq=start_seq,
                after_hash=start_hash,
                upto_seq=head.seq,
                findings=findings,
                v1_until=v1_until,
            )
            if walk.prev_seq != head.seq:
                findings.add(
                    TRUNCATION,
                    walk.prev_seq + 1,
                    None,
                    f"the chain ends at seq {walk.prev_seq} but the head says {head.seq}",
                )
            elif walk.prev_hash != head.hash:
                findings.add(HEAD, head.seq, None, "the head hash is not the last event's hash")
            tampering = [f for f in findings.items if f.severity == "tampering"]
            if tampering:
                return CheckpointOutcome(None, findings=tampering)
            event_id = (
                db.scalar(select(AuditEvent.id).where(AuditEvent.seq == head.seq))
                if head.seq
                else None
            )
            legacy = db.scalar(
                select(func.max(AuditEvent.seq)).where(
                    AuditEvent.chain_v == CHAIN_V1, AuditEvent.seq <= head.seq
                )
            )
            cp = self.store.sign(
                n=n,
                seq=head.seq,
                event_id=event_id,
                hash_=head.hash,
                v1_until=int(legacy or 0),
                keys=self.keyring.ids,
            )
        return CheckpointOutcome(cp)


def _records(db: Session, seq: int, last: Checkpoint) -> bool:
    """Whether the event at `seq` is the chain's record of checkpoint `last` (nothing new)."""
    row = db.execute(
        select(AuditEvent.action, AuditEvent.details).where(AuditEvent.seq == seq)
    ).first()
    if row is None or row.action != CHECKPOINT_ACTION or not isinstance(row.details, dict):
        return False
    return row.details.get("store") == last.store and row.details.get("checkpoint") == last.n


__all__ = [
    "Checkpoint",
    "CheckpointLog",
    "CheckpointOutcome",
    "CheckpointStore",
    "Checkpointer",
]
