"""Many small governed reads under concurrent load, before and after, in one run.

Each client (a keep-alive connection; all of them on one asyncio loop, a lean HTTP/1.1
client so the load costs little of the machine's CPU) reads 100 rows of `engagements`
(7 columns, `user_id` masked; every other read with a filter) as fast as it can over
loopback HTTP. "before" is the code of a git commit
(default: the merge base with main, checked out into a temporary worktree); "after" is this
tree. Each tree initialises and seeds its own database with its own code (a process of its
own), so a change to what is stored (token hashes, seals) compares fairly. Per
configuration: reads/s, p50, p99, server CPU per read (every server process,
workers included, from /proc), the load average of the machine beside it (the machine is
shared), how the clients' connections were split across the server processes (a second after
the load began, from /proc), and the audited `dataset.read` events counted against the reads
served: they must be equal. Bounded: a fixed number of reads per configuration and a time limit.

Run: .venv/bin/python -m tests.benchmarks.bench_small_reads [--reads 800] [--before REV]
[--workers 1,2] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tests.benchmarks.bench_read import COLUMNS
from tests.benchmarks.harness import postgres_database
from tests.proc import ESTABLISHED, children, tcp_sockets_of
from tests.serving import serve_env, serve_process
from warden.config import Settings
from warden.core.filesystem import restrict_umask
from warden.db.session import make_engine

REPO = Path(__file__).resolve().parents[2]
TICKS = os.sysconf("SC_CLK_TCK")
TIME_LIMIT_S = 90.0


def _tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) of `root` and every process below it."""
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        stats[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


@contextmanager
def serve(settings: Settings, pythonpath: str, workers: int) -> Iterator[tuple[str, int]]:
    env = serve_env(settings, PYTHONPATH=pythonpath, WARDEN_JOBS_WORKER="false")
    args = ["--workers", str(workers)] if workers > 1 else []
    with serve_process(env, *args) as (proc, url):
        yield url, proc.pid


def _audited_reads(settings: Settings) -> int:
    engine = make_engine(settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM audit_event"
                        " WHERE action = 'dataset.read' AND decision = 'allow'"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


READ_PATH = "/v1/datasets/engagements/read"


def load(
    url: str, token: str, clients: int, reads: int, path: str = READ_PATH
) -> tuple[list[float], float, int]:
    """(latencies in ms of the reads served, wall seconds, failures).

    `clients` keep-alive connections on one asyncio loop, each sending its next read as soon
    as the last is answered: a lean HTTP/1.1 client (a request line, headers, a body; the
    answer read by its Content-Length), so the load generator costs a small fraction of what
    the server spends and the machine's two cores go to the server, not to 16 httpx clients.
    A read is served when it answers 200 with 100 rows; anything else counts as a failure.
    """
    host, _, port = url.removeprefix("http://").partition(":")
    bodies = [_request(host, token, path, filtered=bool(i)) for i in range(2)]
    return asyncio.run(_load(host, int(port), bodies, clients, reads))


def _request(host: str, token: str, path: str, *, filtered: bool) -> bytes:
    body: dict[str, Any] = {"purpose": "training", "columns": COLUMNS, "limit": 100}
    if filtered:
        body["where"] = [{"column": "region", "op": "ne", "value": "zz"}]
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\n"
        f"authorization: Bearer {token}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _load(
    host: str, port: int, bodies: list[bytes], clients: int, reads: int
) -> tuple[list[float], float, int]:
    tickets = iter(range(reads))
    latencies: list[float] = []
    failures = [0]
    deadline = time.monotonic() + TIME_LIMIT_S
    connections = [await asyncio.open_connection(host, port) for _ in range(clients)]

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while time.monotonic() < deadline and (i := next(tickets, None)) is not None:
            t0 = time.perf_counter()
            writer.write(bodies[i % 2])
            head = await reader.readuntil(b"\r\n\r\n")
            fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
            size = int(fields.get(b"content-length", b"-1").strip())
            if size < 0:  # not a small answer (chunked): the benchmark cannot go on
                raise RuntimeError(f"an answer without a length: {head[:200]!r}")
            await reader.readexactly(size)
            elapsed = (time.perf_counter() - t0) * 1000
            if (
                head.startswith(b"HTTP/1.1 200")
                and fields.get(b"x-warden-rows", b"").strip() == b"100"
            ):
                latencies.append(elapsed)
            else:
                failures[0] += 1
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(r, w) for r, w in connections))
    return latencies, time.perf_counter() - t0, failures[0]


SEED = """
import sys
from pathlib import Path
from tests.benchmarks.bench_read import _seed
from tests.benchmarks.harness import prepare
settings, token = prepare(Path(sys.argv[1]), sys.argv[2] or None)
_seed(settings, "small")
print(token)
"""


def seeded(tree: Path, data_dir: Path, url: str | None) -> tuple[Settings, str]:
    """Initialise and seed with `tree`'s own code (its `warden init`, token storage, catalog),
    in a process of its own, so a "before" tree reads a database its own code wrote; returns
    the settings and alice's token."""
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-c", SEED, str(data_dir), url or ""],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": f"{tree / 'platform'}{os.pathsep}{tree}"},
        check=True,
        capture_output=True,
        text=True,
    )
    settings = Settings(data_dir=data_dir, config_dir=data_dir / "config", database_url=url)
    return settings, out.stdout.strip().splitlines()[-1]


def measure(
    version: str, pythonpath: str, backend: str, clients: int, workers: int, reads: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp:
        database = postgres_database() if backend == "postgres" else nullcontext(None)
        with database as url:
            settings, token = seeded(Path(pythonpath).parent, Path(tmp), url)
            with serve(settings, pythonpath, workers) as (api, pid):
                load(api, token, min(clients, 4), 40)  # warm up (caches, pools, every worker)
                before_events = _audited_reads(settings)
                cpu0, load0 = _tree_cpu_s(pid), os.getloadavg()[0]
                split: list[int] = []
                port = int(api.rsplit(":", 1)[1])
                watcher = threading.Timer(1.0, lambda: split.extend(_split(pid, port)))
                watcher.start()
                latencies, wall, failures = load(api, token, clients, reads)
                watcher.join()
                cpu = _tree_cpu_s(pid) - cpu0
                load1 = os.getloadavg()[0]
            events = _audited_reads(settings) - before_events
    served = len(latencies)
    latencies.sort()
    return {
        "version": version,
        "backend": backend,
        "clients": clients,
        "workers": workers,
        "reads": served,
        "failures": failures,
        "audited": events,
        "audited_equals_served": events == served,
        "reads_per_s": round(served / wall, 1) if wall else 0.0,
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(latencies[max(0, int(served * 0.99) - 1)], 1) if latencies else None,
        "server_cpu_ms_per_read": round(cpu * 1000 / served, 2) if served else None,
        "load_avg": round(max(load0, load1), 2),
        "connections_per_worker": split,
    }


def _split(pid: int, port: int) -> list[int]:
    """How many of the clients' connections each server process holds (most first)."""
    processes = children(pid) | {pid}
    held = tcp_sockets_of(processes, port, ESTABLISHED)
    return sorted((len(conns) for conns in held.values()), reverse=True)


def trees_to_compare(stack: ExitStack, before: list[str], repo: Path = REPO) -> dict[str, Path]:
    """Label -> checkout whose code serves: each `before` revision checked out beside this one
    ("after"), or this checkout alone."""
    trees = {f"before {rev[:10]}": stack.enter_context(before_tree(rev)) for rev in before}
    trees["after" if trees else "this checkout"] = repo
    return trees


@contextmanager
def before_tree(rev: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="warden-before-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(  # noqa: S603
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev],  # noqa: S607
            check=True,
            capture_output=True,
        )
        try:
            yield path
        finally:
            subprocess.run(  # noqa: S603
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],  # noqa: S607
                check=False,
                capture_output=True,
            )


def run(
    before: str,
    reads: int,
    backends: list[str],
    clients: list[int],
    workers_list: tuple[int, ...] = (1, 2),
    rounds: int = 1,
) -> list[dict[str, Any]]:
    rows = []
    with before_tree(before) as old:
        versions = [
            (label, path, workers)
            for workers in workers_list
            for label, path in (
                (f"before {before[:10]}", str(old / "platform")),
                ("after", str(REPO / "platform")),
            )
        ]
        for _ in range(rounds):  # before and after alternated: the machine's load drifts
            for backend in backends:
                for n in clients:
                    for version, path, workers in versions:
                        row = measure(version, path, backend, n, workers, reads)
                        rows.append(row)
                        print_row(row, flush=True)
    return rows


HEADER = (
    f"{'version':<18} {'backend':<10} {'clients':>7} {'workers':>7} {'reads/s':>8} {'p50':>8}"
    f" {'p99':>9} {'CPU/read':>9} {'served':>6} {'audited':>7} {'load':>5}  split"
)


def print_row(r: dict[str, Any], flush: bool = False) -> None:
    print(
        f"{r['version']:<18} {r['backend']:<10} {r['clients']:>7} {r['workers']:>7}"
        f" {r['reads_per_s']:>8.1f} {r['p50_ms']:>6.1f}ms {r['p99_ms']:>7.1f}ms"
        f" {r['server_cpu_ms_per_read']:>7.2f}ms {r['reads']:>6} {r['audited']:>7}"
        f" {r['load_avg']:>5.2f}  {'/'.join(map(str, r.get('connections_per_worker', [])))}",
        flush=flush,
    )


def _merge_base() -> str:
    out = subprocess.run(  # noqa: S603
        ["git", "-C", str(REPO), "merge-base", "HEAD", "main"],  # noqa: S607
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--before", default=None, help="git revision for 'before' (merge base)")
    parser.add_argument("--reads", type=int, default=800)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--clients", default="16")
    parser.add_argument("--workers", default="1,2", help="server processes, e.g. 2 or 1,2")
    parser.add_argument("--rounds", type=int, default=1, help="before/after pairs per setting")
    parser.add_argument("--json", type=Path, default=Path("bench-results/small_reads.json"))
    args = parser.parse_args(argv)
    restrict_umask()  # as every Warden process: `warden serve` refuses a data folder others reach
    before = args.before or _merge_base()
    print("small governed reads (100 rows of engagements, 7 columns, user_id masked):")
    print(HEADER)
    rows = run(
        before,
        args.reads,
        args.backends.split(","),
        [int(c) for c in args.clients.split(",")],
        tuple(int(w) for w in args.workers.split(",")),
        args.rounds,
    )
    unequal = [r for r in rows if not r["audited_equals_served"]]
    print("audited events == reads served:", unequal if unequal else "yes, every run")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"benchmark": "small_reads", "results": rows}, indent=2))
    print(f"wrote {args.json}")
    return 0 if not unequal else 1


if __name__ == "__main__":
    raise SystemExit(main())
