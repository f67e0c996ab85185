"""Ids of access requests and grants. A break-glass grant is told apart by its id alone, so the
gateway can flag each read it allows without another query."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

REQUEST_PREFIX = "req-"
GRANT_PREFIX = "grant-"
BREAK_GLASS_PREFIX = "bg-"
CHANGE_PREFIX = "chg-"


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def is_break_glass(grant_id: str) -> bool:
    return grant_id.startswith(BREAK_GLASS_PREFIX)


def break_glass_grants(grant_ids: Iterable[str]) -> list[str]:
    return [g for g in grant_ids if is_break_glass(g)]
