"""What a small read costs the server, against the floor under it, side by side in one run.

The clients of `bench_small_reads` (keep-alive connections on one asyncio loop, the same
request bytes) against, in interleaved rounds:
- `raw`: a bare ASGI callable under the server `warden serve` runs (uvicorn, Warden's HTTP
  protocol, a socket per worker);
- `bare`: a FastAPI app with one endpoint under that server;
- `noop`: Warden's app, an endpoint innermost of its middleware (telemetry, the edge, the
  body caps) that answers on the event loop;
- `hop`: the same, after a hop to a read thread that does nothing there;
- `stamp`: after reading the freshness stamp in that thread (one statement);
- `auth`: after authenticating in that thread as a read does (the stamp, the cached token);
- `read`: the real small read (100 rows of `engagements`, `user_id` masked, half filtered).
Every answer is the real read's size. Per kind: server CPU per request (every process of that
server, from /proc), requests/s, p50, p99 and the load average beside it.

Run: PYTHONPATH=$PWD/platform:$PWD .venv/bin/python -m tests.benchmarks.bench_small_read_floor
     [--backend postgres] [--workers 2] [--clients 16] [--requests 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.bench_read import COLUMNS
from tests.benchmarks.bench_small_reads import READ_PATH, REPO, _tree_cpu_s, load, seeded
from tests.benchmarks.harness import free_port, postgres_database
from tests.serving import serve_env, wait_until_healthy
from warden.core.filesystem import restrict_umask

KINDS = ("raw", "bare", "noop", "hop", "stamp", "auth", "read")


@contextmanager
def server(app: str, env: dict[str, str], workers: int) -> Iterator[tuple[str, int]]:
    port = free_port()
    # Not `-m`: uvicorn's spawned workers would re-import a `-m` module as their main and die.
    launch = f"import sys; sys.argv[1:] = {[app, str(port), str(workers)]!r};" + (
        " from tests.benchmarks.floor_apps import main; main()"
    )
    cmd = [sys.executable, "-c", launch]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(proc, url, app)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def answer_size(url: str, token: str) -> int:
    body = {"purpose": "training", "columns": COLUMNS, "limit": 100}
    answer = httpx.post(
        f"{url}{READ_PATH}", json=body, headers={"authorization": f"Bearer {token}"}, timeout=30
    )
    answer.raise_for_status()
    return len(answer.content)


def run(backend: str, workers: int, clients: int, requests: int, rounds: int) -> list[dict]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="warden-floor-") as tmp:
        database = postgres_database() if backend == "postgres" else nullcontext(None)
        with database as url:
            settings, token = seeded(REPO, Path(tmp), url)
            env = serve_env(
                settings,
                PYTHONPATH=f"{REPO / 'platform'}{os.pathsep}{REPO}",
                WARDEN_JOBS_WORKER="false",
            )
            with (
                server("warden", env, workers) as (warden_url, warden_pid),
                server("bare", env, workers) as (bare_url, bare_pid),
                server("raw_app", env, workers) as (raw_url, raw_pid),
            ):
                size = answer_size(warden_url, token)
                targets = {
                    "raw": (raw_url, raw_pid, f"/bench/raw/{size}"),
                    "bare": (bare_url, bare_pid, f"/bench/bare/{size}"),
                    "noop": (warden_url, warden_pid, f"/bench/noop/{size}"),
                    **{
                        step: (warden_url, warden_pid, f"/bench/{step}/{size}")
                        for step in ("hop", "stamp", "auth")
                    },
                    "read": (warden_url, warden_pid, READ_PATH),
                }
                for url_, _, path in targets.values():
                    load(url_, token, min(clients, 4), 40, path)  # warm up every worker
                for n in range(rounds):
                    for kind in KINDS:
                        url_, pid, path = targets[kind]
                        cpu0, load0 = _tree_cpu_s(pid), os.getloadavg()[0]
                        latencies, wall, failures = load(url_, token, clients, requests, path)
                        cpu = _tree_cpu_s(pid) - cpu0
                        row = _row(kind, n, latencies, wall, failures, cpu, load0, size)
                        rows.append(row)
                        print_row(row)
    return rows


def _row(
    kind: str,
    round_: int,
    latencies: list[float],
    wall: float,
    failures: int,
    cpu: float,
    load0: float,
    size: int,
) -> dict[str, Any]:
    latencies.sort()
    served = len(latencies)
    return {
        "kind": kind,
        "round": round_,
        "served": served,
        "failures": failures,
        "answer_bytes": size,
        "per_s": round(served / wall, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[max(0, int(served * 0.99) - 1)], 1),
        "cpu_ms": round(cpu * 1000 / served, 3),
        "load_avg": round(max(load0, os.getloadavg()[0]), 2),
    }


def print_row(r: dict[str, Any]) -> None:
    print(
        f"{r['kind']:<5} round {r['round']}  {r['per_s']:>7.1f}/s  p50 {r['p50_ms']:>6.1f}ms"
        f"  p99 {r['p99_ms']:>6.1f}ms  CPU/request {r['cpu_ms']:>6.3f}ms"
        f"  served {r['served']} failed {r['failures']}  load {r['load_avg']:.2f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", default="postgres", choices=("postgres", "sqlite"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("bench-results/small_read_floor.json"))
    args = parser.parse_args(argv)
    restrict_umask()
    rows = run(args.backend, args.workers, args.clients, args.requests, args.rounds)
    print(
        f"\nmedian over {args.rounds} rounds ({args.backend}, {args.workers} workers,"
        f" {args.clients} clients):"
    )
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        cpu = statistics.median(r["cpu_ms"] for r in mine)
        print(
            f"{kind:<5} CPU/request {cpu:6.3f} ms"
            f"  {statistics.median(r['per_s'] for r in mine):7.1f}/s"
            f"  p50 {statistics.median(r['p50_ms'] for r in mine):6.1f} ms"
            f"  p99 {statistics.median(r['p99_ms'] for r in mine):6.1f} ms"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"benchmark": "small_read_floor", "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
