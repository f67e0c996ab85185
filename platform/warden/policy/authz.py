"""The one place that decides system (non-data) permissions, e.g. ("sys:principals", "manage").

Data reads are decided in policy/reads.py. Job tokens hold no system permission at all.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from warden.core.platform import Platform
from warden.errors import Forbidden
from warden.identity.service import Caller, is_installation_tenant

# Platform admins: people of the installation tenant (the one `warden init` made) whom Casbin
# lets manage sys:tenants. They create tenants, see what no tenant owns (anonymous audit
# events) and write audit checkpoints; any other tenant's admins never are, whatever rules
# their own tenant holds.
PLATFORM_OBJECT = "sys:tenants"


def allowed(platform: Platform, caller: Caller, obj: str, act: str) -> bool:
    """Casbin's answer on the freshest policy, at the platform's clock."""
    if caller.kind == "job":
        return False
    snapshot = platform.policy.ensure_fresh()
    return snapshot.can(caller.name, caller.tenant, obj, act, platform.now())


def require(
    platform: Platform, caller: Caller, obj: str, act: str, message: str | None = None
) -> None:
    """Forbidden unless `allowed`."""
    if not allowed(platform, caller, obj, act):
        raise Forbidden(message or f"{caller.name} may not {act} {obj.removeprefix('sys:')}")


def sees_launched(
    platform: Platform, caller: Caller, launcher: str, admin_obj: str, act: str
) -> bool:
    """What a person launched (a job, a sandbox) is theirs; its administrators see everyone's."""
    return launcher == caller.name or allowed(platform, caller, admin_obj, act)


def is_platform_admin(db: Session, platform: Platform, caller: Caller) -> bool:
    return (
        caller.kind == "person"
        and is_installation_tenant(db, caller.tenant)
        and allowed(platform, caller, PLATFORM_OBJECT, "manage")
    )


def require_platform_admin(db: Session, platform: Platform, caller: Caller) -> None:
    if not is_platform_admin(db, platform, caller):
        raise Forbidden(f"{caller.name} is not a platform admin")
