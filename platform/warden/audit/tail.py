"""How long a process's own audit events have waited past the newest signed checkpoint.

The log's unprotected tail (the events after the newest checkpoint) can be cut by anyone who
writes the database; it was said to last a checkpoint interval, since the next round signs
it. But a round that *fails* (an exception, not a finding) was only logged, and someone with
DDL can fail the checkpointer's reads alone (a view or a row-security function that raises on
its walk) while every request goes on being appended: the tail then grows for as long as they
like, to be cut later (red team 21). A database outage fails the rounds too, but then the
appends fail with them, so what tells the two apart is the process's own appends: each process
notes when it committed events the newest checkpoint does not cover yet, and audit/anchor.py
refuses to append more once the oldest has waited `STALE_ROUNDS` intervals (after trying to
write the checkpoint itself, which a healed database allows at once).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

# Checkpoint intervals an audit event may wait unprotected before its process appends no more.
STALE_ROUNDS = 5
SAMPLE_S = 1.0  # one (seq, time) noted per second of commits: the oldest is right to a second


class Tail:
    """One process's events past the newest checkpoint, as (seq, monotonic time) samples."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        # no cadence (interval 0: checkpoints on demand only), no bound
        self.bound_s = STALE_ROUNDS * interval_s if interval_s > 0 else 0.0
        self.clock = clock
        self._samples: deque[tuple[int, float]] = deque()
        self._lock = threading.Lock()

    def committed(self, seqs: Iterable[int]) -> None:
        if not self.bound_s:
            return
        now = self.clock()
        with self._lock:
            if not self._samples or now - self._samples[-1][1] >= SAMPLE_S:
                first = min(seqs, default=None)
                if first is not None:
                    self._samples.append((first, now))

    def may_be_stale(self) -> bool:
        """Cheap, lock-free: whether the oldest event noted waited past the bound (then ask
        `stale` with the newest checkpoint's seq)."""
        try:
            since = self._samples[0][1]
        except IndexError:
            return False
        return self.clock() - since > self.bound_s

    def stale(self, checkpointed_seq: int) -> float:
        """Forget what the checkpoint at `checkpointed_seq` covers; how long the oldest event
        left has waited, when that is past the bound (else 0)."""
        with self._lock:
            while self._samples and self._samples[0][0] <= checkpointed_seq:
                self._samples.popleft()
            waited = self.clock() - self._samples[0][1] if self._samples else 0.0
        return waited if waited > self.bound_s else 0.0


__all__ = ["SAMPLE_S", "STALE_ROUNDS", "Tail"]
