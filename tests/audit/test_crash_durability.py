"""The kill -9 trial: `warden serve` is killed while reads stream; every read that delivered a
byte has its audit event in the database afterwards, and the chain still verifies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import WardenHarness
from warden.api.background import free_port
from warden.audit.models import AuditEvent
from warden.audit.service import verify
from warden.db.session import unit_of_work

REPO = Path(__file__).resolve().parents[2]
ROUNDS, READS = 3, 5


@contextmanager
def server(warden: WardenHarness) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    settings = warden.settings
    port = free_port()
    env = {
        **os.environ,
        "WARDEN_DATABASE_URL": settings.resolved_database_url,  # type: ignore[attr-defined]
        "WARDEN_DATA_DIR": str(settings.data_dir),  # type: ignore[attr-defined]
        "WARDEN_CONFIG_DIR": str(settings.config_dir),  # type: ignore[attr-defined]
        "WARDEN_MASK_KEY": "test-mask-key",
        "WARDEN_JOBS_WORKER": "false",
        "PYTHONPATH": str(REPO / "platform"),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    cmd = [sys.executable, "-m", "warden.cli.main", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "warden serve exited"
            assert time.monotonic() < deadline, "warden serve did not start"
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def _read_until_killed(
    url: str,
    token: str,
    delivered: list[str],
    started: threading.Semaphore,
    killed: threading.Event,
) -> None:
    body = {"purpose": "training", "columns": ["user_id", "pin_id", "ts", "action"]}
    headers = {"authorization": f"Bearer {token}"}
    try:
        with httpx.stream(
            "POST", f"{url}/v1/datasets/engagements/read", json=body, headers=headers, timeout=60
        ) as response:
            first = next(response.iter_raw(4096), b"")
            if response.status_code == 200 and first:
                delivered.append(response.headers["x-warden-audit-event"])
            started.release()
            killed.wait(60)
            for _ in response.iter_raw(1 << 16):
                pass
    except httpx.HTTPError:
        started.release()  # the kill cut it off: fine, only delivered bytes count


def test_every_read_that_delivered_bytes_is_audited_after_kill_9(warden: WardenHarness) -> None:
    delivered: list[str] = []
    for _ in range(ROUNDS):
        with server(warden) as (proc, url):
            started, killed = threading.Semaphore(0), threading.Event()
            readers = [
                threading.Thread(
                    target=_read_until_killed,
                    args=(url, warden.tokens["alice"], delivered, started, killed),
                )
                for _ in range(READS)
            ]
            for reader in readers:
                reader.start()
            for _ in readers:  # each reader has its first bytes (or failed) before the kill
                assert started.acquire(timeout=120)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            killed.set()
            for reader in readers:
                reader.join(60)
    assert len(delivered) == ROUNDS * READS
    with unit_of_work(warden.state.sessions) as db:
        stored = {e.id: e for e in db.query(AuditEvent).filter(AuditEvent.id.in_(delivered)).all()}
        assert sorted(stored) == sorted(delivered)
        assert {(e.actor, e.decision, e.dataset) for e in stored.values()} == {
            ("alice", "allow", "engagements")
        }
        assert verify(db).ok
