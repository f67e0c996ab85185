"""What the signed raw-read list beside the checkpoints costs (audit/raw_ledger.py).

    python -m tests.benchmarks.bench_raw_ledger --places 1000 [--per-line 1] [--repeat 20]

Lists `--places` raw places (one reader each, `--per-line` to a signed line: 1 is a raw read per
commit, the usual case and the worst for reading) in a fresh checkpoint folder, then times what
a process pays: reading the whole list at start (a new RawLedger), a look that finds nothing new
(one `stat`, per change that reads a history), and listing one more place (lock, signature,
fsync). Prints a table and the file's size.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from warden.audit.checkpoints import CheckpointStore
from warden.audit.keys import public_key_id
from warden.audit.raw_ledger import RawLedger, RawPlace


def _store(folder: Path) -> CheckpointStore:
    key = Ed25519PrivateKey.generate()
    return CheckpointStore(folder, {public_key_id(key.public_key()): key.public_key()}, key)


def _place(i: int) -> RawPlace:
    return ("acme", f"reader-{i:06d}", "users", "user_id", "analytics")


def _ms(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--places", type=int, default=1000)
    parser.add_argument("--per-line", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = _store(Path(tmp))
        writer = RawLedger(store)
        for start in range(0, args.places, args.per_line):
            chunk = range(start, min(start + args.per_line, args.places))
            writer.append({_place(i): f"event-{i:06d}" for i in chunk})

        def at_start() -> None:
            fresh = RawLedger(store)
            fresh.catch_up()
            assert len(fresh.places) == args.places

        extra = iter(range(args.places, args.places + args.repeat))

        def one_more() -> None:
            writer.append({_place(next(extra)): "e"})

        rows = [
            ("read at start", *_ms(at_start, args.repeat)),
            ("look, nothing new", *_ms(writer.catch_up, args.repeat)),
            ("list one more place", *_ms(one_more, args.repeat)),
        ]
        size = writer.path.stat().st_size
    print(f"{args.places} places, {args.per_line} per line: {size:,} bytes"
          f" ({size / args.places:.0f} per place)")  # fmt: skip
    print(f"| {'what':<22} | median ms | max ms |")
    print(f"| {'-' * 22} | --------: | -----: |")
    for what, median, worst in rows:
        print(f"| {what:<22} | {median:9.3f} | {worst:6.3f} |")


if __name__ == "__main__":
    main()
