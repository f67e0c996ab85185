"""Session records: who used which sandbox, for how long, at what CPU cost, with how many
commands (never their contents); queryable per sandbox and person, and exported as
OpenTelemetry metrics (counters on the global meter provider, exported wherever the operator's
OTel set-up sends metrics).

CPU-seconds are sampled from the engine about every second while a sandbox runs (a container's
counters vanish when it exits), so a run shorter than a sample reads low.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry import metrics
from sqlalchemy import select
from sqlalchemy.orm import Session

from warden.db.base import new_id
from warden.db.queries import where_given
from warden.sandbox.models import Sandbox, SandboxSession

log = logging.getLogger("warden.sandbox")
_meter = metrics.get_meter("warden.sandbox")
WALL = _meter.create_counter("warden.sandbox.session.wall", unit="s", description="wall time")
CPU = _meter.create_counter("warden.sandbox.session.cpu", unit="s", description="CPU-seconds")
COMMANDS = _meter.create_counter("warden.sandbox.session.commands", description="commands started")


def open_session(
    db: Session, sandbox: Sandbox, person: str, kind: str, session_id: str | None = None
) -> SandboxSession:
    row = SandboxSession(
        id=session_id or new_id(),
        sandbox_id=sandbox.id,
        tenant=sandbox.tenant,
        segment=sandbox.segment,
        person=person,
        kind=kind,
        commands=1,
        egress=[],
    )
    db.add(row)
    db.flush()
    return row


def close_sessions(
    db: Session,
    sandbox_id: str,
    kinds: Sequence[str],
    wall_s: float,
    cpu_s: float | None,
    egress: Sequence[str] = (),
) -> None:
    """End the open sessions of these kinds on the sandbox; count them in the metrics."""
    open_rows = db.scalars(
        select(SandboxSession).where(
            SandboxSession.sandbox_id == sandbox_id,
            SandboxSession.kind.in_(list(kinds)),
            SandboxSession.ended_at.is_(None),
        )
    )
    for row in open_rows:
        row.ended_at, row.wall_s, row.cpu_s = datetime.now(UTC), round(wall_s, 3), cpu_s
        row.egress = sorted(set(egress))[:100]
        attributes = {"tenant": row.tenant, "segment": row.segment, "person": row.person}
        WALL.add(max(wall_s, 0.0), {**attributes, "kind": row.kind})
        if cpu_s is not None:
            CPU.add(cpu_s, {**attributes, "kind": row.kind})
        COMMANDS.add(row.commands, {**attributes, "kind": row.kind})


def close_session(db: Session, session_id: str, wall_s: float) -> None:
    row = db.get(SandboxSession, session_id)
    if row is not None and row.ended_at is None:
        row.ended_at, row.wall_s = datetime.now(UTC), round(wall_s, 3)
        attributes = {"tenant": row.tenant, "segment": row.segment, "person": row.person}
        WALL.add(max(wall_s, 0.0), {**attributes, "kind": row.kind})
        COMMANDS.add(row.commands, {**attributes, "kind": row.kind})


@dataclass
class Summary:
    sandbox: str
    segment: str
    person: str
    sessions: int = 0
    commands: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    first: datetime | None = None
    last: datetime | None = None
    egress: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3)}


def summaries(
    db: Session, tenant: str, person: str | None, sandbox_id: str | None, limit: int
) -> list[Summary]:
    """Per sandbox and person, newest first; `person` None: everyone in the tenant."""
    query = where_given(
        select(SandboxSession).where(SandboxSession.tenant == tenant),
        (SandboxSession.person, person),
        (SandboxSession.sandbox_id, sandbox_id),
    )
    rows = db.scalars(query.order_by(SandboxSession.created_at.desc()).limit(limit * 20))
    out: dict[tuple[str, str], Summary] = {}
    for row in rows:
        key = (row.sandbox_id, row.person)
        item = out.setdefault(key, Summary(row.sandbox_id, row.segment, row.person))
        item.sessions += 1
        item.commands += row.commands
        item.wall_s += row.wall_s or 0.0
        item.cpu_s += row.cpu_s or 0.0
        item.egress = sorted(set(item.egress) | set(row.egress or []))
        item.first = row.created_at if item.first is None else min(item.first, row.created_at)
        item.last = row.created_at if item.last is None else max(item.last, row.created_at)
    return list(out.values())[:limit]


class CpuMeter:
    """Samples the CPU-seconds of live containers about every second, in one thread."""

    def __init__(self, sample: Callable[[str], float | None], interval_s: float = 1.0) -> None:
        self._sample = sample
        self._interval = interval_s
        self._watched: dict[str, str] = {}  # sandbox id → container id
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, sandbox_id: str, container_id: str) -> None:
        with self._lock:
            self._watched[sandbox_id] = container_id
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sandbox-cpu", daemon=True)
                self._thread.start()
        self._take(sandbox_id, container_id)

    def done(self, sandbox_id: str) -> float | None:
        """The last sample, and stop watching it."""
        with self._lock:
            container_id = self._watched.pop(sandbox_id, None)
        if container_id is not None:
            self._take(sandbox_id, container_id)  # the container may still answer
        with self._lock:
            return self._seen.pop(sandbox_id, None)

    def stop(self) -> None:
        self._stop.set()

    def _take(self, sandbox_id: str, container_id: str) -> None:
        try:
            value = self._sample(container_id)
        except Exception:  # a sample is best effort; the next one may answer
            log.debug("cpu sample of %s failed", sandbox_id, exc_info=True)
            return
        if value:
            with self._lock:
                self._seen[sandbox_id] = max(value, self._seen.get(sandbox_id, 0.0))

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                watched = list(self._watched.items())
            for sandbox_id, container_id in watched:
                self._take(sandbox_id, container_id)
