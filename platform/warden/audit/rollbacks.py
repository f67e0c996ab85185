"""What the log says happened and the rows no longer say: a token it revoked that works again,
a principal it disabled (and never enabled since) that is enabled, a sandbox it saw end that
is live again (its job token would work again).

A sealed row (db/sealed.py, identity/caller.token_seal) cannot be forged, but its earlier
self, seal and all, can be written back by someone with database write access: a token row
from before its revocation, a principal row from before it was disabled. The rows alone
cannot tell; the chain can, since its `token.revoke`, `principal.disable`, `sandbox.exit`
and `sandbox.stop` events are keyed and checkpointed. `verify` reports each such row as
tampering (`rolled_back`). (A sandbox's status is not sealed: it moves on every heartbeat.)"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from warden.audit.models import AuditEvent
from warden.identity.models import ApiToken, Principal
from warden.sandbox.models import LIVE_STATUSES, Sandbox

ROLLED_BACK = "rolled_back"  # a row written back to what it was before a logged revocation

Found = tuple[str, int | None, str | None, str]  # kind, seq, event id, detail

_ENDS = ("sandbox.exit", "sandbox.stop")
_ACTIONS = ("token.revoke", "principal.disable", "principal.enable", *_ENDS)


def rolled_back(db: Session) -> Iterator[Found]:
    revoked: dict[str, tuple[int, str]] = {}  # token id -> (seq, event id) of its revocation
    last: dict[str, tuple[str, int, str]] = {}  # principal -> (action, seq, event id), newest
    ended: dict[str, tuple[int, str]] = {}  # sandbox id -> its first end's (seq, event id)
    events = (
        select(AuditEvent.seq, AuditEvent.id, AuditEvent.action, AuditEvent.details)
        .where(AuditEvent.action.in_(_ACTIONS), AuditEvent.decision == "allow")
        .order_by(AuditEvent.seq)
    )
    for seq, event_id, action, details in db.execute(events):
        details = details or {}
        if action == "token.revoke" and details.get("token_id"):
            revoked.setdefault(str(details["token_id"]), (seq, event_id))
        elif action in _ENDS and details.get("sandbox"):
            ended.setdefault(str(details["sandbox"]), (seq, event_id))
        elif details.get("principal"):
            last[str(details["principal"])] = (action, seq, event_id)
    if revoked:
        live = select(ApiToken.id).where(ApiToken.id.in_(revoked), ApiToken.revoked_at.is_(None))
        for token_id in db.scalars(live):
            seq, event_id = revoked[token_id]
            detail = f"token {token_id} was revoked (seq {seq}) and is not revoked now"
            yield ROLLED_BACK, seq, event_id, detail
    disabled = [name for name, (action, _, _) in last.items() if action == "principal.disable"]
    if disabled:
        enabled = select(Principal.name).where(
            Principal.name.in_(disabled), Principal.disabled.is_(False)
        )
        for name in db.scalars(enabled):
            _, seq, event_id = last[name]
            detail = f"principal {name} was disabled (seq {seq}), never enabled, and is enabled now"
            yield ROLLED_BACK, seq, event_id, detail
    if ended:
        live = select(Sandbox.id).where(Sandbox.id.in_(ended), Sandbox.status.in_(LIVE_STATUSES))
        for sandbox_id in db.scalars(live):
            seq, event_id = ended[sandbox_id]
            detail = f"sandbox {sandbox_id} ended (seq {seq}) and is live now"
            yield ROLLED_BACK, seq, event_id, detail
