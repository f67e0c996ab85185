"""The access worker: one daemon thread per API process, started with the app, that sends
due webhooks (retrying with backoff) and runs the optional tidy-up. Neither is needed for
correctness: expired and revoked grants never allow, with or without it."""

from __future__ import annotations

import time

from warden.access import expiry, webhooks
from warden.core.loop import BackgroundLoop
from warden.core.platform import Platform


class AccessWorker(BackgroundLoop):
    name = "warden-access-worker"

    def __init__(self, state: Platform) -> None:
        super().__init__(poll_s=state.settings.webhook_poll_s)
        self.state = state
        self._last_tidy = time.monotonic()

    def deliver_due(self) -> int:
        """Send every delivery that is due now; returns how many were attempted."""
        settings = self.state.settings
        sent = 0
        while True:
            batch = webhooks.deliver_due(self.state.sessions, settings)
            sent += batch
            if batch < webhooks.BATCH or self.stopping:
                return sent

    def run_once(self) -> bool:
        self.deliver_due()
        interval = self.state.settings.access_tidy_interval_s
        if interval and time.monotonic() - self._last_tidy >= interval:
            self._last_tidy = time.monotonic()
            expiry.tidy(self.state)
        return False
