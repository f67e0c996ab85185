"""A read far larger than one batch, through a real `warden serve` process: the server's peak
memory grows by a few batches, not by the answer."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.gateway.servers import build, serve
from tests.gateway.test_streaming import COLUMNS, register_big
from tests.serving import bound_engine
from warden.db.session import make_sessionmaker

ROWS = 6_000_000


def peak_rss(pid: int) -> int:
    """VmHWM: the most resident memory the process has had, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def read_all(url: str, token: str, body: dict[str, object]) -> tuple[int, dict[str, str]]:
    got = 0
    with (
        httpx.Client(base_url=url, timeout=300) as http,
        http.stream(
            "POST",
            "/v1/datasets/engagements/read",
            json=body,
            headers={"authorization": f"Bearer {token}"},
        ) as response,
    ):
        assert response.status_code == 200, response.read()
        for chunk in response.iter_raw():
            got += len(chunk)
        return got, dict(response.headers)


def test_peak_memory_of_a_large_streamed_read_is_bounded(tmp_path: Path) -> None:
    warden = build(tmp_path, None)
    engine = bound_engine(warden.settings)
    try:
        register_big(warden.settings, make_sessionmaker(engine), tmp_path, rows=ROWS)
    finally:
        engine.dispose()
    body = {"purpose": "training", "columns": COLUMNS}
    with serve(warden.settings) as server:
        # warm: the streaming engine's threads and pools exist before the baseline
        warm, _ = read_all(server.url, warden.alice, {**body, "limit": 300_000})
        before = peak_rss(server.proc.pid)
        sent, headers = read_all(server.url, warden.alice, body)
        grown = peak_rss(server.proc.pid) - before
    assert "x-warden-stream" in headers
    assert sent > 200 << 20, sent  # the answer is far larger than any batch
    # Collecting the answer would take at least its Arrow bytes (and today's path twice that:
    # the frame and its IPC stream). Streaming peaks at a few batches in flight plus the scan's
    # read-ahead (measured: about 95 MiB for 230 MiB and for 460 MiB answers alike; up to
    # 116 MiB since a chunk may also wait in the sender thread while two wait to be hashed).
    assert grown < min(sent * 0.6, 160 << 20), (
        f"peak RSS grew {grown >> 20} MiB for a {sent >> 20} MiB answer"
    )
