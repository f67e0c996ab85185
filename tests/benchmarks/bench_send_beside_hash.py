"""A streamed read's sending and hashing, alone: 720 MiB in 40 chunks of the pieces a batch
makes, each chunk queued to a hashing thread (SHA-256, as `LiveStream` does) and sent in one
`PIECES` message through Warden's uvicorn protocol (`core/http_protocol.py`) to a client
reading as fast as it can; the answer ends once the hash caught up. Wall seconds per answer:
what the sending lets the hashing thread do beside it. With `--before REV`, REV's protocol
serves beside this checkout's, alternating, so both see the same machine.

Run: .venv/bin/python -m tests.benchmarks.bench_send_beside_hash [--rounds 20] [--before main]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.benchmarks.bench_small_reads import trees_to_compare
from tests.benchmarks.bench_stream import REPO
from tests.benchmarks.bench_stream_send import (
    CHUNKS,
    PIECE_SIZES,
    SERVER_HEAD,
    SERVER_RUN,
    read,
    wait_listening,
)
from tests.serving import free_port

SERVER = (
    SERVER_HEAD
    + """    todo, sha = queue.SimpleQueue(), hashlib.sha256()
    def hashing():
        while (chunk := todo.get()) is not None:
            for piece in chunk:
                sha.update(piece)
    hasher = threading.Thread(target=hashing)
    hasher.start()
    body = {"type": "http.response.body", "body": b"", "more_body": True}
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(CHUNKS):
        todo.put(pieces)
        await send({**body, PIECES: pieces})
    todo.put(None)
    hasher.join()
    await send({"type": "http.response.body", "body": b"", "more_body": False})"""
    + SERVER_RUN
)


@contextlib.contextmanager
def serving(tree: Path) -> Iterator[int]:
    """The app above on `tree`'s protocol; yields its port."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{tree / 'platform'}{os.pathsep}{tree}"}
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", SERVER, str(port), repr(PIECE_SIZES), str(CHUNKS)],
        env=env,
        cwd=tree,
    )
    try:
        wait_listening(server, port)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--before", default=None, help="git revision to serve beside this one")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        trees = trees_to_compare(stack, [args.before] if args.before else [], REPO)
        ports = {label: stack.enter_context(serving(tree)) for label, tree in trees.items()}
        walls: dict[str, list[float]] = {label: [] for label in ports}
        buffer, loads = bytearray(4 << 20), []
        for at in range(args.rounds):
            for label in list(ports) if at % 2 == 0 else list(ports)[::-1]:
                t0 = time.perf_counter()
                assert read(ports[label], "/", buffer) == CHUNKS * sum(PIECE_SIZES)
                walls[label].append(time.perf_counter() - t0)
            loads.append(round(os.getloadavg()[0], 1))
    mib = CHUNKS * sum(PIECE_SIZES) / 2**20
    print(f"{mib:.0f} MiB sent beside its SHA-256, {args.rounds} rounds, load {loads}")
    for label, wall in walls.items():
        rounded = [round(w, 3) for w in wall]
        print(f"  {label:<18} median {statistics.median(wall):.3f} s  {rounded}")
    if args.before:
        before, after = walls.values()
        diff = [b - a for a, b in zip(before, after, strict=True)]
        lower = sum(d < 0 for d in diff)
        median = statistics.median(diff)
        print(f"  after - before: median {median:+.3f} s, lower in {lower}/{len(diff)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
