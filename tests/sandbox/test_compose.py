"""docker-compose.yml is accepted, and the Warden service image built from sandboxes/ answers
its health endpoint against this machine's PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from warden.config import REPO_ROOT

pytestmark = pytest.mark.docker


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return ["docker", "compose"] if probe.returncode == 0 else None


def test_compose_file_is_accepted() -> None:
    command = compose_command()
    if command is None:
        pytest.skip(
            "neither docker-compose nor `docker compose` is installed (apt: docker-compose)"
        )
    done = subprocess.run(
        [*command, "-f", str(REPO_ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for service in ("api:", "worker:", "postgres:", "otel-collector:"):
        assert service in done.stdout


@pytest.fixture
def host_postgres() -> Iterator[str]:
    """A fresh database on the host's PostgreSQL, reached through its unix socket."""
    from sqlalchemy import create_engine, text

    url = os.environ.get("WARDEN_TEST_POSTGRES_URL")
    if not url or "host=/" not in url:
        pytest.skip("needs the host's PostgreSQL over its unix socket (WARDEN_TEST_POSTGRES_URL)")
    name = f"warden_svc_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, query = url.partition("?")
    try:
        yield f"{base.rsplit('/', 1)[0]}/{name}?{query}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_service_image_answers_healthz_against_host_postgres(
    docker_engine: Any, host_postgres: str
) -> None:
    from warden.config import get_settings
    from warden.sandbox.images import build_all

    built = build_all(docker_engine, get_settings().sandbox, ["service"], lambda _: None)
    socket_dir = host_postgres.split("host=", 1)[1].split("&")[0]
    container = docker_engine.containers.run(
        built[-1].tag,
        ["sh", "-c", "python3 -m warden.cli.main init && exec python3 -m warden.cli.main serve"],
        # Peer authentication maps the OS user to the role: root, as on the host.
        user="0:0",
        network_mode="none",
        environment={"WARDEN_DATABASE_URL": host_postgres, "OTEL_TRACES_EXPORTER": "none"},
        volumes={socket_dir: {"bind": socket_dir, "mode": "rw"}},
        detach=True,
        labels={"warden.test": "service"},
    )
    probe = [
        "python3",
        "-c",
        "import urllib.request; print(urllib.request.urlopen("
        "'http://127.0.0.1:8765/healthz', timeout=2).read().decode())",
    ]
    try:
        deadline = time.monotonic() + 90
        while True:
            container.reload()
            assert container.status == "running", container.logs().decode()[-2000:]
            code, out = container.exec_run(probe)
            if code == 0:
                break
            assert time.monotonic() < deadline, container.logs().decode()[-2000:]
            time.sleep(0.5)
        assert '"status":"ok"' in out.decode()
    finally:
        container.remove(force=True)
