"""Time to first byte of a large streamed read whose masks are cold (the version's first read
since the process started, or since the tenant's key rotated): a read of `engagements`
(`user_id` masked) through the gateway in process, up to its first chunk of Arrow bytes, the
intent event committed. Before: each batch's masks waited for the token table of the whole
file (a scan of every id in it); after: the first batch is masked with its own tokens (the
second one builds that table). Both in one run, interleaved, on the same registered version.

Run: .venv/bin/python -m tests.benchmarks.bench_stream_first_byte [--rows 10000000 30000000]
     [--storage s3|local] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

import warden.gateway.masking as masking
import warden.gateway.planner as planner
from tests.benchmarks.bench_read import COLUMNS, _seed
from tests.benchmarks.bench_stream import big_version, seaweedfs
from tests.benchmarks.harness import prepare
from warden.catalog.storage import storage_for
from warden.core.platform import Platform, build_platform
from warden.core.process import WardenProcess
from warden.db.generation import read_stamp_of
from warden.db.session import unit_of_work
from warden.gateway.service import governed_read
from warden.identity.service import authenticate

BODY = json.dumps({"purpose": "training", "columns": COLUMNS}).encode()
_after = planner.batches


def _before(plan: planner.Plan, rows: int = planner.BATCH_ROWS) -> Iterator[pl.DataFrame]:
    """The batches as before: each one's masks wait for the whole file's token table."""
    for frame in plan.frame.collect_batches(chunk_size=rows):
        yield planner._late_masks(plan, frame, wait=True)


def _cold() -> None:
    """Forget every token table."""
    masking.forget_tables()


def first_byte(platform: Platform, token: str) -> float:
    """Seconds from the request to its first chunk of bytes (the intent already committed)."""
    t0 = time.perf_counter()
    with unit_of_work(platform.sessions) as db:
        stamp = read_stamp_of(db)
        caller = authenticate(db, token, cached=platform.tokens.at(stamp.generation))
        result = governed_read(platform, caller, "engagements", BODY, session=db, stamp=stamp)
    body = result.body
    assert hasattr(body, "next_chunk"), "the answer was not streamed"
    body.handed(body.next_chunk())
    took = time.perf_counter() - t0
    body.finish(complete=False, reason="benchmark")
    return took


def measure(storage: str, rows: int, repeats: int, s3: dict[str, str] | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as name:
        tmp = Path(name)
        settings, token = prepare(tmp / "data", None)
        _seed(settings, "small")
        if storage == "s3":
            assert s3 is not None
            settings = settings.model_copy(
                update={
                    "storage_url": s3["WARDEN_STORAGE_URL"] + f"/bench-{time.time_ns()}",
                    "s3_endpoint_url": s3["WARDEN_S3_ENDPOINT_URL"],
                    "s3_access_key_id": s3["WARDEN_S3_ACCESS_KEY_ID"],
                    "s3_secret_access_key": s3["WARDEN_S3_SECRET_ACCESS_KEY"],
                }
            )
        store = storage_for(settings)
        big_version(settings, rows, store, tmp)
        platform = build_platform(settings)
        process = WardenProcess.build(platform, socket_app=None, jobs=False, access=False)
        process.start()
        got: dict[str, list[float]] = {"before": [], "after": [], "warm": []}
        try:
            first_byte(platform, token)  # the scan's planning, cached per version either way
            for _ in range(repeats):
                for label, batches in (("before", _before), ("after", _after)):
                    _cold()
                    planner.batches = batches
                    got[label].append(first_byte(platform, token))
                planner.batches = _after
                got["warm"].append(first_byte(platform, token))
            _cold()
        finally:
            planner.batches = _after
            process.stop()
            if store.remote:  # the bench's prefix: its objects and nothing else
                store.filesystem().delete_dir(f"{store.bucket}/{store.prefix}")
    return {
        "storage": storage,
        "rows": rows,
        **{f"{k}_ms": [round(x * 1e3, 1) for x in v] for k, v in got.items()},
        **{f"{k}_ms_median": round(statistics.median(v) * 1e3, 1) for k, v in got.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000, 30_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--storage", choices=["local", "s3"], default="s3")
    args = parser.parse_args(argv)
    s3 = seaweedfs() if args.storage == "s3" else None
    storage = args.storage if s3 is not None or args.storage == "local" else "local"
    print("time to first byte, cold masks (before | after), then warm; ms, median [each]:")
    for rows in args.rows:
        r = measure(storage, rows, args.repeats, s3)
        print(
            f"  {storage:<5} {rows:>12,} rows:"
            f" before {r['before_ms_median']:>7.1f} {r['before_ms']}"
            f"  after {r['after_ms_median']:>6.1f} {r['after_ms']}"
            f"  warm {r['warm_ms_median']:>6.1f} {r['warm_ms']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
