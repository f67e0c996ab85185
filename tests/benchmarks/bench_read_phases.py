"""Where a small governed read's CPU goes: the read path's phases, timed in process.

One thread, sequential reads (no HTTP, no concurrency: each audit event is its own commit),
100 rows of `engagements` with `user_id` masked and a filter, as `bench_small_reads` asks.
Each phase's share is the process CPU time (every thread: polars' pool included) spent inside
it, found by wrapping the gateway's own functions for the run.

Run: .venv/bin/python -m tests.benchmarks.bench_read_phases [--reads 600] [--postgres]
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import warden.gateway.planner as planner
import warden.gateway.service as gateway
from tests.benchmarks.bench_read import COLUMNS, _seed
from tests.benchmarks.harness import postgres_database, prepare
from warden.core.filesystem import restrict_umask
from warden.core.platform import build_platform
from warden.core.process import WardenProcess
from warden.db.generation import read_stamp_of
from warden.db.session import unit_of_work
from warden.identity.service import authenticate

PHASES = [  # (module, function, label)
    (gateway, "record", "audit record"),
    (planner, "collect", "plan collect + masks"),
    (planner, "build", "plan build"),
    (gateway, "ArrowStream", "Arrow IPC"),
    (gateway, "authorize_read", "authorize_read"),
    (gateway, "parse_request", "parse body"),
]


def _timed(fn: Callable[..., Any], label: str, spent: collections.Counter[str]) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] += time.process_time() - start

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reads", type=int, default=600)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    restrict_umask()
    spent: collections.Counter[str] = collections.Counter()
    for module, name, label in PHASES:
        setattr(module, name, _timed(getattr(module, name), label, spent))
    body = json.dumps(
        {
            "purpose": "training",
            "columns": COLUMNS,
            "limit": 100,
            "where": [{"column": "region", "op": "ne", "value": "zz"}],
        }
    ).encode()
    database = postgres_database() if args.postgres else nullcontext(None)
    with tempfile.TemporaryDirectory() as tmp, database as url:
        settings, token = prepare(Path(tmp), url)
        _seed(settings, "small")
        platform = build_platform(settings)
        process = WardenProcess.build(platform, socket_app=None, jobs=False, access=False)
        process.start()

        def one() -> None:
            start = time.process_time()
            with unit_of_work(platform.sessions) as db:
                stamp = read_stamp_of(db)
                caller = authenticate(db, token, cached=platform.tokens.at(stamp.generation))
                spent["stamp + token"] += time.process_time() - start
                result = gateway.governed_read(
                    platform, caller, "engagements", body, session=db, stamp=stamp
                )
            b"".join(result.body)

        try:
            for _ in range(100):
                one()
            spent.clear()
            start = time.process_time()
            for _ in range(args.reads):
                one()
            total = time.process_time() - start
        finally:
            process.stop()
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"{backend}: {total / args.reads * 1e3:.2f} ms CPU per read ({args.reads} reads)")
    for label, seconds in spent.most_common():
        print(f"  {label:<22} {seconds / args.reads * 1e3:6.3f} ms")
    print(f"  {'the rest':<22} {(total - sum(spent.values())) / args.reads * 1e3:6.3f} ms")


if __name__ == "__main__":
    main()
