"""Where a streamed read's threads ran and waited: a large `engagements` version read through a
real `warden serve` (SDK `iter_batches`), the API process's threads sampled every few ms from
`/proc/PID/task/*/schedstat` (time on a CPU, time runnable but waiting for one) and grouped by
name (polars' pool, its streaming engine's executor, the object store's I/O runtime, the
stream's hashing thread, the senders, the event loop). A thread with work that waits long for
a CPU is short of CPU, not of work. With `--before REV`, REV's code serves the same version
beside this checkout's, reads alternated.

Run: .venv/bin/python -m tests.benchmarks.bench_stream_threads [--rows 10000000]
     [--storage s3|local] [--repeats 3] [--before REV]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_read import COLUMNS, _seed
from tests.benchmarks.bench_small_reads import trees_to_compare
from tests.benchmarks.bench_stream import (
    REPO,
    big_version,
    cpu_seconds,
    in_bucket,
    raw_read,
    seaweedfs,
    served,
    store_pid,
)
from tests.benchmarks.harness import prepare
from warden.catalog.storage import storage_for
from warden.sdk import Client

SAMPLE_S = 0.005


def group_of(comm: str) -> str:
    """A thread's name without its number or stream id (`polars-1` -> `polars`)."""
    name = re.sub(r"[-_ ]?[0-9a-f]{6,}.*$", "", comm)
    return re.sub(r"[-_]?\d+$", "", name) or comm


def _tasks(pid: int) -> dict[int, tuple[str, int, int]]:
    """tid -> (name, ns on a CPU, ns runnable waiting for one)."""
    out: dict[int, tuple[str, int, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            comm = (task / "comm").read_text().strip()
            ran, waited, _ = (task / "schedstat").read_text().split()
            out[int(task.name)] = (comm, int(ran), int(waited))
    return out


class Sampler:
    """Keeps each thread's last (and first) schedstat seen while a read runs: a thread that
    ends mid-read (a stream's hashing thread) still counts."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.first = _tasks(pid)
        self.last = dict(self.first)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.last.update(_tasks(self.pid))

    def stop(self) -> dict[str, tuple[float, float]]:
        """group -> (CPU seconds, seconds waiting for a CPU) over the read."""
        self._stop.set()
        self._thread.join()
        self.last.update(_tasks(self.pid))
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for tid, (comm, ran, waited) in self.last.items():
            _, ran0, waited0 = self.first.get(tid, (comm, 0, 0))
            if ran - ran0 or waited - waited0:
                group = "event loop" if tid == self.pid else group_of(comm)
                sums[group][0] += (ran - ran0) / 1e9
                sums[group][1] += (waited - waited0) / 1e9
        return {k: (v[0], v[1]) for k, v in sums.items()}


def read_sampled(pid: int, client: Client, rows: int, store: int | None) -> tuple[float, Any]:
    """Wall seconds of one read; CPU and wait per thread group of the API process, and the
    CPU seconds of this process (the SDK client, and the sampling) and of the object store."""
    sampler = Sampler(pid)
    t0, c0 = time.perf_counter(), time.process_time()
    s0 = cpu_seconds(store) if store else 0.0
    batches = client.iter_batches("engagements", purpose="training", columns=COLUMNS)
    got = sum(b.height for b in batches)
    wall = time.perf_counter() - t0
    others = {"client+sampler": time.process_time() - c0}
    if store:
        others["object store"] = cpu_seconds(store) - s0
    assert got == rows
    return wall, (sampler.stop(), others)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--storage", choices=["local", "s3"], default="s3")
    parser.add_argument("--before", default=None, help="git revision to serve beside this one")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        trees = trees_to_compare(stack, [args.before] if args.before else [], REPO)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="warden-bench-")))
        settings, token = prepare(tmp / "data", None)
        _seed(settings, "small")
        env: dict[str, str] = {}
        if args.storage == "s3":
            s3 = seaweedfs()
            assert s3 is not None, "no SeaweedFS"
            settings, env = in_bucket(settings, s3, f"t-{time.time_ns()}")
        location, _ = big_version(settings, args.rows, storage_for(settings), tmp)
        options = dict(storage_for(settings).file(location).options)
        for path in [settings.data_dir, *settings.data_dir.rglob("*")]:
            path.chmod(path.stat().st_mode & 0o700)
        arms, store = {}, store_pid() if args.storage == "s3" else None
        for label, tree in trees.items():
            proc, url = stack.enter_context(served(settings, tree, env))
            client = stack.enter_context(Client(url=url, token=token))
            client.read("engagements", purpose="training", columns=COLUMNS, limit=1000)
            arms[label] = (proc.pid, client)
        for round_ in range(args.repeats):
            order = list(arms.items())
            for label, (pid, client) in order if round_ % 2 == 0 else reversed(order):
                wall, (groups, others) = read_sampled(pid, client, args.rows, store)
                load = os.getloadavg()[0]
                shown = "  ".join(f"{k} cpu {v:.3f}s" for k, v in others.items())
                print(f"{label:<18} wall {wall:.3f}s load {load:.1f}  {shown}")
                for group, (ran, waited) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
                    print(f"    {group:<20} cpu {ran:6.3f}s  waited {waited:6.3f}s")
            s0 = cpu_seconds(store) if store else 0.0
            raw = raw_read(location, options)
            shown = f"object store cpu {cpu_seconds(store) - s0:.3f}s" if store else ""
            print(f"{'raw scan':<18} wall {raw['s']:.3f}s cpu {raw['cpu']:.3f}s  {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
