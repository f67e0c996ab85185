"""Real `warden serve` processes (one or several workers) on one data folder and database, for
the multi-process read tests; and a PostgreSQL of the test's own that it may stop and start."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests import pg_cluster
from tests.benchmarks.bench_read import _seed
from tests.benchmarks.harness import postgres_database, prepare
from tests.pg_cluster import Cluster, NoPostgres
from tests.serving import bound_engine, serve_env, serve_process
from warden.config import Settings
from warden.db.session import make_engine, make_sessionmaker, unit_of_work
from warden.identity.service import get_principal, issue_token

REPO = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("WARDEN_TEST_POSTGRES_URL")
READ_BODY = {"purpose": "training", "columns": ["user_id", "pin_id", "region"], "limit": 100}


@dataclass
class Warden:
    settings: Settings
    alice: str  # ml_engineer: may read engagements for training
    admin: str

    def audited_reads(self) -> set[str]:
        """Ids of every allowed dataset.read event."""
        engine = make_engine(self.settings.resolved_database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT id FROM audit_event"
                        " WHERE action = 'dataset.read' AND decision = 'allow'"
                    )
                )
                return {r[0] for r in rows}
        finally:
            engine.dispose()


def build(data_dir: Path, database_url: str | None) -> Warden:
    settings, alice = prepare(data_dir, database_url)
    _seed(settings, "small")
    engine = bound_engine(settings)
    with unit_of_work(make_sessionmaker(engine)) as db:
        admin = issue_token(db, get_principal(db, "admin"))
    engine.dispose()
    return Warden(settings, alice, admin)


@contextmanager
def warden_on(backend: str, tmp_path: Path) -> Iterator[Warden]:
    if backend == "postgres":
        if not PG_URL:
            pytest.skip("PostgreSQL not configured (set WARDEN_TEST_POSTGRES_URL)")
        with postgres_database() as url:
            yield build(tmp_path, url)
    else:
        yield build(tmp_path, None)


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@contextmanager
def serve(settings: Settings, *, workers: int = 1, **env_extra: str) -> Iterator[Server]:
    env = serve_env(
        settings,
        WARDEN_JOBS_WORKER="false",
        PYTHONPATH=f"{REPO / 'platform'}{os.pathsep}{REPO}",
        **env_extra,
    )
    args = ["--workers", str(workers)] if workers > 1 else []
    log = settings.data_dir / f"serve-{uuid.uuid4().hex[:8]}.log"
    with serve_process(env, *args, cwd=REPO, log=log, log_level="info") as (proc, url):
        yield Server(url, proc, log)


def read(http: httpx.Client, token: str, dataset: str = "engagements") -> httpx.Response:
    return http.post(
        f"/v1/datasets/{dataset}/read",
        json=READ_BODY,
        headers={"authorization": f"Bearer {token}"},
    )


# --- a PostgreSQL of the test's own, to stop and start (never the machine's shared one) ---


@contextmanager
def own_postgres(tmp_path: Path) -> Iterator[Cluster]:
    """Started; stopped and deleted after (fsync off: the test restarts it, not the machine)."""
    try:
        with pg_cluster.running({"fsync": "off"}) as cluster:
            yield cluster
    except NoPostgres as exc:
        pytest.skip(str(exc))
