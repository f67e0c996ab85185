"""How long readers stall while the policy reloads under them: the figure that
tests/policy/test_policy_reload.py used to assert on wall-clock and now leaves to this table.

    .venv/bin/python -m tests.benchmarks.bench_reload [--sizes 20000,100000] [--flips 3]
                                                      [--readers 4] [--json PATH]

For each rule count: the test's rule set (tests/policy/test_policy_reload.py's bulk_rules)
in a SQLite file, READERS threads deciding in a loop (one probe column decision and one
two-column read per iteration), and a writer that flips the probe rule `--flips` times,
each flip followed by a full reload (read + build + swap; not the change-log replay).
Reported per size: the median full reload, the median and p99 of a reader iteration outside
reloads, the worst reader iteration overlapping a reload, and that worst stall as a share of
the reload it overlapped (0.25 was the old test's bound: a reader must never wait for a
reload, so the share measures GIL contention, not blocking). Every decision is also checked
against its snapshot version's known answer, as in the test. Writes JSON (default
bench-results/reload.json) and prints a table. Machines are shared: compare ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tests.benchmarks.bench_policy import _pct
from tests.policy.test_policy_reload import NOW, PROBE, PROBE_ALLOW, PROBE_DENY, bulk_rules
from warden.db.base import Base
from warden.db.session import make_engine
from warden.policy import store
from warden.policy.service import PolicyService

Decision = tuple[float, float, int, str]  # start, end, snapshot version, probe effect


def bench_size(n_rules: int, flips: int, readers: int, directory: Path) -> dict[str, Any]:
    engine = make_engine(f"sqlite:///{directory / f'reload-{n_rules}.db'}")
    Base.metadata.create_all(
        engine,
        tables=[
            store.CasbinRule.__table__,
            store.PolicyState.__table__,
            store.PolicyChange.__table__,
        ],
    )
    service = PolicyService(engine)
    service.add_rules([*bulk_rules(n_rules), PROBE_ALLOW])
    expected = {service.current().version: "allow"}
    logs: list[list[Decision]] = [[] for _ in range(readers)]
    stop = threading.Event()

    def read(log: list[Decision], worker: int) -> None:
        i = worker
        while not stop.is_set():
            snapshot = service.current()
            start = time.perf_counter()
            effect = snapshot.decide_column(*PROBE, NOW).effect
            snapshot.decide_read(
                f"u{i % 2000}", "acme", f"ds{i % 2000}", ["c0", "c1"], "training", NOW
            )
            log.append((start, time.perf_counter(), snapshot.version, effect))
            i += readers

    threads = [threading.Thread(target=read, args=(logs[w], w)) for w in range(readers)]
    for t in threads:
        t.start()
    reloads: list[tuple[float, float]] = []
    try:
        for flip in range(flips):
            time.sleep(0.2)  # a benchmark: let readers reach a steady state between reloads
            change = store.add_rules if flip % 2 == 0 else store.remove_rules
            with Session(engine) as session:
                version = change(session, [PROBE_DENY]).version
                session.commit()
            expected[version] = "deny" if flip % 2 == 0 else "allow"
            start = time.perf_counter()
            service.reload()
            reloads.append((start, time.perf_counter()))
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
        engine.dispose()

    decisions = [d for log in logs for d in log]
    wrong = [d for d in decisions if expected[d[2]] != d[3]]
    if wrong:
        raise AssertionError(f"readers saw a mixed policy: {wrong[:3]}")

    def overlaps(d: Decision) -> bool:
        return any(d[0] < end and d[1] > begin for begin, end in reloads)

    quiet = [d[1] - d[0] for d in decisions if not overlaps(d)]
    stalls = []
    for begin, end in reloads:
        during = [d[1] - d[0] for d in decisions if d[0] < end and d[1] > begin]
        worst = max(during, default=0.0)
        stalls.append((worst, worst / (end - begin)))
    return {
        "rules": n_rules,
        "readers": readers,
        "reloads": len(reloads),
        "decisions": len(decisions),
        "reload_p50_s": statistics.median(end - begin for begin, end in reloads),
        "quiet_p50_ms": _pct(quiet, 0.5) * 1e3,
        "quiet_p99_ms": _pct(quiet, 0.99) * 1e3,
        "worst_stall_ms": max(s for s, _share in stalls) * 1e3,
        "worst_stall_share": max(share for _s, share in stalls),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'rules':>8} {'readers':>7} {'reloads':>7} {'reload p50':>10} {'quiet p50':>10} "
        f"{'quiet p99':>10} {'worst stall':>11} {'stall/reload':>12}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['rules']:>8} {r['readers']:>7} {r['reloads']:>7} {r['reload_p50_s']:>9.2f}s "
            f"{r['quiet_p50_ms']:>8.3f}ms {r['quiet_p99_ms']:>8.3f}ms "
            f"{r['worst_stall_ms']:>9.1f}ms {r['worst_stall_share']:>12.2f}"
        )
    print("stall/reload: the worst reader iteration overlapping a reload, over that reload.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--flips", type=int, default=3)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--json", type=Path, default=Path("bench-results/reload.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            bench_size(int(n), args.flips, args.readers, Path(tmp)) for n in args.sizes.split(",")
        ]
    print_table(rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"benchmark": "reload", "results": rows}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
