"""Everything a Warden process runs beside its requests, started and stopped in one place: the
sandbox runtime (its gateway sockets serve the governed read path), the job worker, the
access worker and the audit checkpointer. `warden serve` (through the API's lifespan),
`warden worker` and the demo all run a `WardenProcess`; domains never import this module.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field

from warden.access.background import AccessWorker
from warden.audit.anchor import anchor
from warden.audit.checkpoints import Checkpointer
from warden.core.platform import Platform
from warden.jobs.worker import JobWorker
from warden.sandbox.gateway_socket import ASGIApp
from warden.sandbox.runtime import SandboxRuntime

log = logging.getLogger("warden.process")


@dataclass
class WardenProcess:
    platform: Platform
    sandboxes: SandboxRuntime
    jobs: JobWorker | None = None
    access: AccessWorker | None = None
    checkpointer: Checkpointer | None = None
    started: bool = field(default=False, init=False)
    froze: bool = field(default=False, init=False)  # this start froze the collector's objects

    @classmethod
    def build(
        cls,
        platform: Platform,
        socket_app: ASGIApp,
        *,
        jobs: bool | None = None,
        access: bool = True,
        slots: int | None = None,
        poll_s: float | None = None,
    ) -> WardenProcess:
        """`jobs` None: as WARDEN_JOBS_WORKER says. `access`: the webhook sender and tidy-up,
        and the audit checkpointer's cadence (signed checkpoints every
        WARDEN_AUDIT_CHECKPOINT_INTERVAL_S). Every process anchors what it serves, elected or
        not (audit/anchor.py): its checkpointer then signs on demand only."""
        sandboxes = SandboxRuntime(platform, socket_app)
        run_jobs = platform.settings.jobs.worker if jobs is None else jobs
        return cls(
            platform,
            sandboxes,
            JobWorker(platform, sandboxes, slots=slots, poll_s=poll_s) if run_jobs else None,
            AccessWorker(platform) if access else None,
            _checkpointer(platform, cadence=access),
        )

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        try:
            reaped = self.sandboxes.reconcile()
            if reaped:
                log.warning("stopped and recorded %d orphaned sandbox(es): %s", len(reaped), reaped)
        except Exception as exc:  # no engine here: the process still serves reads
            log.warning("sandbox start-up check skipped: %s", exc)
        for loop in (self.access, self.jobs, self.checkpointer):
            if loop is not None:
                loop.start()
        # What start-up built lives as long as the process: out of the collector's sight, a
        # full collection no longer walks it under load (it was most of the small reads' p99).
        # A program that froze its own objects first (the test run) keeps its freeze: `stop`
        # could only unfreeze them all.
        self.froze = gc.get_freeze_count() == 0
        if self.froze:
            gc.freeze()

    def stop(self) -> None:
        """Sandboxes stop first (recorded), so the job slots waiting on them can end."""
        self.started = False
        for loop in (self.checkpointer, self.access):
            if loop is not None:
                loop.stop()
        self.sandboxes.shutdown()
        if self.jobs is not None:
            self.jobs.stop()
        if self.froze:  # a process stopped inside a longer-lived one is collectable
            gc.unfreeze()
            self.froze = False


def _checkpointer(platform: Platform, *, cadence: bool) -> Checkpointer | None:
    """The process's checkpointer, on the cadence or (`cadence` False) on demand only. Never
    none where the keys can be read: a process without one anchored nothing it served (a raw
    read, a revocation) and never looked at the alarms (red team 21)."""
    try:
        made = Checkpointer(platform, interval_s=None if cadence else 0)
    except Exception as exc:  # keys unreadable: verify reports it, reads still audit
        log.error("audit checkpointer not started: %s", exc)
        return None
    anchor(platform.engine, made)  # what ends access is checkpointed at once
    return made
