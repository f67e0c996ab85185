"""The kill -9 trial: `warden serve` is killed while reads stream; every read that delivered a
byte has its audit event in the database afterwards, and the chain still verifies."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import WardenHarness
from tests.serving import warden_serve
from warden.audit.models import AuditEvent
from warden.audit.service import verify
from warden.db.session import unit_of_work

REPO = Path(__file__).resolve().parents[2]
ROUNDS, READS = 3, 5


def server(warden: WardenHarness) -> Any:
    settings = warden.settings
    url = settings.resolved_database_url  # type: ignore[attr-defined]
    return warden_serve(settings, url, WARDEN_JOBS_WORKER="false")


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
            chunks = response.iter_raw(4096)  # one iterator: httpx streams a body only once
            first = next(chunks, b"")
            if response.status_code == 200 and first:
                delivered.append(response.headers["x-warden-audit-event"])
            started.release()
            killed.wait(60)
            for _ in chunks:
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
