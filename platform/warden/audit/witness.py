"""What a job read, as the process serving its socket saw it: the ids of the allowed read
events it appended for each job, named (count and digest) in the job's `sandbox.exit` event.

A job's reads decide who may use its model (registry.seen_in_reads), and while the job runs
they sit in the log's unprotected tail: someone with SQL could cut them with the tail, and the
next checkpoint would sign the shorter chain. The exit event is checkpointed at once
(audit/anchor.py), so the worker registers a model only when the reads the log holds for the
job are the ones its exit names (registry/repository.witnessed_reads).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from typing import Any


def reads_digest(event_ids: Iterable[str]) -> str:
    """A digest of a set of read event ids (order-free)."""
    return hashlib.sha256("\n".join(sorted(event_ids)).encode()).hexdigest()


def witnessed(event_ids: list[str]) -> dict[str, Any]:
    """The exit event's fields that name a job's reads."""
    return {"reads": len(event_ids), "reads_digest": reads_digest(event_ids)}


class JobReads:
    """One process's allowed reads per job actor (`job-<sandbox id>`), until its exit."""

    def __init__(self) -> None:
        self._reads: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def note(self, actor: str, event_id: str) -> None:
        with self._lock:
            self._reads.setdefault(actor, []).append(event_id)

    def take(self, actor: str) -> list[str]:
        """The job's reads, forgotten here (its exit event names them)."""
        with self._lock:
            return self._reads.pop(actor, [])
