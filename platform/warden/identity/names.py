"""Whether a new principal may take a name. Principal names are unique across the installation
(the log's revocations, the alarms and the rollback check know principals by name), so a
name another tenant holds is refused too: that refusal tells the asking tenant's admin only
that the name is not available, never whose it is, whether a person, a service account or a
rule holds it, or in which tenant; and the holding tenant's auditors see the attempt.
Whether a name is free at all is still learnt by trying (docs/audit.md, "Known open")."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from warden.audit.outcomes import WARDEN, by, by_actor
from warden.audit.service import record
from warden.errors import Conflict
from warden.identity.models import Principal, Tenant
from warden.identity.service import Caller
from warden.policy.store import CasbinRule

PROBE_ACTION = "principal.name_refused"


class _Warden:
    """Warden itself as the actor of the record shown to the holding tenant (who asked, and
    from which tenant, are the asking tenant's own to know)."""

    name = WARDEN
    kind = "system"
    on_behalf_of = None


def holders(db: Session, name: str) -> set[str]:
    """The tenants (by name) where `name` is a principal or a rule's subject; a rule's domain
    that is no tenant counts as itself."""
    owner = select(Tenant.name).join(Principal, Principal.tenant_id == Tenant.id)
    held = set(db.scalars(owner.where(Principal.name == name)))
    rules = select(CasbinRule.ptype, CasbinRule.v1, CasbinRule.v2).where(CasbinRule.v0 == name)
    for ptype, v1, v2 in db.execute(rules):
        held.add((v2 if (ptype or "").startswith("g") else v1) or "")
    return held


def refuse_unless_free(
    db: Session, sessions: sessionmaker[Session], caller: Caller, name: str
) -> None:
    """Conflict unless `name` is free everywhere. In the caller's own tenant it says why (its
    admins may read its principals and rules); held elsewhere it says only that the name is
    not available, both tenants' auditors get a record, and nothing names the holder."""
    held = holders(db, name)
    if not held:
        return
    if caller.tenant in held:
        taken = db.scalar(
            select(Principal.id)
            .join(Tenant, Principal.tenant_id == Tenant.id)
            .where(Principal.name == name, Tenant.name == caller.tenant)
        )
        if taken is not None:
            raise Conflict(f"a principal named {name!r} already exists")
        raise Conflict(
            f"rules already name {name!r}; a new principal would inherit them unreviewed."
            " Remove those rules first, or choose another name"
        )
    refused = Conflict(f"the principal name {name!r} is not available; choose another name")
    reason = f"Conflict: {refused.detail}"
    # durably, before the answer: a probe nobody can see is the oracle the red team used
    record(sessions, by(caller, "principal.create", "deny", reason=reason, details={"name": name}))
    for tenant in sorted(held - {caller.tenant}):
        shown = {"name": name, "asked_from": "another tenant"}
        rec = by_actor(_Warden(), tenant, PROBE_ACTION, "deny", details=shown)
        record(sessions, rec)
    refused.audited = True
    raise refused
