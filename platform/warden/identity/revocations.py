"""What the audit log says was revoked, disabled, ended, rotated, set, resolved or signed out:
remembered by each process, so a row written back to its earlier self in SQL (seal and all)
revives nothing (a console session signed out, a request or reviewed change resolved, an
experiment stopped or decided, a serving default replaced),
a mask key rotation deleted in SQL brings no old pseudonyms back, and a dataset's terms
override deleted in SQL loosens nothing.

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
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from warden.audit import anchor
from warden.audit.anchor import (
    DECIDE,
    DISABLE,
    ENABLE,
    ENDING,
    EXPERIMENT_ENDS,
    MODEL_REGISTER,
    RESOLVED,
    REVOKE,
    ROTATE,
    SANDBOX_ENDS,
    SANDBOX_LAUNCH,
    SIGN_OUT,
    TERMS,
)
from warden.audit.chain import CHAIN_V1, expected_hash
from warden.audit.keys import keys_for
from warden.audit.models import HEAD_ID, AuditEvent, AuditHead
from warden.db.per_engine import PerEngine
from warden.errors import AuditUnavailable


class Revocations:
    """Token ids revoked, principals disabled (by name) and sandboxes ended, per the log,
    each with the seq of the event that says so."""

    def __init__(self) -> None:
        self.seq = 0
        self.tokens: dict[str, int] = {}
        self.disabled: dict[str, int] = {}
        self.ended: dict[str, int] = {}
        # sandbox id -> the workspace folders it mounts: launched with one, not ended since
        self.mounting: dict[str, tuple[str, ...]] = {}
        # console sessions signed out (the first 12 of their id, as the event names them)
        self.signed_out: dict[str, int] = {}
        # access requests and reviewed changes resolved (approved, applied, denied, ...)
        self.resolved: dict[str, int] = {}
        # experiment id -> (seq, (the state and the results' digest its last stop,
        # decision, rollback or simulation left))
        self.experiments: dict[str, tuple[int, tuple[str, str]]] = {}
        # tenant id -> (seq, the serving_default row its last promotion or rollback set)
        self.defaults: dict[str, tuple[int, str]] = {}
        # "tenant\0model name" -> (seq, the newest version registered)
        self.models: dict[str, tuple[int, Any]] = {}
        # tenant name -> key version -> when it takes effect (ISO-8601), per the log
        self.rotations: dict[str, dict[int, str]] = {}
        # (tenant, dataset) -> the terms overrides last stored, per the log
        self.terms: dict[tuple[str, str], tuple[int | None, int | None]] = {}
        # the newest policy version an ending named: a stored policy older than this was
        # written back past Warden (policy/service.py refuses to decide on it)
        self.policy_version = 0
        self._principal_at: dict[str, int] = {}  # the seq of each principal's last (en|dis)able
        self._lock = threading.Lock()

    def refresh(self, db: Session) -> Revocations:
        """Take in the events appended since the last refresh: only the chain's own (at or
        below its head, keyed with the chain key), so a row written around the chain, with a
        seq far ahead or a forged `principal.enable`, neither hides later events nor undoes
        one (`verify` reports such rows)."""
        try:
            return self._refresh(db)
        except SQLAlchemyError as exc:  # what is over cannot be told: nothing is allowed
            raise AuditUnavailable(f"audit log unreachable: {exc.__class__.__name__}") from None
        except (ValueError, TypeError):  # an event stored past Warden in no form its type reads
            raise AuditUnavailable(
                "an audit event cannot be read; run `warden audit verify`"
            ) from None

    def held(self, db: Session) -> Revocations:
        """These revocations, once the database is held to the newest signed checkpoint
        (audit/anchor.py): when one appeared since the last look, the chain must reach it,
        and what it names is read now, whatever the change counter says."""
        found = anchor.anchor_for(db.get_bind())
        if found is None:
            return self
        try:
            if found.hold(db):
                self._refresh(db)
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"audit log unreachable: {exc.__class__.__name__}") from None
        except (ValueError, TypeError):
            raise AuditUnavailable(
                "an audit event cannot be read; run `warden audit verify`"
            ) from None
        return self

    def take(self, events: Any) -> None:
        """Events this process committed itself (audit/anchor.py), known before any read."""
        with self._lock:
            for event in events:
                details = dict(event.details or {}, tenant=event.tenant, dataset=event.dataset)
                self._take(event.action, details, event.seq)
                self._policy_at(getattr(event, "policy_version", None))

    def _refresh(self, db: Session) -> Revocations:
        keys = keys_for(db.get_bind())
        with self._lock:
            head = db.connection().execute(
                select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID)
            )
            top, top_hash = head.first() or (None, None)
            if not isinstance(top, int) or top <= self.seq:
                return self
            table = AuditEvent.__table__
            events = db.connection().execute(
                select(table)
                .where(table.c.seq > self.seq, table.c.seq <= top)
                .where(
                    or_(
                        and_(
                            table.c.action.in_((*ENDING, SANDBOX_LAUNCH)),
                            # anchor.holds; and a sandbox that failed or was lost ended anyway
                            or_(
                                table.c.decision == "allow",
                                table.c.action == DECIDE,
                                table.c.action.in_(SANDBOX_ENDS),
                            ),
                        ),
                        table.c.seq == top,  # the head's own event: see below
                    )
                )
                .order_by(table.c.seq)
            )
            reached, whole = self.seq, False
            for event in events.mappings():
                if event["chain_v"] == CHAIN_V1 or event["hash"] != expected_hash(event, keys):
                    continue
                reached = event["seq"]
                whole = reached == top and event["hash"] == top_hash
                if _ends(event):
                    details = dict(
                        event["details"] or {}, tenant=event["tenant"], dataset=event["dataset"]
                    )
                    self._take(event["action"], details, event["seq"])
                    self._policy_at(event["policy_version"])
            # Up to the head only when it is the chain's own keyed event: a head moved ahead
            # in SQL, then put back, must not carry this process past the endings appended
            # meanwhile (it would never read them); else only up to the last event it read.
            self.seq = top if whole else reached
        return self

    def _policy_at(self, version: Any) -> None:
        if isinstance(version, int) and not isinstance(version, bool):
            self.policy_version = max(self.policy_version, version)

    def _take(self, action: str, details: dict[str, Any], seq: int) -> None:
        if action == REVOKE and details.get("token_id"):
            self.tokens.setdefault(str(details["token_id"]), seq)
        elif action in SANDBOX_ENDS and details.get("sandbox"):
            self.ended.setdefault(str(details["sandbox"]), seq)
            self.mounting.pop(str(details["sandbox"]), None)
        elif action == SANDBOX_LAUNCH and details.get("workspace") and details.get("sandbox"):
            sandbox = str(details["sandbox"])
            folders = tuple(str(m.get("source")) for m in details.get("mounts") or [] if m)
            if sandbox not in self.ended:  # its end can be taken (in hand) before this is read
                self.mounting[sandbox] = folders
        elif action in (DISABLE, ENABLE) and details.get("principal"):
            name = str(details["principal"])
            # the chain's order decides, not the order this process learnt them in (its own
            # commits are taken in hand before an earlier event of another process is read)
            if seq >= self._principal_at.get(name, -1):
                self._principal_at[name] = seq
                if action == DISABLE:
                    self.disabled[name] = seq
                else:
                    self.disabled.pop(name, None)
        elif action == TERMS and isinstance(details.get("stored"), dict):
            stored = details["stored"]
            key = (str(details.get("tenant")), str(details.get("dataset")))
            self.terms[key] = (stored.get("quorum"), stored.get("max_duration_s"))
        elif action == SIGN_OUT and details.get("session"):
            self.signed_out.setdefault(str(details["session"]), seq)
        elif action in RESOLVED and (
            subject := details.get("request_id") or details.get("change_id")
        ):
            self.resolved.setdefault(str(subject), seq)
        elif action in EXPERIMENT_ENDS and details.get("experiment_id") and details.get("state"):
            held = (str(details["state"]), str(details.get("results", "")))
            _latest(self.experiments, str(details["experiment_id"]), seq, held)
            if details.get("serving_default") and details.get("tenant_id"):
                default = str(details["serving_default"])
                _latest(self.defaults, str(details["tenant_id"]), seq, default)
        elif action == MODEL_REGISTER and "@" in str(details.get("ref") or ""):
            name, _, version = str(details["ref"]).rpartition("@")
            if version.isdigit():
                named = model_key(str(details.get("tenant")), name)
                _latest(self.models, named, seq, int(version))
        elif action == ROTATE and details.get("tenant") and details.get("key_version"):
            rotations = self.rotations.setdefault(str(details["tenant"]), {})
            rotations[int(details["key_version"])] = str(details.get("effective_from"))


def _ends(event: Any) -> bool:
    """The filter of `_refresh`'s query (the head's own event is read whatever it is)."""
    if event["action"] in SANDBOX_ENDS:
        return True
    if event["action"] == SANDBOX_LAUNCH:
        return bool(event["decision"] == "allow")
    return anchor.holds(event["action"], event["decision"])


def model_key(tenant: str, name: str) -> str:
    return f"{tenant}\0{name}"


def _latest(found: dict[str, tuple[int, Any]], key: str, seq: int, value: Any) -> None:
    """Keep the value of the later event (this process's own commits can be taken before an
    earlier event of another process is read)."""
    if key not in found or found[key][0] <= seq:
        found[key] = (seq, value)


_by_engine: PerEngine[Revocations] = PerEngine()


def revocations_for(db: Session) -> Revocations:
    """This process's record for the database `db` is bound to."""
    return revocations_of(db.get_bind())


def revocations_of(engine: Any) -> Revocations:
    """This process's record for `engine` (an engine or sessionmaker)."""
    return _by_engine.get(getattr(engine, "engine", engine), Revocations)


# What this process commits that ends access, it knows at once (audit/anchor.py).
anchor.observe(lambda engine, events: revocations_of(engine).take(events))
