"""The gateway's scan of one version: its Parquet file (before) against its Iceberg snapshot
(after), same file, same run, interleaved; local folder only (no server, no HTTP).

Per source: time to the first batch (planning included: a fresh scan each time, and again with
the per-process scan cache warm) and the time and process CPU to stream every batch of a
projected, filtered read, as `planner.batches` does. Medians of --repeats.

Run: .venv/bin/python -m tests.benchmarks.bench_iceberg_scan [--rows 2000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pyiceberg.catalog.sql import SqlCatalog

from warden.catalog import tables
from warden.catalog.storage import DataFile

COLUMNS = ["user_id", "pin_id", "action", "dwell_ms", "region"]


def _data(rows: int) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame(
        {
            "engagement_id": np.arange(rows),
            "user_id": rng.integers(0, 50_000, rows),
            "pin_id": rng.integers(0, 200_000, rows),
            "action": rng.choice(["view", "save", "click", "hide"], rows),
            "dwell_ms": rng.integers(0, 60_000, rows),
            "region": rng.choice(["EU", "NA", "APAC"], rows),
            "ts": rng.integers(1_700_000_000, 1_800_000_000, rows),
        }
    )


def _stream(source: Any) -> tuple[float, float, float]:
    """(s to first batch, s for all, CPU s for all) of a projected, filtered read."""
    t0, c0 = time.perf_counter(), time.process_time()
    frame = source.scan().select(COLUMNS).filter(pl.col("region") != "APAC")
    first = None
    for _ in frame.collect_batches(chunk_size=256 * 1024):
        first = first if first is not None else time.perf_counter() - t0
    return first or 0.0, time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp:
        root = Path(tmp)
        path = root / "engagements.parquet"
        _data(args.rows).write_parquet(path)
        catalog = SqlCatalog("bench", uri=f"sqlite:///{root / 'catalog.db'}")
        catalog.create_namespace("acme")
        table = catalog.create_table(
            ("acme", "engagements"),
            schema=pl.scan_parquet(path).head(0).collect().to_arrow().schema,
            location=(root / "table").as_uri(),
        )
        table.add_files([str(path)])
        snapshot = table.current_snapshot()
        assert snapshot is not None
        parquet = DataFile(str(path))
        iceberg = tables.SnapshotFile(table.metadata_location, snapshot=snapshot.snapshot_id)
        results: dict[str, list[tuple[float, float, float]]] = {
            "parquet file": [],
            "iceberg, fresh scan": [],
            "iceberg, cached scan": [],
        }
        _stream(parquet), _stream(iceberg)  # warm the page cache and imports
        for _ in range(args.repeats):  # interleaved: both see the same machine noise
            results["parquet file"].append(_stream(parquet))
            tables._snapshot_scan.cache_clear()
            results["iceberg, fresh scan"].append(_stream(iceberg))
            results["iceberg, cached scan"].append(_stream(iceberg))
    base = statistics.median(r[1] for r in results["parquet file"])
    print(
        f"scan of {args.rows:,} rows, {len(COLUMNS)} of 7 columns, one filter,"
        f" medians of {args.repeats}:"
    )
    print(f"  {'source':<22} {'first batch':>11} {'all batches':>11} {'CPU':>8} {'vs parquet':>10}")
    for name, rows in results.items():
        first = statistics.median(r[0] for r in rows)
        total = statistics.median(r[1] for r in rows)
        cpu = statistics.median(r[2] for r in rows)
        print(
            f"  {name:<22} {first * 1000:>9.1f}ms {total:>10.3f}s {cpu:>7.3f}s"
            f" {total / base:>10.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
