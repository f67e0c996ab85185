"""Platform admins: who may see what no tenant owns (anonymous audit events) and act on the
audit log as a whole (checkpoints).

A platform admin is a principal the policy lets `manage` the object `sys:platform` in the
reserved policy domain `platform`. `warden init` makes its bootstrap admin one:

    p, role:platform_admin, platform, sys:platform, *, *, manage, allow, ,
    g, <admin>, role:platform_admin, platform

Tenant admins do not qualify: their `sys:*` rules live in their tenant's domain, and a
policy change may only add rules in the changer's own tenant. The tenant name `platform` is
reserved for this (a tenant by that name would own the domain).
"""

from __future__ import annotations

from datetime import datetime

from warden.policy.rules import Rule

PLATFORM_DOMAIN = "platform"
PLATFORM_OBJECT = "sys:platform"
PLATFORM_ROLE = "role:platform_admin"


def platform_admin_rules(admin: str) -> list[Rule]:
    right = (PLATFORM_ROLE, PLATFORM_DOMAIN, PLATFORM_OBJECT, "*", "*", "manage", "allow", "", "")
    return [
        ("p", right),
        ("g", (admin, PLATFORM_ROLE, PLATFORM_DOMAIN)),
    ]


def is_platform_admin(snapshot: object, name: str, now: datetime) -> bool:
    """Whether the policy `snapshot` (a PolicySnapshot) makes `name` a platform admin."""
    can = getattr(snapshot, "can", None)
    if can is None:
        return False
    return bool(can(name, PLATFORM_DOMAIN, PLATFORM_OBJECT, "manage", now))


__all__ = [
    "PLATFORM_DOMAIN",
    "PLATFORM_OBJECT",
    "PLATFORM_ROLE",
    "is_platform_admin",
    "platform_admin_rules",
]
