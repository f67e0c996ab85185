"""What the audit log says was revoked, disabled or ended: remembered by each process, so a
row written back to its earlier self in SQL (seal and all) revives nothing.

A sealed row cannot be forged, but its earlier version can be restored whole: a token row
from before its revocation, a principal from before it was disabled, a sandbox from before
it ended (its job token would read again). The row alone cannot tell. The log can: every
revocation, disable, enable and sandbox end is a keyed, chained, checkpointed event, written
in the same transaction as the row. Each process reads those events as they are appended
(only the new ones, by sequence number) and refuses what they say is over, whatever the
row says now; `audit verify` reports the rows themselves (audit/rollbacks.py).

Read when the token cache is refilled (the change generation moved: any such write moves
it) and on every uncached authentication. What a process has seen it keeps until it exits,
so deleting the events later (which `verify` reports as a gap or truncation) does not
revive anything in a running process either.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from warden.audit.models import AuditEvent

REVOKE = "token.revoke"
DISABLE, ENABLE = "principal.disable", "principal.enable"
SANDBOX_ENDS = ("sandbox.exit", "sandbox.stop")
_ACTIONS = (REVOKE, DISABLE, ENABLE, *SANDBOX_ENDS)


class Revocations:
    """Token ids revoked, principals disabled (by name) and sandboxes ended, per the log."""

    def __init__(self) -> None:
        self.seq = 0
        self.tokens: set[str] = set()
        self.disabled: set[str] = set()
        self.ended: set[str] = set()
        self._lock = threading.Lock()

    def refresh(self, db: Session) -> Revocations:
        """Take in the events appended since the last refresh."""
        with self._lock:
            events = db.connection().execute(
                select(AuditEvent.seq, AuditEvent.action, AuditEvent.details)
                .where(AuditEvent.seq > self.seq, AuditEvent.action.in_(_ACTIONS))
                .where(AuditEvent.decision == "allow")
                .order_by(AuditEvent.seq)
            )
            for seq, action, details in events:
                self._take(action, details or {})
                self.seq = max(self.seq, seq if isinstance(seq, int) else self.seq)
        return self

    def _take(self, action: str, details: dict[str, Any]) -> None:
        if action == REVOKE and details.get("token_id"):
            self.tokens.add(str(details["token_id"]))
        elif action in SANDBOX_ENDS and details.get("sandbox"):
            self.ended.add(str(details["sandbox"]))
        elif action == DISABLE and details.get("principal"):
            self.disabled.add(str(details["principal"]))
        elif action == ENABLE and details.get("principal"):
            self.disabled.discard(str(details["principal"]))


_by_engine: weakref.WeakKeyDictionary[Any, Revocations] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def revocations_for(db: Session) -> Revocations:
    """This process's record for the database `db` is bound to."""
    engine = db.get_bind()
    engine = getattr(engine, "engine", engine)
    with _lock:
        found = _by_engine.get(engine)
        if found is None:
            found = _by_engine[engine] = Revocations()
        return found
