"""The access worker: one daemon thread per API process, started with the app, that sends
due webhooks (retrying with backoff) and runs the optional tidy-up. Neither is needed for
correctness: expired and revoked grants never allow, with or without it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from warden.access import expiry, webhooks
from warden.core.platform import Platform

log = logging.getLogger("warden.access.worker")


class AccessWorker:
    def __init__(self, state: Platform) -> None:
        self.state = state
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_tidy = time.monotonic()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="warden-access-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    def run_once(self) -> int:
        """Send every delivery that is due now; returns how many were attempted."""
        settings = self.state.settings
        sent = 0
        while True:
            batch = webhooks.deliver_due(self.state.sessions, settings)
            sent += batch
            if batch < webhooks.BATCH or self._stop.is_set():
                return sent

    def _run(self) -> None:
        while not self._stop.is_set():
            settings = self.state.settings
            try:
                self.run_once()
                interval = settings.access_tidy_interval_s
                if interval and time.monotonic() - self._last_tidy >= interval:
                    self._last_tidy = time.monotonic()
                    expiry.tidy(self.state)
            except Exception:
                # The worker must outlive a database blip; the next round retries.
                log.exception("access worker round failed")
            self._wake.wait(settings.webhook_poll_s)
            self._wake.clear()


def worker_of(app: Any) -> AccessWorker | None:
    worker = getattr(app.state, "access_worker", None)
    return worker if isinstance(worker, AccessWorker) else None


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Started and stopped with the app (merged into the app's lifespan by include_router)."""
    worker = AccessWorker(app.state.warden)
    app.state.access_worker = worker
    worker.start()
    try:
        yield
    finally:
        worker.stop()
        app.state.access_worker = None
