"""Kernel names for Warden's own threads, so `top -H`, `perf` and /proc tell them apart.

Python names a thread for itself only; the kernel sees every thread of the process as
`python`. A large streamed read runs in several (the event loop, a worker making chunks, a
sender, the stream's hashing thread) beside polars' own, which name themselves; where each
one's CPU goes is what `tests/benchmarks/bench_stream_threads.py` shows.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

_PR_SET_NAME = 15  # prctl(2): the calling thread's name, at most 15 bytes
_libc = ctypes.CDLL(ctypes.util.find_library("c")) if Path("/proc/self/task").is_dir() else None


def name_this_thread(name: str) -> None:
    """Give the calling thread a kernel name, cut to 15 bytes (nothing where not Linux)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
