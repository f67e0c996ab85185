"""The one place that decides system (non-data) permissions, e.g. ("sys:principals", "manage").

Data reads are decided in policy/reads.py. Job tokens hold no system permission at all.
"""

from __future__ import annotations

from warden.core.platform import Platform
from warden.errors import Forbidden
from warden.identity.service import Caller


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
