"""`warden serve` in a process of its own, over a test harness's database and data."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from warden.api.background import free_port
from warden.audit.keys import bind_settings
from warden.catalog.service import register
from warden.db.session import make_engine, unit_of_work
from warden.identity.service import Caller, get_principal, get_tenant
from warden.policy.changes import apply_change

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def serve_process(
    env: dict[str, str],
    *args: str,
    cwd: Path | None = None,
    log: Path | None = None,
    log_level: str = "warning",
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`warden serve ARGS` on a free port with `env` as its whole environment (its output to
    `log` when given): wait until /healthz answers, yield (process, url); stop it after."""
    port = free_port()
    cmd = [sys.executable, "-m", "warden.cli.main", "serve", "--port", str(port)]
    cmd += ["--log-level", log_level, *args]
    out = log.open("wb") if log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT if log else None
        )  # noqa: S603
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(proc, url, "warden serve", log)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until_healthy(
    proc: subprocess.Popen[bytes], url: str, what: str, log: Path | None = None
) -> None:
    """Until `url`'s /healthz answers 200; RuntimeError if `proc` exits first (with the tail of
    its `log`) or 90 s pass."""
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            tail = log.read_text()[-2000:] if log else ""
            raise RuntimeError(f"{what} exited ({proc.returncode}) {tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer /healthz within 90 s")
        time.sleep(0.1)


def bound_engine(settings: Any) -> Engine:
    """An engine whose audit events are chained with `settings`' keys (as `build_platform`
    binds them), so a `warden serve` started on the same settings holds the chain's key.
    An unbound engine would chain with the test process's default keys, and the server would
    rightly refuse to start (audit/keys.py: foreign_chain_key)."""
    engine = make_engine(settings.resolved_database_url)
    bind_settings(engine, settings)
    return engine


def serve_env(settings: Any, database_url: str | None = None, **env: str) -> dict[str, str]:
    """This process's environment pointed at `settings`' data, with no OTel exporters."""
    environment = {
        **os.environ,
        "WARDEN_DATA_DIR": str(settings.data_dir),
        "WARDEN_CONFIG_DIR": str(settings.config_dir),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **env,
    }
    url = database_url or getattr(settings, "database_url", None)
    if url:
        environment["WARDEN_DATABASE_URL"] = url
    return environment


@contextmanager
def warden_serve(
    settings: Any, database_url: str, **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A test harness's Warden served by a process of its own: yield (process, url)."""
    environment = serve_env(
        settings,
        database_url,
        WARDEN_MASK_KEY="test-mask-key",
        PYTHONPATH=str(REPO / "platform"),
        **env,
    )
    with serve_process(environment, cwd=REPO) as served:
        yield served


def warden_cli(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """The real CLI on `tmp_path`'s data/ and config/ folders, as a fresh shell would run it
    (`extra`: more environment)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "platform"),
        "WARDEN_DATA_DIR": str(tmp_path / "data"),
        "WARDEN_CONFIG_DIR": str(tmp_path / "config"),
        "COLUMNS": "400",
    }
    for key in ("WARDEN_DATABASE_URL", "WARDEN_TOKEN", "WARDEN_MASK_KEY", "WARDEN_AUDIT_CHAIN_KEY"):
        env.pop(key, None)
    env.update(extra)
    return subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "warden.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def register_as_admin(
    w: Any,
    name: str,
    source: Path,
    columns: list[Any],
    *,
    identifier_columns: list[str] | None = None,
    allowed_purposes: list[str] | None = None,
    **kw: Any,
) -> str:
    """`source` registered in acme as `name`, owned by its admin; the new version's digest."""
    with unit_of_work(w.state.sessions) as db:
        _, version = register(
            db,
            datasets_dir=w.state.settings.datasets_dir,
            tenant=get_tenant(db, "acme"),
            owner=get_principal(db, "admin"),
            name=name,
            source=source,
            columns=columns,
            identifier_columns=identifier_columns or [],
            allowed_purposes=allowed_purposes or ["training"],
            **kw,
        )
        return str(version.digest)


def add_rules_as_admin(w: Any, rules: list[tuple[str, tuple[str, ...]]]) -> None:
    """`rules` added to acme's policy by its admin, as a test's setup, and loaded."""
    with unit_of_work(w.state.sessions) as db:
        admin = Caller("admin", "person", "acme", get_principal(db, "admin").id)
        apply_change(db, admin, add=rules, reason="test setup", action="policy.bootstrap")
    w.state.policy.reload()


def register_like(db: Any, store: Any, view: Any, source: Path) -> None:
    """`source` as the next version of `view`'s dataset in `store` (a folder or a Storage),
    under the same owner, columns, classes, purposes and sources."""
    register(
        db,
        datasets_dir=store,
        tenant=get_tenant(db, view.tenant),
        owner=get_principal(db, view.owner),
        name=view.name,
        source=source,
        columns=list(view.columns),
        identifier_columns=list(view.identifier_columns),
        allowed_purposes=list(view.allowed_purposes),
        description=view.description,
        derived_from=list(view.derived_from),
    )
