"""What reading one subject's read history costs the mixed-exposure check (policy/raw_reads.py).

    python -m tests.benchmarks.bench_raw_reads --events 20000 [--before REV] [--checkpointed]

Builds a SQLite database holding `--events` allowed `dataset.read` events of one reader
(the first raw, the rest masked: what a masked reader's history looks like) among as many of
another reader, then times `logged_raw_reads` for that reader: a check with nothing verified
before (after a warm-up run), or with `--checkpointed` the later checks of a process whose
anchor holds a checkpoint at the head. With `--before REV`, the
function of that revision runs on the same database, alternated with this checkout's, each in
a fresh interpreter. Prints a table and writes JSON (`--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEY = "bench-raw-reads-chain-key-0123456789abcdef"

_TIME = """
import sys, time, json
from sqlalchemy.orm import Session
from warden.db.session import make_engine
from warden.policy.places import IdColumn
from warden.policy import raw_reads
from warden.policy.raw_reads import logged_raw_reads
engine = make_engine(sys.argv[1])
if sys.argv[3] == "checkpointed":  # a signed checkpoint at the head, as a serving process has
    class _Newest:
        seq, v1_until = 10**12, 0
    class _Anchor:
        def newest(self):
            return _Newest()
        def raw_reads_of(self, readers):
            return {}
    raw_reads.anchor_for = lambda bind: _Anchor()
catalog = {"acme": [IdColumn("users", "user_id", "user", True)]}
times = []
with Session(engine) as db:
    logged_raw_reads(db, catalog, {"bob"})  # warm: the pages in the cache
    for _ in range(int(sys.argv[2])):
        t = time.perf_counter()
        found = logged_raw_reads(db, catalog, {"bob"})
        times.append(time.perf_counter() - t)
assert found["acme"]["bob"], found
print(json.dumps(sorted(times)))
"""


def build(path: Path, events: int) -> str:
    from warden.audit.service import AuditRecord, append
    from warden.db.migrate import upgrade
    from warden.db.session import make_engine, unit_of_work

    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    sessions = __import__("sqlalchemy.orm", fromlist=["sessionmaker"]).sessionmaker(engine)
    for start in range(0, 2 * events, 1000):
        with unit_of_work(sessions) as db:
            for i in range(start, min(start + 1000, 2 * events)):
                reader = "bob" if i % 2 == 0 else "carol"
                masked = [] if i < 2 else ["user_id"]
                append(db, AuditRecord(
                    action="dataset.read", decision="allow", actor=reader, actor_kind="person",
                    tenant="acme", dataset="users", dataset_version="sha256:" + "0" * 64,
                    purpose="analytics", columns=["user_id", "region"], masked_columns=masked,
                    rows=100, bytes=4096,
                ))  # fmt: skip
    engine.dispose()
    return url


def timed(source: Path, url: str, repeats: int, mode: str) -> list[float]:
    env = {**os.environ, "PYTHONPATH": f"{source / 'platform'}:{source}"}
    out = subprocess.run(
        [sys.executable, "-c", _TIME, url, str(repeats), mode],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", default=None)
    parser.add_argument("--out", default="bench_raw_reads.json")
    parser.add_argument("--checkpointed", action="store_true",
                        help="a checkpoint at the head: a check after the first reads only what"
                        " came since (this checkout's per-process history)")  # fmt: skip
    args = parser.parse_args()
    os.environ["WARDEN_AUDIT_CHAIN_KEY"] = KEY
    with tempfile.TemporaryDirectory() as tmp:
        url = build(Path(tmp) / "bench.db", args.events)
        sources = {"this": ROOT}
        if args.before:
            base = Path(tmp) / "before"
            base.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before],
                                     check=True, capture_output=True).stdout  # fmt: skip
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
            sources = {f"before {args.before}": base, **sources}
        results: dict[str, list[float]] = {name: [] for name in sources}
        for _ in range(args.rounds):  # alternated, so both see the same load
            for name, source in sources.items():
                mode = "checkpointed" if args.checkpointed else "bare"
                results[name] += timed(source, url, args.repeats, mode)
    load = os.getloadavg()
    mode = "checkpointed" if args.checkpointed else "no checkpoint"
    print(f"logged_raw_reads of one reader with {args.events} read events (SQLite, {mode}), "
          f"load {load[0]:.1f}:")  # fmt: skip
    print(f"{'code':<24} {'median ms':>10} {'min ms':>8} {'µs/event':>9}")
    summary = {}
    for name, times in results.items():
        times.sort()
        median = times[len(times) // 2]
        summary[name] = {"median_s": median, "min_s": times[0], "runs": len(times)}
        print(f"{name:<24} {median * 1e3:>10.1f} {times[0] * 1e3:>8.1f} "
              f"{median / args.events * 1e6:>9.1f}")  # fmt: skip
    run = {"events": args.events, "load": load, "checkpointed": args.checkpointed}
    Path(args.out).write_text(json.dumps({**run, **summary}))


if __name__ == "__main__":
    main()
