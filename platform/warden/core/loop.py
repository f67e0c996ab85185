"""The one shape of a background loop: N daemon threads that each run a round, wait for a wake-up
or the poll interval, and outlive a failed round (a database blip must not kill them)."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("warden.loop")


class BackgroundLoop:
    """Subclasses implement `run_once`."""

    name = "warden-loop"

    def __init__(self, poll_s: float, threads: int = 1) -> None:
        self.poll_s = poll_s
        self.threads = threads
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._running: list[threading.Thread] = []

    def run_once(self) -> object:
        """One round; a truthy answer means work was done (and another round runs at once)."""
        raise NotImplementedError

    def start(self) -> None:
        if self._running:
            return
        self._stop.clear()
        self._running = [
            threading.Thread(target=self.run, name=f"{self.name}-{i}", daemon=True)
            for i in range(self.threads)
        ]
        for thread in self._running:
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._running:
            thread.join(timeout)
        self._running = []

    def wake(self) -> None:
        """Run a round now rather than at the next poll."""
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        failed = 0  # rounds failed in a row: one traceback per outage, then one line a round
        while not self._stop.is_set():
            try:
                worked = self.run_once()
            except Exception as exc:
                failed += 1
                if failed == 1:
                    log.exception("%s: round failed; the next one retries", self.name)
                else:
                    log.warning("%s: round %d in a row failed: %s", self.name, failed, exc)
            else:
                if failed:
                    log.warning("%s: recovered after %d failed rounds", self.name, failed)
                failed = 0
                if worked:
                    continue
            self._wake.wait(self.poll_s)
            self._wake.clear()
