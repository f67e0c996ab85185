"""Small governed reads, before and after, both servers up at once and bursts alternated.

`bench_small_reads` starts a server per configuration and measures one burst each, so a pair
is two bursts a minute apart on a shared machine whose load drifts. Here both trees are served
side by side (each with its own database, seeded by its own code), warmed, and then
measured in turns: a burst of `--reads` on one, then on the other, the order swapped each
round, so each pair shares its moment. Per burst: server CPU per read (every server process,
from /proc), reads/s, p50, p99, the load average; then the medians and the paired difference
(after - before) of CPU per read, and the audited `dataset.read` events of each server counted
against its reads served (they must be equal).

Run: .venv/bin/python -m tests.benchmarks.bench_small_reads_paired [--before main]
[--backend postgres] [--workers 2] [--reads 1500] [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_small_reads import (
    REPO,
    _audited_reads,
    _tree_cpu_s,
    before_tree,
    load,
    seeded,
    serve,
)
from tests.benchmarks.harness import postgres_database
from warden.core.filesystem import restrict_umask


def burst(api: str, pid: int, token: str, clients: int, reads: int) -> dict[str, Any]:
    cpu0, load0 = _tree_cpu_s(pid), os.getloadavg()[0]
    latencies, wall, failures = load(api, token, clients, reads)
    cpu = _tree_cpu_s(pid) - cpu0
    latencies.sort()
    served = len(latencies)
    return {
        "served": served,
        "failures": failures,
        "cpu_ms_per_read": round(cpu * 1000 / served, 3) if served else None,
        "reads_per_s": round(served / wall, 1) if wall else 0.0,
        "p50_ms": round(latencies[served // 2], 1) if served else None,
        "p99_ms": round(latencies[max(0, int(served * 0.99) - 1)], 1) if served else None,
        "load_avg": round(load0, 2),
    }


def run(
    before: str, backend: str, workers: int, clients: int, reads: int, rounds: int
) -> dict[str, Any]:
    bursts: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    audited: dict[str, bool] = {}
    with ExitStack() as stack:
        old = stack.enter_context(before_tree(before))
        servers = {}
        for label, tree in (("before", old), ("after", REPO)):
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="warden-bench-"))
            database = postgres_database() if backend == "postgres" else nullcontext(None)
            url = stack.enter_context(database)
            settings, token = seeded(tree, Path(tmp), url)
            api, pid = stack.enter_context(serve(settings, str(tree / "platform"), workers))
            load(api, token, min(clients, 4), 40)  # warm up (caches, pools, every worker)
            servers[label] = (api, pid, token, settings, _audited_reads(settings))
        for n in range(rounds):
            for label in ("before", "after") if n % 2 == 0 else ("after", "before"):
                api, pid, token, _, _ = servers[label]
                row = burst(api, pid, token, clients, reads)
                bursts[label].append(row)
                print(f"round {n:>2} {label:<6} " + "  ".join(f"{k} {v}" for k, v in row.items()))
        for label, (_, _, _, settings, start) in servers.items():
            served = sum(b["served"] for b in bursts[label])
            audited[label] = _audited_reads(settings) - start == served
    return {"before_rev": before, "bursts": bursts, "audited_equals_served": audited}


def summary(result: dict[str, Any]) -> list[str]:
    lines = []
    for label, rows in result["bursts"].items():
        median = {
            key: round(statistics.median(r[key] for r in rows), 3)
            for key in ("cpu_ms_per_read", "reads_per_s", "p50_ms", "p99_ms")
        }
        lines.append(f"{label:<6} medians: " + "  ".join(f"{k} {v}" for k, v in median.items()))
    pairs = zip(result["bursts"]["before"], result["bursts"]["after"], strict=True)
    diffs = [a["cpu_ms_per_read"] - b["cpu_ms_per_read"] for b, a in pairs]
    lower = sum(d < 0 for d in diffs)
    lines.append(
        f"after - before, CPU per read: median {statistics.median(diffs):+.3f} ms,"
        f" lower in {lower} of {len(diffs)} pairs"
    )
    lines.append(f"audited events == reads served: {result['audited_equals_served']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--before", default="main", help="git revision for 'before'")
    parser.add_argument("--backend", default="postgres", choices=["postgres", "sqlite"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--reads", type=int, default=1500, help="reads per burst")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    restrict_umask()  # as every Warden process: `warden serve` refuses a data folder others reach
    result = run(args.before, args.backend, args.workers, args.clients, args.reads, args.rounds)
    for line in summary(result):
        print(line)
    return 0 if all(result["audited_equals_served"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
