"""What ends access is anchored outside the database, at once.

Each process remembers the revocations it reads from the keyed chain (identity/revocations.py),
but a revocation that no process has read yet lived only in the database: someone who can
write it could delete the event, put the chain head and the change counter back, and restore
the row (seal and all) before any other process looked, and nothing outside the database
would say the event ever existed. So, after every commit carrying an event that ends access
(`ENDING`; and after a streamed read's completion, `AT_ONCE`), the committing process:

1. takes those events into its own memory from the objects in hand, not from the database
   (a trigger deleting them inside the same commit leaves this process none the wiser
   otherwise), and
2. writes a signed checkpoint of the chain head at once (audit/checkpoints.py), before the
   caller is answered: the event is then named outside the database, in the checkpoint file.

Every process sharing that checkpoint folder looks at the file (one `stat` per
authentication) and, when a newer checkpoint appears, holds the database to it before
trusting any cached token: the chain must reach the checkpoint's seq, with its hash there.
A chain cut back below its newest checkpoint, or changed at it, refuses every request
(AuditUnavailable, 503) until an operator runs `warden audit verify`. When the checkpoint
after an ending is refused (the chain was changed between the commit and the signature: the
ending deleted or replaced inside its own commit), the process refuses too, and raises a
signed alarm beside the checkpoints carrying the endings it holds (audit/alarms.py): every
process sharing the folder takes those endings and refuses until an operator clears it. The
raw places a read anchors are listed beside the checkpoints too (audit/raw_ledger.py), so a
process started later counts them whatever their rows say by then.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from warden.audit.alarms import Alarms, Ending
from warden.audit.chain import CHAIN_V1, chain_version, expected_hash
from warden.audit.keys import ChainKeyring, keys_for
from warden.audit.models import CHECKPOINT_ACTION, HEAD_ID, AuditEvent, AuditHead
from warden.audit.raw_ledger import RawLedger, RawPlace
from warden.audit.tail import SAMPLE_S, Tail
from warden.db.per_engine import PerEngine
from warden.errors import AuditUnavailable

if TYPE_CHECKING:
    from warden.audit.checkpoints import Checkpoint, Checkpointer

log = logging.getLogger("warden.audit.anchor")
_WALK_BATCH = 2000
# How long a checkpoint this process must take at once (after an ending, a raw read, a tail
# past its bound) may wait for the folder's lock and walk the chain: past it, it fails
# closed. A walk stalled on purpose would otherwise hold an ending in this process's memory
# alone, raising no alarm, while every other process served on (red team 22).
WITHIN_S = 30.0

REVOKE = "token.revoke"
DISABLE, ENABLE = "principal.disable", "principal.enable"
SANDBOX_ENDS = ("sandbox.exit", "sandbox.stop")
ROTATE = "mask_key.rotate"
TERMS = "access.settings.changed"
SIGN_OUT = "console.sign_out"
# A request or reviewed change resolved: never pending again, whatever its row says later.
RESOLVED = (
    *(f"access.request.{s}" for s in ("approved", "denied", "cancelled", "expired")),
    *(f"policy.change.{s}" for s in ("applied", "denied", "cancelled")),
)
# An experiment stopped, decided (promoted or refused) or rolled back: never running or
# undecided again; and the serving default its promotion or rollback set stays the default.
# A simulation names the results it left, so an earlier copy of them decides nothing.
DECIDE = "experiment.decide"
SIMULATE = "experiment.simulate"
EXPERIMENT_ENDS = ("experiment.stop", DECIDE, "experiment.rollback", SIMULATE)
# A model version registered: its name means that version (or a later one) from then on.
MODEL_REGISTER = "model.register"
# A grant revoked, or rules changed at once (a narrowing): each names the policy version it
# made, and no process decides on a stored policy older than that (policy/service.py).
POLICY_ENDS = ("access.grant.revoked", "policy.change")
# Events whose loss would give back what they took away (identity/revocations.py reads them).
ENDING = (REVOKE, DISABLE, ENABLE, ROTATE, TERMS, *SANDBOX_ENDS, SIGN_OUT, *RESOLVED,
          *EXPERIMENT_ENDS, MODEL_REGISTER, *POLICY_ENDS)  # fmt: skip
# Checkpointed at once too: a streamed read's completion (how much of a large read left, and
# its SHA-256), which its reader would most like to erase; cut from the tail, its intent
# would look like a read still running.
COMPLETION = "dataset.read.completion"
# A sandbox's launch names the workspace folders it mounts: one the log saw launched and never
# end holds them, whatever its row says later (workspace/repository.py). Checkpointed at once
# too, so it cannot be cut from the tail before another process reads it.
SANDBOX_LAUNCH = "sandbox.launch"
# A break-glass names its holder, who may break glass again only once it is signed off in the
# log (access/repository.py): cut from the tail, the next one would pass.
BREAK_GLASS = "access.break_glass"
AT_ONCE = (*ENDING, COMPLETION, SANDBOX_LAUNCH, BREAK_GLASS)
# A read that returned identifiers unmasked (the gateway names them in `details.raw_ids`): its
# reader keeps them (policy/raw_reads.py counts it against a later masked grant), so it must
# not be cut from the tail. Checkpointed at once the first time a process sees its reader read
# that place raw: a place anchored once counts whatever later reads of it are cut.
RAW_READ = "dataset.read"

# Told of every committed event that ends access, in the committing process (identity takes
# them into its memory): (engine, events).
# An alarm's endings come as alarms.Ending (the same fields an event has).
_observers: list[Callable[[Any, Sequence[AuditEvent | Ending]], None]] = []


def observe(callback: Callable[[Any, Sequence[AuditEvent | Ending]], None]) -> None:
    _observers.append(callback)


def raw_places(event: AuditEvent | Mapping[str, Any]) -> dict[RawPlace, str]:
    """The places an allowed read shows its reader (a job's launcher) reading raw, each with
    the event's id."""

    def get(name: str) -> str:
        value = event.get(name) if isinstance(event, Mapping) else getattr(event, name)
        return str(value or "")

    details = event.get("details") if isinstance(event, Mapping) else event.details
    ids = (details or {}).get("raw_ids") if get("action") == RAW_READ else None
    if get("decision") != "allow" or not isinstance(ids, list):
        return {}
    reader = get("on_behalf_of") or get("actor")
    return {(get("tenant"), reader, get("dataset"), str(c), get("purpose")): get("id") for c in ids}


def holds(action: str, decision: str) -> bool:
    """Whether an event ends something: an ending allowed, or any decision of an experiment
    (the rule's refusal is recorded as "deny", and ends it as much as a promotion does)."""
    return action in ENDING and (decision == "allow" or action == DECIDE)


class Anchor:
    """One process's checkpoint folder, as its revocations see it."""

    def __init__(self, checkpointer: Checkpointer) -> None:
        self.checkpointer = checkpointer
        self.tampered: str | None = None  # why this process refuses everything, once it does
        self.list_refused: str | None = None  # the same, for a raw-read list tampered with
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None  # the file's (inode, size, mtime)
        self._latest: Checkpoint | None = None  # the newest checkpoint in the file, as seen
        self._held: Checkpoint | None = None  # the newest checkpoint the database was held to
        self.alarms = Alarms.beside(checkpointer.store)
        self._alarms_seen: tuple[int, int, int] | None = None  # the alarm file's, as for _seen
        self._standing: str | None = None  # why an alarm stands, as last read
        # places read raw that a checkpoint names (taken when committed here, or when the walk
        # to a newer checkpoint met them), with the event: what their readers keep
        self._raw_reads: dict[RawPlace, str] = {}
        # the places every checkpoint of the folder anchored, signed beside them: read at start
        self.ledger = RawLedger(checkpointer.store)
        self._look_at_ledger()
        # this process's events no checkpoint covers yet, and its own try at one (guard)
        self.tail = Tail(checkpointer.cadence_s)
        self._catching_up = threading.Lock()
        self._tried_at = -SAMPLE_S
        self.within_s = WITHIN_S

    def committed(self, engine: Any, events: Sequence[AuditEvent]) -> None:
        """Anchor what must not wait in the tail. AuditUnavailable when a read of raw
        identifiers could not be anchored (its answer must not leave)."""
        self.tail.committed(e.seq for e in events if e.action != CHECKPOINT_ACTION)
        with self._lock:
            raw = {p: i for e in events for p, i in raw_places(e).items()
                   if p not in self._raw_reads and p not in self.ledger.places}  # fmt: skip
        if not raw and not any(e.action in AT_ONCE for e in events):
            return
        ending = [e for e in events if holds(e.action, e.decision)]
        for callback in _observers if ending else ():
            callback(engine, ending)
        try:
            # endings go in the alarm this process raises, else the checkpointer raises one
            outcome = self.checkpointer.checkpoint_now(alarm=not ending, within=self.within_s)
        except Exception as exc:
            log.exception("no checkpoint after an event that ends access")
            if ending:  # not anchored: the other processes would not hear of these either
                self._raise_alarm(ending, f"it failed: {type(exc).__name__}")
            if raw:
                raise AuditUnavailable("a read of raw identifiers could not be anchored") from exc
            return
        if outcome.findings:
            self.tampered = "; ".join(f.detail for f in outcome.findings)
            log.error("the audit chain was tampered with: %s", self.tampered)
            if ending:  # the other processes would not hear of these from the database
                self._raise_alarm(ending, f"it was refused: {self.tampered}")
            if raw:
                raise AuditUnavailable("the audit chain was tampered with; run `audit verify`")
            return
        try:  # listed beside the checkpoint: a process started later counts them too
            self.ledger.append(raw)
        except Exception as exc:
            log.exception("the raw places of a read could not be listed")
            raise AuditUnavailable("a read of raw identifiers could not be anchored") from exc
        self._know(raw)

    def guard(self, action: str, *, catch_up: bool) -> None:
        """AuditUnavailable rather than append to a tail whose oldest event of this process no
        checkpoint covered for `STALE_ROUNDS` intervals (audit/tail.py); first, where the
        caller holds no transaction of its own (`catch_up`), the checkpoint is tried here: a
        database back from an outage takes it at once, one whose checkpoint reads alone fail
        does not."""
        if action == CHECKPOINT_ACTION or not self.tail.may_be_stale() or not self._waited():
            return
        if not catch_up or not self._catching_up.acquire(blocking=False):
            raise AuditUnavailable(self._stale(self._waited()))
        try:
            if time.monotonic() - self._tried_at < SAMPLE_S:  # one try a second, not per call
                raise AuditUnavailable(self._stale(self._waited()))
            self._tried_at = time.monotonic()
            self._checkpoint_the_tail()
        finally:
            self._catching_up.release()
        if waited := self._waited():
            raise AuditUnavailable(self._stale(waited))

    def _waited(self) -> float:
        newest = self._newest()
        return self.tail.stale(newest.seq if newest is not None else 0)

    def _checkpoint_the_tail(self) -> None:
        try:
            # refused: it raises the alarm
            outcome = self.checkpointer.checkpoint_now(within=self.within_s)
        except Exception as exc:
            log.exception("the audit tail could not be checkpointed")
            why = self._stale(self._waited())
            raise AuditUnavailable(f"{why} ({type(exc).__name__})") from exc
        if outcome.findings:
            self.tampered = "; ".join(f.detail for f in outcome.findings)
            raise AuditUnavailable("the audit chain was tampered with; run `warden audit verify`")

    @staticmethod
    def _stale(waited: float) -> str:
        return (
            f"no signed checkpoint has covered this process's audit events for {waited:.0f} s"
            " (the checkpoint rounds fail); nothing more is appended until one is written"
        )

    def _know(self, raw: Mapping[RawPlace, str]) -> None:
        with self._lock:
            for place, event_id in raw.items():
                self._raw_reads.setdefault(place, event_id)

    def raw_reads_of(self, readers: Iterable[str] | None) -> dict[RawPlace, str]:
        """The anchored raw reads of these readers (None: all) this process knows of
        (policy/raw_reads.py): known whatever is done to their rows later."""
        wanted = set(readers) if readers is not None else None
        self._look_at_ledger()
        if self.list_refused:
            raise AuditUnavailable(self.list_refused)
        with self._lock:
            known = {p: i for p, i in self._raw_reads.items() if wanted is None or p[1] in wanted}
        return {**self.ledger.of(wanted), **known}

    def _look_at_ledger(self) -> None:
        """Take what was listed since the last look (all of it at start); a list tampered
        with makes this process refuse, as a chain cut below its checkpoint does."""
        try:
            self.ledger.catch_up()
        except AuditUnavailable as exc:
            self.list_refused = self.list_refused or exc.detail
            log.error("the raw-read list was tampered with: %s", exc.detail)

    def _raise_alarm(self, ending: Sequence[AuditEvent], why: str) -> None:
        carried = [
            Ending(e.action, e.seq, e.tenant, e.dataset, dict(e.details or {})) for e in ending
        ]
        reason = f"no checkpoint after {', '.join(e.action for e in ending)}"
        try:
            self.alarms.raise_alarm(f"{reason}: {why}", carried)
        except Exception:  # this process refuses anyway (tampered); the log says why
            log.exception("could not raise the audit alarm")

    def hold(self, db: Session) -> bool:
        """AuditUnavailable unless the chain still reaches the newest checkpoint: the head at
        or past it, its hash there, every event since the one held before the keyed step
        from the one before it, and no alarm stands. True when a newer checkpoint was taken
        (the caller then reads what it names)."""
        if self.tampered:
            raise AuditUnavailable("the audit chain was tampered with; run `warden audit verify`")
        if self.list_refused:
            raise AuditUnavailable(self.list_refused)
        self._look_at_alarms(db.get_bind())
        if self._standing:
            raise AuditUnavailable(
                f"an audit alarm stands: {self._standing}; see `warden audit alarms`"
            )
        newest = self._newest()
        if newest is None or newest is self._held:
            return False
        table = AuditEvent.__table__
        conn = db.connection()  # read only when a newer checkpoint appeared (not per request)
        head_seq = conn.execute(select(AuditHead.seq).where(AuditHead.id == HEAD_ID)).scalar()
        at = conn.execute(select(table.c.hash).where(table.c.seq == newest.seq)).scalar()
        whole = True
        if self._held is not None:  # (the first one held: only from there on)
            met: dict[RawPlace, str] = {}
            whole = _chained(conn, keys_for(db.get_bind()), self._held, newest, met)
            if whole:
                self._know(met)
        if not isinstance(head_seq, int) or head_seq < newest.seq or at != newest.hash or not whole:
            raise AuditUnavailable(
                f"the audit chain no longer reaches its signed checkpoint {newest.n} (seq"
                f" {newest.seq}); run `warden audit verify`"
            )
        self._held = newest
        return True

    def _look_at_alarms(self, engine: Any) -> None:
        """Re-read the alarm file when it changed: take the endings every alarm carries
        (cleared or not: what ended stays ended) and note whether one stands."""
        try:
            st = os.stat(self.alarms.path)
        except FileNotFoundError:
            return
        seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if seen == self._alarms_seen:
                return
            found = self.alarms.read()
            endings = [e for a in found.alarms for e in a.endings]
            for callback in _observers if endings else ():
                callback(engine, endings)
            standing = found.standing
            self._standing = "; ".join(f"{a.id}: {a.reason}" for a in standing) or None
            self._alarms_seen = seen

    def newest(self) -> Checkpoint | None:
        """The newest checkpoint in the folder, as last seen."""
        return self._newest()

    def _newest(self) -> Checkpoint | None:
        """The newest checkpoint in the file (re-read only when the file changed); until the
        database is held to it, every call returns it again, so a refusal keeps refusing."""
        store = self.checkpointer.store
        try:
            st = os.stat(store.path)
        except FileNotFoundError:
            return self._latest
        seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if seen != self._seen:
                self._latest = store.last() or self._latest
                self._seen = seen
            return self._latest


def _chained(
    conn: Any, keys: ChainKeyring, held: Checkpoint, newest: Checkpoint, met: dict[RawPlace, str]
) -> bool:
    """Whether the events from `held` to `newest` are each the keyed step from the one before:
    a row replaced after `newest` was signed (say a revocation turned into a read, before
    this process read it) fails its hash here, instead of being skipped by the refresh,
    which reads ending events only."""
    table = AuditEvent.__table__
    seq, prev = held.seq, held.hash
    while seq < newest.seq:
        rows = conn.execute(
            select(table)
            .where(table.c.seq > seq, table.c.seq <= newest.seq)
            .order_by(table.c.seq)
            .limit(_WALK_BATCH)
        ).mappings()
        stepped = False
        for row in rows:
            unkeyed = chain_version(row) == CHAIN_V1 and row["seq"] > newest.v1_until
            if row["seq"] != seq + 1 or row["prev_hash"] != prev or unkeyed:
                return False
            if expected_hash(row, keys) != row["hash"]:
                return False
            for place, event_id in raw_places(row).items():  # another process's raw read
                met.setdefault(place, event_id)
            seq, prev, stepped = row["seq"], row["hash"], True
        if not stepped:
            return False
    return prev == newest.hash


_anchors: PerEngine[Anchor] = PerEngine()


def anchor(engine: Any, checkpointer: Checkpointer) -> Anchor:
    """Anchor what ends access on `engine` with `checkpointer` (one per engine and process)."""
    return _anchors.get(engine, lambda: Anchor(checkpointer))


def anchor_for(engine: Any) -> Anchor | None:
    engine = getattr(engine, "engine", engine)
    return _anchors.find(engine)
