"""A real Warden for benchmarks: a data directory, `warden init`, people, data, and the API
served by uvicorn in its own process (so client and server don't share a GIL)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from warden.config import Settings
from warden.db.session import make_engine, make_sessionmaker, unit_of_work
from warden.identity.bootstrap import initialize
from warden.identity.service import Caller, create_principal, get_principal, get_tenant, issue_token
from warden.policy.changes import apply_change

PG_ADMIN_URL = os.environ.get(
    "WARDEN_TEST_POSTGRES_URL", "postgresql+psycopg:///postgres?host=/var/run/postgresql"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"warden_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, query = PG_ADMIN_URL.partition("?")
    try:
        yield f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def prepare(data_dir: Path, database_url: str | None) -> tuple[Settings, str]:
    """Initialise Warden and create alice (ml_engineer); returns settings and her token."""
    settings = Settings(
        data_dir=data_dir, config_dir=data_dir / "config", database_url=database_url
    )
    done = initialize(settings)
    engine = make_engine(settings.resolved_database_url)
    with unit_of_work(make_sessionmaker(engine)) as db:
        alice = create_principal(db, "alice", "person", get_tenant(db, "acme"))
        token = issue_token(db, alice)
        admin = Caller("admin", "person", "acme", get_principal(db, "admin").id)
        apply_change(db, admin, add=[("g", ("alice", "role:ml_engineer", "acme"))])
    engine.dispose()
    del done
    return settings, token


@contextmanager
def served(settings: Settings) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ)
    env.update(
        WARDEN_DATA_DIR=str(settings.data_dir),
        WARDEN_CONFIG_DIR=str(settings.config_dir),
        OTEL_TRACES_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
    )
    if settings.database_url:
        env["WARDEN_DATABASE_URL"] = settings.database_url
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [
            sys.executable,
            "-m",
            "warden.cli.main",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the API did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
