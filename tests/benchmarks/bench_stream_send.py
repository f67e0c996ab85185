"""The API's CPU to send a streamed read's bytes, alone: 720 MiB (a 10M-row read of
`engagements`) in 40 chunks of the 16 pieces a batch makes, through Warden's uvicorn protocol
(`core/http_protocol.py`) to a client reading as fast as it can, sent one ASGI message per
piece (what a server without the `PIECES` extension gets) or one per chunk (the extension).
The server runs in a process of its own, whose CPU seconds per answer are reported; both
ways alternate in one run, so both see the same machine.

Run: .venv/bin/python -m tests.benchmarks.bench_stream_send [--rounds 12]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from tests.benchmarks.bench_stream import cpu_seconds
from tests.serving import free_port

# one batch of 256K rows of engagements' 7 columns, as LiveStream.next_chunk cuts it
PIECE_SIZES = [464, 1 << 20, 1 << 20, 1 << 20, 2 << 20, 1 << 20, 2 << 20, 1 << 20] * 2
CHUNKS = 40
# A server of the same pieces, CHUNKS times (argv: port, sizes, chunks); `app` goes on from
# here (bench_send_beside_hash.py serves its own), then SERVER_RUN.
SERVER_HEAD = """
import hashlib, os, queue, sys, threading, uvicorn
from warden.core.http_protocol import PIECES, HttpProtocol
SIZES, CHUNKS = eval(sys.argv[2]), int(sys.argv[3])
pieces = [memoryview(os.urandom(size)) for size in SIZES]
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
"""
SERVER_RUN = """
uvicorn.run(app, port=int(sys.argv[1]), log_level="warning", http=HttpProtocol)
"""
SERVER = (
    SERVER_HEAD
    + """    body = {"type": "http.response.body", "body": b"", "more_body": True}
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(CHUNKS):
        if scope["path"] == "/whole":
            await send({**body, PIECES: pieces})
        else:
            for piece in pieces:
                await send({**body, "body": piece})
    await send({"type": "http.response.body", "body": b"", "more_body": False})"""
    + SERVER_RUN
)


def read(port: int, path: str, buffer: bytearray) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        got = 0
        while size := response.readinto(buffer):
            got += size
        return got
    finally:
        connection.close()


def wait_listening(server: subprocess.Popen[bytes], port: int) -> None:
    """Until the server accepts connections on `port` (60 s at most)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the server did not start") from None
            time.sleep(0.1)


def run(rounds: int) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", SERVER, str(port), repr(PIECE_SIZES), str(CHUNKS)]
    )
    try:
        wait_listening(server, port)
        cpu: dict[str, list[float]] = {"/pieces": [], "/whole": []}
        buffer = bytearray(4 << 20)
        for at in range(rounds):
            for path in list(cpu) if at % 2 == 0 else list(cpu)[::-1]:
                c0 = cpu_seconds(server.pid)
                assert read(port, path, buffer) == CHUNKS * sum(PIECE_SIZES)
                cpu[path].append(cpu_seconds(server.pid) - c0)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "mib": round(CHUNKS * sum(PIECE_SIZES) / 2**20),
        "load_1min": round(os.getloadavg()[0], 1),
        **{f"{path[1:]}_cpu_s": [round(x, 3) for x in v] for path, v in cpu.items()},
        **{f"{path[1:]}_cpu_s_median": round(statistics.median(v), 3) for path, v in cpu.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=12)
    result = run(parser.parse_args(argv).rounds)
    print(
        f"server CPU to send {result['mib']} MiB ({CHUNKS} chunks of {len(PIECE_SIZES)} pieces),"
        f" median: one message per piece {result['pieces_cpu_s_median']} s,"
        f" one per chunk {result['whole_cpu_s_median']} s (load {result['load_1min']})"
    )
    print(f"  per piece: {result['pieces_cpu_s']}\n  per chunk: {result['whole_cpu_s']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
