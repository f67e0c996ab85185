"""One way for a domain to audit what a caller did, or was refused: the caller's identity is
filled in once here, and a refusal's reason is the error the caller gets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from warden.audit.service import AuditRecord, Decision, record
from warden.errors import WardenError

if TYPE_CHECKING:
    from warden.identity.service import Caller


class Acting(Protocol):
    """Whoever acts: a caller, or a service's own actor (the system, a reviewer)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def on_behalf_of(self) -> str | None: ...


def by_actor(
    actor: Acting, tenant: str | None, action: str, decision: Decision, **fields: Any
) -> AuditRecord:
    """A record of `action` by `actor` (who, as whom) in `tenant` plus `fields`."""
    return AuditRecord(
        action=action,
        decision=decision,
        actor=actor.name,
        actor_kind=actor.kind,
        on_behalf_of=actor.on_behalf_of,
        tenant=tenant,
        **fields,
    )


def by_operator(actor: str, action: str, reason: str, **fields: Any) -> AuditRecord:
    """What an operator did with a command run against the database directly (no token, no
    caller): allowed, by their word for who they are."""
    return AuditRecord(
        action=action,
        decision="allow",
        actor=actor,
        actor_kind="operator",
        reason=reason or None,
        **fields,
    )


def by(caller: Caller, action: str, decision: Decision, **fields: Any) -> AuditRecord:
    """A record of `action` by `caller` (who, as whom, in which tenant) plus `fields`."""
    return by_actor(caller, caller.tenant, action, decision, **fields)


WARDEN = "warden"


def by_caller_or_warden(
    caller: Caller | None, action: str, decision: Decision, **fields: Any
) -> AuditRecord:
    """A record of `action` by `caller` (name and kind), or by Warden itself (a system
    actor) when there is none, plus `fields`."""
    return AuditRecord(
        action=action,
        decision=decision,
        actor=caller.name if caller else WARDEN,
        actor_kind=caller.kind if caller else "system",
        **fields,
    )


def refusal(caller: Caller, action: str, exc: WardenError, **fields: Any) -> AuditRecord:
    """A denied `action`, its reason the error the caller is answered with."""
    return by(caller, action, "deny", reason=f"{type(exc).__name__}: {exc.detail}", **fields)


@contextmanager
def refusals_audited(
    sessions: sessionmaker[Session], caller: Caller, action: str, **fields: Any
) -> Iterator[None]:
    """Audit any WardenError raised inside (durably, in its own transaction), then re-raise."""
    try:
        yield
    except WardenError as exc:
        record(sessions, refusal(caller, action, exc, **fields))
        exc.audited = True
        raise
