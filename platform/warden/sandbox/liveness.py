"""Which process watches a sandbox, and whether it still does.

Each runtime (one per API or worker process) stamps its sandboxes with an owner token
(`host:pid:nonce`) and refreshes their `heartbeat_at` while it watches them. Another process
over the same database treats a sandbox as orphaned only when its owner is gone: on the same
host, its pid no longer exists; anywhere, its heartbeat is older than `stale_after`. So a
restart of `warden serve` never reaps the containers of a `warden worker` or of a replica.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import UTC, datetime, timedelta

HOST = socket.gethostname()[:40]


def new_owner() -> str:
    return f"{HOST}:{os.getpid()}:{secrets.token_hex(3)}"


def owner_alive(
    owner: str | None, heartbeat_at: datetime | None, now: datetime, stale_after: timedelta
) -> bool:
    if not owner or heartbeat_at is None:
        return False
    if heartbeat_at.tzinfo is None:  # SQLite hands back naive UTC
        heartbeat_at = heartbeat_at.replace(tzinfo=UTC)
    if now - heartbeat_at > stale_after:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != HOST or not pid.isdigit():
        return True  # another machine: its heartbeat is all we can know
    return _pid_exists(int(pid))


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, but alive
    return True
