"""/readyz (database reachable, policy loaded) for load balancers, /healthz liveness only; and
a database outage under load answers 503 + Retry-After in the one error shape, never a 500,
never a dropped connection. The outage is a PostgreSQL of the test's own, stopped and started
again (the machine's shared one is never touched)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway.servers import build, own_postgres, read, serve

UNAVAILABLE = {"Unavailable", "AuditUnavailable", "PolicyUnavailable"}


def test_readyz_says_ready_with_the_policy_version_and_healthz_stays_liveness(
    tmp_path: Path,
) -> None:
    w = build(tmp_path, None)
    with serve(w.settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"
        assert isinstance(ready.json()["policy_version"], int)
        assert http.get("/healthz").json()["status"] == "ok"


def _wait(predicate: object, what: str, limit_s: float = 90) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _status(http: httpx.Client, path: str) -> int:
    try:
        return http.get(path).status_code
    except httpx.HTTPError:
        return -1


# 2 workers: each process's loop takes the reads' stamps on a connection of its own
# (db/stamp_feed.py), which the restart kills too
@pytest.mark.parametrize("workers", [1, 2])
def test_a_postgres_restart_under_load_answers_only_503_and_readyz_follows(
    tmp_path: Path, workers: int
) -> None:
    with own_postgres(tmp_path) as pg:
        w = build(tmp_path / "warden", pg.url)
        with serve(w.settings, workers=workers) as server:
            answers: list[tuple[int, dict[str, str], bytes]] = []
            dropped: list[str] = []
            stop = threading.Event()
            lock = threading.Lock()

            def client() -> None:
                with httpx.Client(base_url=server.url, timeout=60) as http:
                    while not stop.is_set():
                        try:
                            r = read(http, w.alice)
                        except httpx.HTTPError as exc:
                            with lock:
                                dropped.append(f"{type(exc).__name__}: {exc}")
                            continue
                        with lock:
                            answers.append((r.status_code, dict(r.headers), r.content))

            def count(status: int) -> int:
                with lock:
                    return sum(1 for a in answers if a[0] == status)

            probe = httpx.Client(base_url=server.url, timeout=30)
            assert _status(probe, "/readyz") == 200
            threads = [threading.Thread(target=client) for _ in range(4)]
            for t in threads:
                t.start()
            try:
                _wait(lambda: count(200) >= 20, "reads before the outage")
                pg.stop()
                _wait(lambda: _status(probe, "/readyz") == 503, "/readyz unready")
                unready = probe.get("/readyz")
                assert unready.headers["retry-after"].isdigit()
                assert unready.json()["error"] == "Unavailable"
                assert _status(probe, "/healthz") == 200  # alive, only not ready
                _wait(lambda: count(503) >= 20, "503s during the outage")
                pg.start()
                _wait(lambda: _status(probe, "/readyz") == 200, "/readyz ready again")
                served_before = count(200)
                _wait(lambda: count(200) >= served_before + 20, "reads after the outage")
            finally:
                stop.set()
                for t in threads:
                    t.join(timeout=120)
                probe.close()

        assert not dropped, dropped[:3]
        statuses = {a[0] for a in answers}
        assert statuses == {200, 503}, statuses
        for status, headers, body in answers:
            if status == 503:
                assert headers.get("retry-after", "").isdigit()
                problem = httpx.Response(503, content=body).json()
                assert set(problem) == {"error", "detail"}
                assert problem["error"] in UNAVAILABLE
        served = {a[1]["x-warden-audit-event"] for a in answers if a[0] == 200}
        assert served <= w.audited_reads(), "a read was served without its durable event"
        # No request met an unhandled error. (The background loops log their failed rounds
        # with a traceback while the database is away: that is the loops', not a request's.)
        log = server.log.read_text()
        for sign in ("Exception in ASGI application", "unhandled error", '" 500 '):
            assert sign not in log, sign
