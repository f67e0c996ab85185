"""Polars' threads give way to Warden's own; Warden's threads carry kernel names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import warden

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux only")

# In a process of its own: the lowering cannot be undone, and the test process keeps its own.
PROBE = """
import json, os, threading
from pathlib import Path
import polars as pl
from warden.core.threads import POLARS_NICE, lower_polars, name_this_thread

pl.LazyFrame({"a": list(range(100_000))}).select(pl.col("a").sum()).collect(engine="streaming")

TASKS = Path("/proc/self/task")

def tasks():
    return {int(t.name): (t / "comm").read_text().strip() for t in TASKS.iterdir()}

def nice(tid):
    return os.getpriority(os.PRIO_PROCESS, tid)

first = lower_polars()
again = lower_polars()
seen = {}
def named():
    name_this_thread("warden-probe-named-long")
    seen["comm"] = tasks()[threading.get_native_id()]
    seen["nice"] = nice(threading.get_native_id())
t = threading.Thread(target=named)
t.start()
t.join()
print(json.dumps({
    "lowered": first, "again": again, "nice": POLARS_NICE, "seen": seen,
    "threads": [[comm, nice(tid)] for tid, comm in tasks().items()],
    "main": nice(threading.get_native_id()),
}))
"""


def test_polars_threads_run_below_warden_threads() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(warden.__file__).parents[1])}
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env
    )
    got = json.loads(done.stdout)
    polars = [nice for comm, nice in got["threads"] if comm.startswith("async-executor")]
    assert polars, got["threads"]  # the streaming engine's threads were found by name
    assert all(nice == got["nice"] for nice in polars)
    assert got["lowered"] >= len(polars)
    assert got["again"] == 0  # a thread already lowered is left alone
    assert got["main"] == 0  # Warden's own threads keep their priority
    assert got["seen"] == {"comm": "warden-probe-na", "nice": 0}
