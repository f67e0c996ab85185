"""The one place that decides system (non-data) permissions for API callers."""

from __future__ import annotations

from warden.core.platform import Platform
from warden.errors import Forbidden
from warden.identity.service import Caller


def require(state: Platform, caller: Caller, obj: str, act: str) -> None:
    """Forbidden unless Casbin allows `act` on `obj` (e.g. "sys:principals", "manage")."""
    snapshot = state.policy.ensure_fresh()
    if caller.kind == "job" or not snapshot.can(caller.name, caller.tenant, obj, act, state.now()):
        raise Forbidden(f"{caller.name} may not {act} {obj.removeprefix('sys:')}")
