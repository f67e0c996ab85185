"""Governed reads served by several processes at once (`warden serve --workers N`, and two
servers on one database): a change made anywhere holds on the next read everywhere, every read
served has its durable audit event, and exactly one process runs the background loops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway.servers import REPO, Warden, read, serve, warden_on
from tests.proc import ESTABLISHED, LISTEN, children, tcp_sockets_of
from tests.serving import bound_engine, serve_env
from warden.api.primary import LOCK_NAME
from warden.db.session import make_sessionmaker, unit_of_work
from warden.identity.service import Caller, get_principal
from warden.policy.changes import apply_change

BACKENDS = ["sqlite", "postgres"]


class Load:
    """Clients reading as alice against several servers until stopped; every answer kept as
    (server, start, end, status, audit event id)."""

    def __init__(self, urls: list[str], token: str, per_server: int = 2) -> None:
        self.answers: list[tuple[str, float, float, int, str | None]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(url, token))
            for url in urls
            for _ in range(per_server)
        ]

    def _run(self, url: str, token: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    answer = read(http, token)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.errors.append(f"{url}: {type(exc).__name__}: {exc}")
                    continue
                with self._lock:
                    self.answers.append(
                        (
                            url,
                            start,
                            time.monotonic(),
                            answer.status_code,
                            answer.headers.get("x-warden-audit-event"),
                        )
                    )

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)

    def wait_for(self, count: int, after: float = 0.0, url: str | None = None) -> None:
        """Until `count` answers that started after `after` (from `url`) are in; no clock."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with self._lock:
                got = [a for a in self.answers if a[1] > after and (url is None or a[0] == url)]
            if len(got) >= count:
                return
            time.sleep(0.02)
        raise AssertionError(f"the load made no progress ({len(self.answers)} answers)")


def _served_all_audited(w: Warden, load: Load) -> None:
    served = {a[4] for a in load.answers if a[3] == 200}
    assert None not in served, "a read was served without naming its audit event"
    missing = served - w.audited_reads()
    assert not missing, f"{len(missing)} reads served without their durable event"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_revoked_role_is_refused_on_the_next_read_in_every_process(
    backend: str, tmp_path: Path
) -> None:
    with warden_on(backend, tmp_path) as w, serve(w.settings) as a, serve(w.settings) as b:
        with Load([a.url, b.url], w.alice) as load:
            for url in (a.url, b.url):
                load.wait_for(5, url=url)
            engine = bound_engine(w.settings)
            with unit_of_work(make_sessionmaker(engine)) as db:
                admin = Caller("admin", "person", "acme", get_principal(db, "admin").id)
                apply_change(db, admin, remove=[("g", ("alice", "role:ml_engineer", "acme"))])
            engine.dispose()
            revoked = time.monotonic()  # the change is committed: every later read is refused
            for url in (a.url, b.url):
                load.wait_for(10, after=revoked, url=url)
        assert not load.errors, load.errors[:3]
        before = [a for a in load.answers if a[2] < revoked]
        after = [a for a in load.answers if a[1] > revoked]
        assert {s for *_x, s, _e in before} == {200}
        served_late = [a for a in after if a[3] == 200]
        assert not served_late, f"{len(served_late)} reads served after the revocation"
        assert {s for *_x, s, _e in after} <= {403, 404}
        _served_all_audited(w, load)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_principal_disabled_through_one_process_is_refused_by_the_others(
    backend: str, tmp_path: Path
) -> None:
    # b's edge must not answer 429 first: three loaders reach its 120 refusals a window in a
    # fraction of a second, before a loaded machine hands the test the disable's answer
    unlimited = {"WARDEN_EDGE_REFUSALS_PER_WINDOW": "1000000"}
    with (
        warden_on(backend, tmp_path) as w,
        serve(w.settings) as a,
        serve(w.settings, **unlimited) as b,
    ):
        with Load([b.url], w.alice, per_server=3) as load:
            load.wait_for(5)
            answer = httpx.post(
                f"{a.url}/v1/principals/alice/disable",
                headers={"authorization": f"Bearer {w.admin}"},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            disabled = time.monotonic()
            load.wait_for(10, after=disabled)
        assert not load.errors, load.errors[:3]
        after = [a for a in load.answers if a[1] > disabled]
        assert after and {a[3] for a in after} == {401}
        _served_all_audited(w, load)


def _lock_holders(lock: Path) -> list[int]:
    """Pids holding an flock on `lock` (from /proc/locks)."""
    inode = lock.stat().st_ino
    holders = []
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if len(parts) > 5 and parts[1] == "FLOCK" and parts[5].endswith(f":{inode}"):
            holders.append(int(parts[4]))
    return holders


def _wait(predicate: object, what: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_workers_serve_reads_and_exactly_one_runs_the_background_loops(tmp_path: Path) -> None:
    with warden_on("sqlite", tmp_path) as w, serve(w.settings, workers=3) as server:
        lock = w.settings.data_dir / LOCK_NAME
        workers: set[int] = set()

        def three_workers() -> bool:
            workers.clear()
            workers.update(children(server.proc.pid) - {server.proc.pid})
            return len(workers) >= 3 and lock.exists() and len(_lock_holders(lock)) == 1

        _wait(three_workers, "three workers and one elected")
        (primary,) = _lock_holders(lock)
        assert primary in workers
        with Load([server.url], w.alice, per_server=4) as load:
            load.wait_for(30)
            # The elected worker dies: uvicorn starts another, which takes the loops over.
            os.kill(primary, signal.SIGKILL)
            _wait(
                lambda: (held := _lock_holders(lock)) != [] and held != [primary],
                "a new primary",
            )
            assert len(_lock_holders(lock)) == 1
            restarted = time.monotonic()
            load.wait_for(30, after=restarted)
        statuses = {a[3] for a in load.answers if a[1] > restarted}
        assert statuses == {200}
        _served_all_audited(w, load)


def test_a_burst_of_keep_alive_connections_is_spread_across_the_workers(tmp_path: Path) -> None:
    # Clients that connect together once all landed on whichever worker woke first, and the
    # other idled for the whole run; each worker now listens on its own SO_REUSEPORT socket.
    with warden_on("sqlite", tmp_path) as w, serve(w.settings, workers=2) as server:
        port = int(server.url.rsplit(":", 1)[1])
        # 16 connections made at once, as soon as the first worker answers (the second may
        # still be starting): the burst that went whole to one worker
        burst = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(16)]
        try:
            for conn in burst:  # each answers on its own connection, which stays open
                conn.sendall(b"GET /healthz HTTP/1.1\r\nhost: warden\r\n\r\n")
            for conn in burst:
                assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            workers = children(server.proc.pid)
            listening = tcp_sockets_of(workers, port, LISTEN).values()
            assert len(set().union(*listening)) == 2, "the workers share one listening socket"
            owners = tcp_sockets_of(workers, port, ESTABLISHED)
            assert sum(len(conns) for conns in owners.values()) == 16
            # by a hash of each connection's addresses: all 16 on one of 2 is a 1-in-32,768 draw
            assert len(owners) == 2, owners
        finally:
            for conn in burst:
                conn.close()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert read(http, w.alice).status_code == 200


def test_serve_refuses_a_port_something_already_listens_on(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with warden_on("sqlite", tmp_path) as w:
            env = serve_env(w.settings, PYTHONPATH=f"{REPO / 'platform'}")
            cmd = [sys.executable, "-m", "warden.cli.main", "serve", "--workers", "2"]
            done = subprocess.run(  # noqa: S603
                [*cmd, "--port", str(port)], env=env, capture_output=True, timeout=120
            )
        assert done.returncode != 0
        assert f"cannot listen on 127.0.0.1:{port}" in done.stderr.decode()
        assert "Started parent process" not in done.stderr.decode()  # no worker was started
    finally:
        taken.close()


def test_primary_off_runs_no_loops_even_when_elected(tmp_path: Path) -> None:
    with (
        warden_on("sqlite", tmp_path) as w,
        serve(w.settings, workers=2, WARDEN_PRIMARY="false") as server,
    ):
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert read(http, w.alice).status_code == 200
        assert _lock_holders_or_none(w.settings.data_dir / LOCK_NAME) == []


def _lock_holders_or_none(lock: Path) -> list[int]:
    return _lock_holders(lock) if lock.exists() else []
