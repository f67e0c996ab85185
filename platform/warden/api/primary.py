"""Which process of a `warden serve --workers N` runs the background loops.

Every worker process serves requests with its own policy snapshot (kept current by the change
feed: each read checks the stored version). The job worker and the access worker (webhooks,
expiry tidy-up) must run in exactly one place, so the workers hold an election: the one that
takes an exclusive `flock` on `<data dir>/serve-primary.lock` runs them, the others don't. The
kernel drops the lock when that process dies, however it dies; uvicorn's supervisor starts a
replacement worker, which takes the free lock and the loops with it.

Across machines (replicas on one PostgreSQL), set WARDEN_PRIMARY=false on every replica but
one: a process with primary off never runs the loops, elected or not.
"""

from __future__ import annotations

import fcntl
import logging
import os
from typing import IO

from warden.config import Settings

log = logging.getLogger("warden.api")

# `warden serve --workers N` sets this for its worker processes (N > 1 means: hold an election).
WORKERS_ENV = "WARDEN_SERVE_WORKERS"
LOCK_NAME = "serve-primary.lock"


def serve_workers() -> int:
    """How many processes `warden serve` runs (1 unless it set WORKERS_ENV)."""
    return int(os.environ.get(WORKERS_ENV, "1") or "1")


def elect(settings: Settings) -> tuple[bool, IO[bytes] | None]:
    """(whether this process runs the background loops, the lock file to keep open)."""
    if not settings.primary:
        return False, None
    if serve_workers() <= 1:
        return True, None
    path = settings.data_dir / LOCK_NAME
    handle = path.open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        log.info("worker %d serves requests only (another worker runs the loops)", os.getpid())
        return False, None
    log.info("worker %d runs the background loops", os.getpid())
    return True, handle
