"""The repository's docker-compose.yml, brought up for real once and shared by
tests/sandbox/test_compose.py (one host) and tests/sandbox/test_compose_multihost.py (a
second host beside it): PostgreSQL, SeaweedFS, the API and the worker, from images built here.

`compose_up` is the whole life of one deployment: `up -d` with its own project name, host
folder, ports, passwords, S3 credentials and audit/mask keys; the generated taste graph
seeded (into the bucket); alice (ml_engineer), mallory (no role) and the founding admin ada
with tokens; `down -v` after, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from warden.api.background import free_port
from warden.config import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
RECEIVER = REPO_ROOT / "tests" / "audit" / "otlp_receiver.py"
# Failure-only deadlines (a broken deployment fails instead of hanging); nothing is timed.
UP_TIMEOUT_S = 300
JOB_TIMEOUT_S = 300


def compose_command(require: bool) -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if probe.returncode == 0:
        return ["docker", "compose"]
    message = "neither docker-compose nor `docker compose` is installed (scripts/docker-up.sh)"
    if require:
        pytest.fail(f"WARDEN_REQUIRE_DOCKER is set but {message}")
    pytest.skip(message)


@dataclass
class Deployment:
    command: list[str]  # docker-compose -f … -p …
    project: str
    env: dict[str, str]
    url: str
    host_dir: Path
    otlp_out: Path
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def network(self) -> str:
        """The project's own network: PostgreSQL and SeaweedFS answer on it by service name."""
        return f"{self.project}_default"

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.command, *args], env=self.env, capture_output=True, text=True, check=False
        )
        if check:
            assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done

    def logs(self, service: str = "") -> str:
        done = self.compose("logs", "--no-color", *([service] if service else []), check=False)
        return done.stdout + done.stderr

    def warden(self, who: str, *args: str, url: str = "") -> subprocess.CompletedProcess[str]:
        """The host's `warden` CLI against an API (this deployment's unless `url`)."""
        env = {
            **os.environ,
            "WARDEN_URL": url or self.url,
            "WARDEN_TOKEN": self.tokens[who],
            "WARDEN_CONFIG_DIR": str(self.host_dir / "cli"),
            "COLUMNS": "200",
        }
        return subprocess.run(
            [sys.executable, "-m", "warden.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=JOB_TIMEOUT_S,
        )

    def call(self, who: str, method: str, path: str, url: str = "", **kw: Any) -> httpx.Response:
        return httpx.request(
            method,
            (url or self.url) + path,
            headers={"authorization": f"Bearer {self.tokens[who]}"},
            timeout=60,
            **kw,
        )

    def api(self, who: str, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(who, method, path, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def bucket(self, secret: str = "") -> Any:
        """The deployment's S3 endpoint as pyarrow sees it, with its key (and `secret`)."""
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            access_key=self.env["WARDEN_S3_ACCESS_KEY_ID"],
            secret_key=secret or self.env["WARDEN_S3_SECRET_ACCESS_KEY"],
            endpoint_override=f"127.0.0.1:{self.env['WARDEN_S3_PORT']}",
            scheme="http",
            region="us-east-1",
            connect_timeout=5,
            request_timeout=30,
        )

    def add_person(
        self, name: str, roles: list[str], by: str = "admin", second: str = "ada"
    ) -> None:
        """A principal and a token: `by` proposes both, `second` approves."""
        made = self.api(by, "POST", "/v1/principals", json={"name": name, "roles": roles})
        if made.get("change_id"):  # a role that widens access waits for a second person
            self.api(second, "POST", f"/v1/policy/changes/{made['change_id']}/approve", json={})
        issued = self.api(by, "POST", f"/v1/principals/{name}/tokens", json={"label": "t"})
        self.api(second, "POST", f"/v1/policy/changes/{issued['change_id']}/approve", json={})
        self.tokens[name] = issued["token"]


@contextmanager
def otlp_receiver(folder: Path) -> Iterator[tuple[int, Path]]:
    out = folder / "otlp.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(RECEIVER), str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline()), out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def compose_up(docker_engine: Any, require: bool, folder: Path) -> Iterator[Deployment]:
    from warden.config import get_settings
    from warden.sandbox.images import build_all

    command = compose_command(require)
    names = ["service", "postgres", "seaweedfs"]
    built = {b.name: b.tag for b in build_all(docker_engine, get_settings().sandbox, names, print)}
    # Short: a gateway socket's path ($HOST_DIR/run/<sandbox>/gateway.sock) must fit 107 bytes.
    host_dir = Path(tempfile.mkdtemp(prefix="wc-", dir="/tmp"))
    project = f"wardentest{uuid.uuid4().hex[:8]}"
    api_port = free_port()
    with otlp_receiver(folder) as (otlp_port, otlp_out):
        env = {
            **os.environ,
            "WARDEN_HOST_DIR": str(host_dir),
            "WARDEN_API_PORT": str(api_port),
            "WARDEN_POSTGRES_PORT": str(free_port()),
            "WARDEN_DB_PASSWORD": uuid.uuid4().hex,
            "WARDEN_S3_PORT": str(free_port()),
            "WARDEN_S3_ACCESS_KEY_ID": "warden" + secrets.token_hex(6),
            "WARDEN_S3_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
            # Given to every host of the deployment (test_compose_multihost.py's second host too).
            "WARDEN_MASK_KEY": secrets.token_hex(32),
            "WARDEN_AUDIT_CHAIN_KEY": secrets.token_hex(32),
            "WARDEN_SERVICE_IMAGE": built["service"],
            "WARDEN_POSTGRES_IMAGE": built["postgres"],
            "WARDEN_SEAWEEDFS_IMAGE": built["seaweedfs"],
            "WARDEN_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BLRP_SCHEDULE_DELAY": "200",
            # The worker waits for the API's health check, first run one interval after start.
            "WARDEN_API_HEALTH_INTERVAL": "1s",
        }
        deployed = Deployment(
            command=[*command, "-f", str(COMPOSE_FILE), "-p", project],
            project=project,
            env=env,
            url=f"http://127.0.0.1:{api_port}",
            host_dir=host_dir,
            otlp_out=otlp_out,
        )
        try:
            # `up` returns once PostgreSQL and SeaweedFS (bucket made) and then the API answer
            # their health checks (the worker depends on the API, which ran `warden init`).
            up = subprocess.run(
                [*deployed.command, "up", "-d"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=UP_TIMEOUT_S,
            )
            assert up.returncode == 0, up.stderr[-3000:] + deployed.logs()[-5000:]
            credentials = json.loads((host_dir / "config" / "credentials.json").read_text())
            deployed.tokens["admin"] = credentials["token"]
            _seed_and_people(deployed)
            yield deployed
        finally:
            logs = deployed.logs()
            deployed.compose("down", "-v", "--remove-orphans", "--timeout", "30", check=False)
            shutil.rmtree(host_dir, ignore_errors=True)
            print(logs[-20000:])  # shown by pytest when a test failed


def _seed_and_people(d: Deployment) -> None:
    """The taste graph, seeded on this host (into the bucket), and the people the tests use."""
    seeded = d.compose("exec", "-T", "api", "python3", "-m", "warden.cli.main", "data", "seed")
    assert "pins" in seeded.stdout
    shown = r"founding admin ada, token \(shown once\):.*?(wdn_[\w-]+)"  # may wrap in the log
    founder = re.search(shown, d.logs("api"), re.S)
    assert founder, d.logs("api")[-3000:]
    d.tokens["ada"] = founder.group(1)
    d.add_person("alice", ["ml_engineer"])
    d.add_person("mallory", [])


class Shared:
    """One deployment for consecutive tests: started by the first `get`, ended by `close`
    (and started again if a later test asks)."""

    def __init__(self, start: Callable[[], AbstractContextManager[Deployment]]) -> None:
        self._start = start
        self._stack: ExitStack | None = None
        self._value: Deployment | None = None

    def get(self) -> Deployment:
        if self._value is None:
            with ExitStack() as stack:
                self._value = stack.enter_context(self._start())
                self._stack = stack.pop_all()
        return self._value

    def close(self) -> None:
        stack, self._stack, self._value = self._stack, None, None
        if stack is not None:
            stack.close()


def received(out: Path, want: Callable[[list[dict[str, Any]]], Any]) -> list[dict[str, Any]]:
    """OTLP items the receiver has written, once `want(items)` holds (or the deadline)."""
    deadline = time.monotonic() + 60
    while True:
        items = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
        if want(items) or time.monotonic() > deadline:
            return items
        time.sleep(0.2)
