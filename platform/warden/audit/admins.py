"""Platform admins: who may see what no tenant owns (anonymous audit events, checkpoint
records) and act on the audit log as a whole (checkpoints).

The same rule as tenant creation (api/routes/identity.py `require_platform_admin`): a person
of the installation tenant (the one `warden init` made) whom the policy lets `manage`
`sys:tenants`. Admins of any other tenant are not, whatever rules their own tenant holds, and
job tokens and service accounts never are.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from warden.identity.caller import Caller
from warden.identity.models import Tenant

PLATFORM_OBJECT = "sys:tenants"
PLATFORM_ACT = "manage"


def is_platform_admin(db: Session, platform: Any, caller: Caller) -> bool:
    """Whether `caller` is a platform admin, on the freshest policy (fails closed)."""
    if caller.kind != "person":
        return False
    installation = db.scalar(select(Tenant.installation).where(Tenant.name == caller.tenant))
    if not installation:
        return False
    now = platform.now() if callable(getattr(platform, "now", None)) else datetime.now(UTC)
    snapshot = platform.policy.ensure_fresh()
    return bool(snapshot.can(caller.name, caller.tenant, PLATFORM_OBJECT, PLATFORM_ACT, now))


__all__ = ["PLATFORM_ACT", "PLATFORM_OBJECT", "is_platform_admin"]
