"""Two real API processes on one PostgreSQL: a revocation through one holds on the other at
once (each read checks the stored policy version first), and a replica that cannot confirm
its policy is current refuses rather than serves."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.access.conftest import Access
from tests.serving import warden_serve

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def pg_access(db_url: str, access: Access) -> Access:
    if not db_url.startswith("postgresql"):
        pytest.skip("replicas share one PostgreSQL")
    access.clock.now = datetime.now(UTC)  # the replicas run on real time
    return access


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def replica(access: Access, database_url: str) -> Iterator[str]:
    """`warden serve` in a process of its own, on the harness's database and data."""
    with warden_serve(access.w.settings, database_url, WARDEN_ACCESS_TIDY_INTERVAL_S="0") as (
        _,
        url,
    ):
        yield url


def _read(url: str, token: str) -> httpx.Response:
    body = {"purpose": "analytics", "columns": ["pin_id"], "limit": 1}
    return httpx.post(
        f"{url}/v1/datasets/pins/read",
        json=body,
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_a_revocation_through_one_replica_holds_on_the_other(
    pg_access: Access, db_url: str
) -> None:
    access = pg_access
    req = access.ask("erin", dataset="pins", purpose="analytics", duration="1d", columns=["pin_id"])
    grant_id = access.approve("sam", req["id"])["grant_id"]
    erin, sam = access.w.tokens["erin"], access.w.tokens["sam"]
    with replica(access, db_url) as a, replica(access, db_url) as b:
        first = _read(b, erin)
        assert first.status_code == 200, first.text
        revoked = httpx.post(
            f"{a}/v1/access/grants/{grant_id}/revoke",
            json={"reason": "incident"},
            headers={"authorization": f"Bearer {sam}"},
            timeout=30,
        )
        assert revoked.status_code == 200, revoked.text
        start = time.monotonic()
        second = _read(b, erin)  # the very next read on the other process
        elapsed = time.monotonic() - start
        assert second.status_code == 403 and "ended" in second.json()["detail"]
        assert elapsed < 1.0
        assert _read(a, erin).status_code == 403
    assert access.event(first.headers["x-warden-audit-event"])["grant_ids"] == [grant_id]


class UnixProxy:
    """A TCP listener forwarding to PostgreSQL's unix socket, which the test can cut."""

    def __init__(self, unix_path: str) -> None:
        self.unix_path = unix_path
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.closed:
                    client.close()
                    return
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                upstream.connect(self.unix_path)
                self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self.lock:
            self.closed = True
            # shutdown() wakes the thread blocked in accept(); close() alone would not.
            with suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            for s in self.sockets:
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


def test_a_replica_that_cannot_reach_the_policy_store_refuses(
    pg_access: Access, db_url: str
) -> None:
    access = pg_access
    parts = urlsplit(db_url)
    query = dict(p.split("=", 1) for p in parts.query.split("&") if p)
    host = query.get("host", "/var/run/postgresql")
    if not host.startswith("/"):
        pytest.skip("the proxy forwards to a unix socket")
    proxy = UnixProxy(f"{host}/.s.PGSQL.{query.get('port', '5432')}")
    dbname = parts.path.lstrip("/")
    user = f"{parts.username}@" if parts.username else ""
    via_proxy = f"postgresql+psycopg://{user}127.0.0.1:{proxy.port}/{dbname}"
    req = access.ask("erin", dataset="pins", purpose="analytics", duration="1d", columns=["pin_id"])
    access.approve("sam", req["id"])
    try:
        with replica(access, via_proxy) as url:
            assert _read(url, access.w.tokens["erin"]).status_code == 200
            proxy.cut()
            refused = _read(url, access.w.tokens["erin"])
            assert refused.status_code >= 500
            assert refused.headers["content-type"].startswith("application/json")
            assert set(refused.json()) == {"error", "detail"}
    finally:
        proxy.cut()
