"""Governed read benchmarks.

1. Throughput: `engagements` (7 columns, user_id masked) through HTTP into a polars
   DataFrame, against `polars.read_parquet` of the same columns from the same file.
2. Small audited read (100 rows) over HTTP: p50/p99 on SQLite and on PostgreSQL.

Run: .venv/bin/python -m tests.benchmarks.bench_read [--scale large]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

from tests.benchmarks.harness import postgres_database, prepare, served
from tests.serving import bound_engine
from warden.catalog.seeding import seed_taste_graph
from warden.catalog.service import load_view
from warden.db.session import make_sessionmaker, unit_of_work
from warden.sdk import Client

COLUMNS = ["user_id", "pin_id", "board_id", "action", "ts", "region", "dwell_ms"]


def _seed(settings: Any, scale: str) -> Path:
    engine = bound_engine(settings)
    with unit_of_work(make_sessionmaker(engine)) as db:
        seed_taste_graph(
            db,
            datasets_dir=settings.datasets_dir,
            tenant_name="acme",
            owner_name="admin",
            scale=scale,
        )
    with unit_of_work(make_sessionmaker(engine)) as db:
        path = load_view(db, settings.datasets_dir, "acme", "engagements").path
    engine.dispose()
    return path


def throughput(scale: str = "large", repeats: int = 5) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp:
        settings, token = prepare(Path(tmp), None)
        path = _seed(settings, scale)
        with served(settings) as url, Client(url=url, token=token) as client:
            client.read("engagements", purpose="training", columns=COLUMNS)  # warm the mask cache
            governed, raw, rows = [], [], 0
            for _ in range(repeats):  # interleaved, so both see the same machine noise
                t0 = time.perf_counter()
                df = client.read("engagements", purpose="training", columns=COLUMNS)
                governed.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                raw_df = pl.read_parquet(path, columns=COLUMNS)
                raw.append(time.perf_counter() - t0)
                rows = df.height
                assert raw_df.height == rows
        g, r = statistics.median(governed), statistics.median(raw)
        return {
            "benchmark": "governed_read_throughput",
            "scale": scale,
            "rows": rows,
            "columns": len(COLUMNS),
            "masked": 1,
            "governed_s_median": round(g, 3),
            "raw_polars_s_median": round(r, 3),
            "governed_rows_per_s": round(rows / g),
            "raw_rows_per_s": round(rows / r),
            "ratio": round(r / g, 3),
            "target_ratio": 0.5,
        }


def small_read_latency(backend: str, requests: int = 400) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp:
        if backend == "postgres":
            with postgres_database() as url:
                return _latency(Path(tmp), url, backend, requests)
        return _latency(Path(tmp), None, backend, requests)


def _latency(tmp: Path, url: str | None, backend: str, requests: int) -> dict[str, Any]:
    settings, token = prepare(tmp, url)
    _seed(settings, "small")
    with served(settings) as api, Client(url=api, token=token) as client:
        for _ in range(30):
            client.read("engagements", purpose="training", columns=COLUMNS, limit=100)
        times = []
        for _ in range(requests):
            t0 = time.perf_counter()
            df = client.read("engagements", purpose="training", columns=COLUMNS, limit=100)
            times.append((time.perf_counter() - t0) * 1000)
            assert df.height == 100
    times.sort()
    return {
        "benchmark": "small_audited_read",
        "backend": backend,
        "requests": requests,
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
        "target_p50_ms": 10,
        "target_p99_ms": 30,
    }


def run(scale: str = "large") -> list[dict[str, Any]]:
    return [
        throughput(scale),
        small_read_latency("sqlite"),
        small_read_latency("postgres"),
    ]


def print_table(rows: list[dict[str, Any]]) -> None:
    t = rows[0]
    print(
        f"governed read of engagements ({t['scale']}: {t['rows']:,} rows, {t['columns']} columns,"
        f" {t['masked']} masked) through HTTP into polars, vs polars.read_parquet, same run:"
    )
    print(
        f"  governed {t['governed_s_median']:.3f}s  raw {t['raw_polars_s_median']:.3f}s  "
        f"ratio {t['ratio']:.2f} (target >= {t['target_ratio']})"
    )
    print("small audited read (100 rows) over HTTP:")
    print(f"  {'backend':<10} {'n':>5} {'p50':>9} {'p99':>9}   target p50<=10ms p99<=30ms")
    for r in rows[1:]:
        print(
            f"  {r['backend']:<10} {r['requests']:>5} {r['p50_ms']:>7.2f}ms {r['p99_ms']:>7.2f}ms"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", default="large", choices=["small", "medium", "large"])
    parser.add_argument("--json", type=Path, default=Path("bench-results/read.json"))
    args = parser.parse_args(argv)
    rows = run(args.scale)
    print_table(rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"benchmark": "read", "results": rows}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
