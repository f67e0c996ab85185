"""Which of the process's threads get the CPU first when cores are short.

A large streamed read is a pipeline (polars decodes, a worker thread makes Arrow chunks, a
sender writes them, one thread hashes them in order) whose slowest stage on a 2-core machine
is the SHA-256 of the stream: it can use one core alone, yet got under half of one beside the
read's own decoding and I/O threads. Polars' threads (its pool, its streaming engine's
executor, the object store's I/O runtime) run at a lower priority, so the threads of Warden
itself, the hash and the event loop among them, go first. On Linux a thread is a task of its
own: `setpriority` on its id changes that thread alone, needs no privilege to lower, and
cannot be undone without one, so the lowering is for the process's lifetime.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from pathlib import Path

# The nice value polars' threads run at: a weight of 110 against 1024 for a thread at 0, so a
# Warden thread with work runs first, and polars still has every core no one else wants.
POLARS_NICE = 10
# The names polars' threads give themselves (their kernel names, cut at 15 characters).
POLARS_THREADS = ("polars-", "async-executor", "tokio-rt-worker")
_TASKS = Path("/proc/self/task")
_PR_SET_NAME = 15
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if os.name == "posix" else None


def lower_polars(nice: int = POLARS_NICE) -> int:
    """Lower every polars thread of this process that is not yet as low as `nice`; how many
    were lowered. Polars starts its threads as it first needs them, so this runs again before
    each large read; a thread already lowered costs one read of its name."""
    if not _TASKS.is_dir():  # not Linux: nothing to find the threads by
        return 0
    lowered = 0
    for task in _TASKS.iterdir():
        with contextlib.suppress(OSError, ValueError):  # a thread that ended meanwhile
            if not (task / "comm").read_text().startswith(POLARS_THREADS):
                continue
            tid = int(task.name)
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                lowered += 1
    return lowered


def name_this_thread(name: str) -> None:
    """Give the calling thread a kernel name (`top -H`, /proc), cut to 15 bytes."""
    if _libc is not None and _TASKS.is_dir():
        _libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
