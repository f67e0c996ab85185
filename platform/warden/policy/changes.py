"""Audited policy changes: the rule change, the version bump and its audit event commit
together, in the caller's transaction; then the caller reloads the service."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from warden.audit.service import AuditRecord, append
from warden.errors import Forbidden, Unprocessable
from warden.identity.service import Caller
from warden.policy import exposure, store
from warden.policy.rules import Rule, RuleError, format_rule


def apply_change(
    db: Session,
    actor: Caller,
    *,
    add: Sequence[Rule] = (),
    remove: Sequence[Rule] = (),
    reason: str = "",
) -> int:
    """Add and remove rules; returns the new policy version. Bad rules change nothing."""
    try:
        added = store.add_rules(db, add) if add else None
        removed = store.remove_rules(db, remove) if remove else None
    except RuleError as exc:
        raise Unprocessable(f"invalid rule: {exc}") from None
    if mixed := exposure.change_problems(db, add, remove):
        raise Forbidden(exposure.describe(mixed))
    version = store.current_version(db)
    append(
        db,
        AuditRecord(
            action="policy.change",
            decision="allow",
            actor=actor.name,
            actor_kind=actor.kind,
            on_behalf_of=actor.on_behalf_of,
            tenant=actor.tenant,
            policy_version=version,
            reason=reason or None,
            details={
                "added": [format_rule(p, f) for p, f in add][:200],
                "removed": [format_rule(p, f) for p, f in remove][:200],
                "added_count": added.count if added else 0,
                "removed_count": removed.count if removed else 0,
            },
        ),
    )
    return version
